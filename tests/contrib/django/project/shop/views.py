from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tests.contrib.django.project.shop.models import Order
from tests.contrib.django.project.shop.tasks import confirm_order


@csrf_exempt
def create_order(request: HttpRequest) -> HttpResponse:
    """Make an order and enqueue its confirmation; ``?fail=1`` then raises (ATOMIC_REQUESTS)."""
    order = Order.objects.create(email=request.POST["email"])
    result = confirm_order.enqueue(order.id)
    if request.GET.get("fail"):
        raise RuntimeError("the payment provider said no")
    return JsonResponse({"order": order.id, "task_result": result.id})


@csrf_exempt
@transaction.non_atomic_requests
def create_order_atomic(request: HttpRequest) -> HttpResponse:
    """The same, with an explicit ``transaction.atomic()`` instead of ATOMIC_REQUESTS."""
    with transaction.atomic():
        order = Order.objects.create(email=request.POST["email"])
        result = confirm_order.enqueue(order.id)
        if request.GET.get("fail"):
            raise RuntimeError("the payment provider said no")
    return JsonResponse({"order": order.id, "task_result": result.id})
