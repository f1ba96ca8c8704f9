"""The shop's tasks: found by the worker as the installed app's tasks module."""

from __future__ import annotations

import asyncio
import time

from django.utils import timezone

from tests.contrib.django.project.shop.models import Order, Run

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2: the backport
    from django_tasks import TaskContext, task  # type: ignore[no-redef]


class Refused(Exception):
    """What ``refuse`` raises: a project's own exception class."""


@task
def confirm_order(order_id: int) -> None:
    Order.objects.filter(id=order_id).update(confirmed=True)
    Run.objects.create(label=f"confirm:{order_id}", started=timezone.now())


@task(queue_name="emails")
def add(a: int, b: int) -> int:
    Run.objects.create(label=f"add:{a + b}", started=timezone.now())
    return a + b


@task
def record(label: str, sleep: float = 0.0) -> None:
    started = timezone.now()
    time.sleep(sleep)
    Run.objects.create(label=label, started=started, finished=timezone.now())


@task(takes_context=True)
def with_context(context: TaskContext, label: str) -> None:
    Run.objects.create(
        label=label,
        attempt=context.attempt,
        result_id=context.task_result.id,
        started=timezone.now(),
    )


@task(takes_context=True)
def flaky(context: TaskContext, label: str) -> None:
    """Fails its first attempt, succeeds on the next."""
    Run.objects.create(label=label, attempt=context.attempt, started=timezone.now())
    if context.attempt == 1:
        raise Refused(f"not yet: {label}")


@task
def refuse(reason: str) -> None:
    raise Refused(reason)


@task
async def arecord(label: str) -> None:
    await asyncio.sleep(0)
    await Run.objects.acreate(label=label, started=timezone.now())
