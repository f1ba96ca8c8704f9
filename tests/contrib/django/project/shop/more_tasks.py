"""Tasks outside an app's tasks module: found through OPTIONS["TASK_MODULES"]."""

from __future__ import annotations

from django.utils import timezone

from tests.contrib.django.project.shop.models import Run

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef]


@task
def elsewhere(label: str) -> None:
    Run.objects.create(label=label, started=timezone.now())
