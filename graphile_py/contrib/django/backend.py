"""``GraphileBackend``: Django's tasks framework on graphile-py's queue.

A Django task becomes a graphile-worker job:

- its **identifier** is the task's module path (``myapp.tasks.send_welcome_email``), by
  which ``manage.py graphile_worker`` finds it again (and a Node worker or SQL can add it);
- its **payload** is ``{"args": [...], "kwargs": {...}, "django": {...}}``, the ``django``
  part keeping the backend alias, the Django queue name and ``run_after`` for results;
- its **priority** is Django's turned round: Django runs larger priorities sooner,
  graphile-worker smaller ones, so Django's ``p`` (-100..100) is stored as ``-p``;
- ``run_after`` is its ``run_at``; the backend's ``MAX_ATTEMPTS`` its ``max_attempts``;
- its Django **queue** is a routing name: it goes into the job's flags
  (``django-queue:<name>``, which ``graphile_worker --queue`` selects on), never into the
  job's queue, because a graphile-worker queue runs one job at a time. Only a queue named
  in ``OPTIONS["SERIAL_QUEUES"]`` becomes a graphile-worker queue, and so serial.

Jobs are added on Django's own connection (``OPTIONS["DATABASE"]``), so inside
``transaction.atomic()`` the job commits or rolls back with the caller's work.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db.transaction import mark_for_rollback_on_error
from django.utils import timezone

from graphile_py.contrib.django.compat import (
    BaseTaskBackend,
    InvalidTask,
    TaskResultStatus,
    task_enqueued,
)
from graphile_py.contrib.django.config import BackendConfig, psycopg_connection
from graphile_py.contrib.django.results import GraphileTaskResult, django_time, read_result
from graphile_py.enqueue import add_job

__all__ = ["QUEUE_FLAG_PREFIX", "GraphileBackend", "graphile_priority", "queue_flag"]

#: The flag that carries a job's Django queue name (see ``graphile_worker --queue``).
QUEUE_FLAG_PREFIX = "django-queue:"
_IDENTIFIER_LIMIT = 128  # graphile-worker's check on _private_tasks.identifier


def graphile_priority(django_priority: int) -> int:
    """Django runs larger priorities first, graphile-worker smaller ones: negate."""
    return -django_priority


def queue_flag(queue_name: str) -> str:
    """The job flag that routes a job of this Django queue."""
    return QUEUE_FLAG_PREFIX + queue_name


class GraphileBackend(BaseTaskBackend):  # type: ignore[misc]
    """A Django tasks backend that keeps tasks as graphile-worker jobs in PostgreSQL.

    Supports deferred tasks (``run_after``), ``async def`` tasks, priorities and results
    (``get_result``; see :func:`~graphile_py.contrib.django.results.read_result` for what
    a result can tell). ``OPTIONS`` are described in
    :mod:`graphile_py.contrib.django.config`.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    #: Every task any GraphileBackend has validated, by module path: what the worker runs.
    known_tasks: ClassVar[dict[str, Any]] = {}

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.config = BackendConfig.from_params(alias, params, self.queues)

    def validate_task(self, task: Any) -> None:
        """Django's checks, and what a job needs: an importable, short enough identifier."""
        super().validate_task(task)
        path = task.module_path
        if task.func.__module__ == "__main__":
            raise InvalidTask(
                f"task {task.name!r} is defined in the __main__ module, which a worker cannot"
                " import: define it in a module of your project (myapp/tasks.py)"
            )
        if len(path) > _IDENTIFIER_LIMIT:
            raise InvalidTask(
                f"the task's module path {path!r} is longer than the {_IDENTIFIER_LIMIT}"
                " characters graphile-worker allows for a task identifier: move or rename it"
            )
        self.known_tasks.setdefault(path, task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Add the task's job in the current transaction of ``OPTIONS["DATABASE"]``."""
        self.validate_task(task)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            # Only possible with USE_TZ = False: Django's times are then local times.
            run_after = timezone.make_aware(run_after, timezone.get_default_timezone())
        result = GraphileTaskResult(
            task=task,
            id="",  # the job's id, once there is a job
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),  # TaskResult makes them JSON (or raises TypeError)
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        meta: dict[str, Any] = {"backend": self.alias, "queue_name": task.queue_name}
        if run_after is not None:
            meta["run_after"] = run_after.isoformat()
        payload = {"args": result.args, "kwargs": result.kwargs, "django": meta}
        database = self.config.database
        with mark_for_rollback_on_error(using=database):
            job = add_job(
                psycopg_connection(database),
                task.module_path,
                payload,
                schema=self.config.schema,
                queue_name=self.config.serial_queues.get(task.queue_name),
                run_at=run_after,
                max_attempts=self.config.max_attempts,
                priority=graphile_priority(task.priority),
                flags=[queue_flag(task.queue_name)],
            )
        object.__setattr__(result, "id", str(job.id))
        object.__setattr__(result, "enqueued_at", django_time(job.created_at))
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The task's result as the queue (and, with history on, its record) tells it.

        Raises Django's ``TaskResultDoesNotExist`` for an id that names no job of a
        Django task, and for a finished job when no history was kept of it.
        """
        return read_result(self, result_id)

    def check(self, **kwargs: Any) -> list[Any]:
        """System checks: the database is PostgreSQL on psycopg 3, async tasks work."""
        from django.core import checks
        from django.db import connections

        messages: list[Any] = []
        database = self.config.database
        if database not in settings.DATABASES:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] adds jobs through DATABASES[{database!r}], which"
                    " does not exist",
                    hint="Set OPTIONS['DATABASE'] to an alias of DATABASES.",
                    id="graphile_py.E001",
                )
            )
        elif connections[database].vendor != "postgresql":
            messages.append(
                checks.Error(
                    f"DATABASES[{database!r}] is not PostgreSQL; graphile-py's queue is.",
                    hint="Point OPTIONS['DATABASE'] at a PostgreSQL database.",
                    id="graphile_py.E002",
                )
            )
        return messages

    def __repr__(self) -> str:
        return f"<GraphileBackend {self.alias!r} schema={self.config.schema!r}>"
