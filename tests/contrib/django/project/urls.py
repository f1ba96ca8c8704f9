from django.urls import path

from tests.contrib.django.project.shop import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/atomic/", views.create_order_atomic),
]
