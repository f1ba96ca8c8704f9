"""The worker's side: Django tasks as graphile-py task functions.

:func:`django_task_map` imports each installed app's ``tasks`` module (and every
backend's ``OPTIONS["TASK_MODULES"]``), then maps the module path of each task a
:class:`GraphileBackend` validated to a function the pool runs. That function:

- reads ``args`` and ``kwargs`` from the payload and calls the task's function (an
  ``async def`` one on the pool's event loop), with a ``TaskContext`` first for a task
  with ``takes_context``;
- sends Django's ``task_started`` and ``task_finished`` signals, once per attempt;
- closes Django's database connections that are stale or broken before and after, as
  Django does around a request (worker threads live long, run many tasks);
- fails a job whose payload is not ``{"args": [...], "kwargs": {...}}`` for good (no
  attempt can read it better);
- on failure raises :class:`TaskFailed`, whose text (``module.Class: message`` and the
  traceback) becomes the job's ``last_error``, so results can name the exception.

Return values are dropped, as graphile-worker drops them.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from graphile_py.contrib.django.backend import GraphileBackend
from graphile_py.contrib.django.compat import (
    TaskContext,
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)
from graphile_py.contrib.django.errors import TaskFailed
from graphile_py.contrib.django.results import payload_arguments, resolve_task, task_result
from graphile_py.errors import PermanentFailure
from graphile_py.tasks import JobHelpers, TaskFunction

__all__ = ["django_task_map", "graphile_backends", "task_function"]


def graphile_backends() -> dict[str, GraphileBackend]:
    """Every backend of ``TASKS`` that is a :class:`GraphileBackend`, by alias."""
    from django.conf import settings

    found = {}
    for alias in getattr(settings, "TASKS", {}):
        backend = task_backends[alias]
        if isinstance(backend, GraphileBackend):
            found[alias] = backend
    return found


def django_task_map(modules: Iterable[str] = ()) -> dict[str, TaskFunction]:
    """Import the task modules; map every Django task found to a graphile-py task."""
    import importlib

    autodiscover_modules("tasks")
    for backend in graphile_backends().values():
        for module in backend.config.task_modules:
            importlib.import_module(module)
    for module in modules:
        importlib.import_module(module)
    return {path: task_function(task) for path, task in sorted(GraphileBackend.known_tasks.items())}


def task_function(task: Any) -> TaskFunction:
    """The graphile-py task that runs the Django task ``task``."""
    if iscoroutinefunction(task.func):

        async def run_async(payload: Any, helpers: JobHelpers) -> None:
            call = _Call(task, payload, helpers)
            await sync_to_async(close_old_connections)()
            try:
                await task_started.asend(sender=GraphileBackend, task_result=call.result)
                try:
                    await task.func(*call.arguments(), **call.kwargs)
                except Exception as exc:
                    call.finish(exc)
                    await task_finished.asend(sender=GraphileBackend, task_result=call.result)
                    raise call.failure(exc) from exc
                call.finish(None)
                await task_finished.asend(sender=GraphileBackend, task_result=call.result)
            finally:
                await sync_to_async(close_old_connections)()

        run_async.__qualname__ = run_async.__name__ = f"run[{task.module_path}]"
        return run_async

    def run(payload: Any, helpers: JobHelpers) -> None:
        call = _Call(task, payload, helpers)
        close_old_connections()
        try:
            task_started.send(sender=GraphileBackend, task_result=call.result)
            try:
                task.func(*call.arguments(), **call.kwargs)
            except Exception as exc:
                call.finish(exc)
                # Inside the handler, as Django's backends send it: receivers see exc_info.
                task_finished.send(sender=GraphileBackend, task_result=call.result)
                raise call.failure(exc) from exc
            call.finish(None)
            task_finished.send(sender=GraphileBackend, task_result=call.result)
        finally:
            close_old_connections()

    run.__qualname__ = run.__name__ = f"run[{task.module_path}]"
    return run


class _Call:
    """One attempt at a Django task: its arguments and the result the signals carry."""

    def __init__(self, task: Any, payload: Any, helpers: JobHelpers) -> None:
        job = helpers.job
        self.task = resolve_task(job.task_identifier, payload, job.priority) or task
        try:
            self.args, self.kwargs = payload_arguments(payload)
        except ValueError as exc:
            # No later attempt can read it better: fail the job now, not 25 times.
            raise PermanentFailure(f"job {job.id}: {exc}") from exc
        meta = payload.get("django") if isinstance(payload, Mapping) else None
        alias = meta.get("backend") if isinstance(meta, Mapping) else None
        now = timezone.now()
        # The workers of earlier attempts are not looked up (get_result has them, with
        # history on): the context's attempt count is what matters here.
        self.result = task_result(
            self.task,
            job_id=job.id,
            status=TaskResultStatus.RUNNING,
            payload=payload,
            backend=alias if isinstance(alias, str) else self.task.backend,
            enqueued_at=job.created_at,
            started_at=now,
            last_attempted_at=now,
            worker_ids=[""] * (job.attempts - 1) + [helpers.worker_id],
        )

    def arguments(self) -> list[Any]:
        if self.task.takes_context:
            return [TaskContext(task_result=self.result), *self.args]
        return list(self.args)

    def finish(self, error: BaseException | None) -> None:
        status = TaskResultStatus.SUCCESSFUL if error is None else TaskResultStatus.FAILED
        object.__setattr__(self.result, "status", status)
        object.__setattr__(self.result, "finished_at", timezone.now())
        if error is not None:
            from graphile_py.contrib.django.results import parse_error

            self.result.errors.append(parse_error(_error_text(error)))

    def failure(self, error: BaseException) -> TaskFailed:
        return TaskFailed(_error_text(error))


def _error_text(error: BaseException) -> str:
    """``module.Class: message`` on the first line, then the traceback."""
    kind = type(error)
    message = str(error).partition("\n")[0]
    head = f"{kind.__module__}.{kind.__qualname__}" + (f": {message}" if message else "")
    return head + "\n" + "".join(traceback.format_exception(error))
