"""What ``get_result`` can tell of a job, from the queue and (when kept) the job history.

graphile-worker deletes a job when it succeeds, so the queue alone knows only jobs that
wait, run, or failed. The job history (workers run with ``--history``; the side schema's
``job_attempts``) keeps every attempt a Python worker ran, for ``history_retention``.

======================  ========================================  =====================
the job                 without history                            with history
======================  ========================================  =====================
waiting (or retrying)   READY                                      READY
locked by a worker      RUNNING                                    RUNNING
no attempts left        FAILED                                     FAILED
gone                    ``TaskResultDoesNotExist``                 SUCCESSFUL if its last
                                                                   attempt succeeded,
                                                                   else FAILED
======================  ========================================  =====================

Return values are not kept (graphile-worker has no place for them): reading
``return_value`` of a SUCCESSFUL result raises :class:`ReturnValueNotKept`.
``errors`` has one ``TaskError`` per failed attempt recorded in the history, else one
for the job's ``last_error``; ``worker_ids`` one entry per attempt, ``""`` for an attempt
whose worker is not known (history off, or a Node worker ran it).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.transaction import mark_for_rollback_on_error
from django.utils import timezone
from django.utils.module_loading import import_string

from graphile_py.contrib.django.compat import (
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from graphile_py.contrib.django.config import psycopg_connection
from graphile_py.contrib.django.errors import JobFailed
from graphile_py.db.history_views import HistoryViewStatements
from graphile_py.db.inspection import InspectionStatements
from graphile_py.db.rows import Row
from graphile_py.db.side_schema import side_schema_for, side_schema_ready

__all__ = [
    "GraphileTaskResult",
    "ReturnValueNotKept",
    "django_time",
    "parse_error",
    "read_result",
    "resolve_task",
    "task_result",
]

_MAX_JOB_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
# "package.module.Class" (dotted: builtins are written builtins.ValueError), then ": ..."
_CLASS_PATH = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?::|$)")


class ReturnValueNotKept(ValueError):
    """``return_value`` of a successful task: graphile-py does not keep return values."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphileTaskResult(TaskResult):  # type: ignore[misc]
    """Django's ``TaskResult``, whose ``return_value`` says plainly that it was not kept."""

    @property
    def return_value(self) -> Any:
        """Raises: :class:`ReturnValueNotKept` when successful, else as Django's does."""
        if self.status == TaskResultStatus.SUCCESSFUL:
            raise ReturnValueNotKept(
                f"task result {self.id} succeeded, but graphile-py does not keep return"
                " values (graphile-worker deletes a finished job): have the task store what"
                " it produces, in a model for example"
            )
        return TaskResult.return_value.__get__(self)


def task_result(
    task: Any,
    *,
    job_id: int,
    status: Any,
    payload: Any,
    backend: str,
    enqueued_at: datetime.datetime | None = None,
    started_at: datetime.datetime | None = None,
    last_attempted_at: datetime.datetime | None = None,
    finished_at: datetime.datetime | None = None,
    errors: Sequence[Any] = (),
    worker_ids: Sequence[str] = (),
) -> Any:
    """A :class:`GraphileTaskResult` for job ``job_id`` of ``task`` from its payload."""
    args, kwargs = payload_arguments(payload)
    return GraphileTaskResult(
        task=task,
        id=str(job_id),
        status=status,
        enqueued_at=django_time(enqueued_at),
        started_at=django_time(started_at),
        last_attempted_at=django_time(last_attempted_at),
        finished_at=django_time(finished_at),
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=list(errors),
        worker_ids=list(worker_ids),
    )


def payload_arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """The task's ``args`` and ``kwargs`` from a job payload (both optional in it)."""
    if not isinstance(payload, Mapping):
        raise ValueError(
            'a Django task\'s job payload must be a JSON object {"args": [...], "kwargs":'
            f" {{...}}}}, not {type(payload).__name__}"
        )
    args = payload.get("args", [])
    kwargs = payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise ValueError(
            'a Django task\'s job payload must hold a list "args" and an object "kwargs",'
            f" not {type(args).__name__} and {type(kwargs).__name__}"
        )
    return args, dict(kwargs)


def resolve_task(identifier: str, payload: Any, priority: int | None = None) -> Any | None:
    """The Django task a job's identifier names, as it was enqueued; None if none.

    The task found at the module path is given back the job's Django queue, backend and
    ``run_after`` (from the payload) and the Django priority of the job's ``priority``
    (when given and within Django's range); a task whose options the settings no longer
    allow is returned as it is defined.
    """
    from graphile_py.contrib.django.backend import GraphileBackend

    task = GraphileBackend.known_tasks.get(identifier)
    if task is None:
        try:
            task = import_string(identifier)
        except ImportError:
            return None
    if not isinstance(task, Task):
        return None
    meta = payload.get("django") if isinstance(payload, Mapping) else None
    if not isinstance(meta, Mapping):
        meta = {}
    changes: dict[str, Any] = {}
    if isinstance(meta.get("queue_name"), str):
        changes["queue_name"] = meta["queue_name"]
    if isinstance(meta.get("backend"), str):
        changes["backend"] = meta["backend"]
    if priority is not None and -100 <= -priority <= 100:
        changes["priority"] = -priority  # graphile's order turned back into Django's
    if isinstance(meta.get("run_after"), str):
        changes["run_after"] = django_time(datetime.datetime.fromisoformat(meta["run_after"]))
    try:
        return task.using(**changes)
    except (InvalidTask, ValueError, KeyError):
        return task


def parse_error(text: str | None) -> Any:
    """A Django ``TaskError`` from an error as the queue recorded it.

    The worker writes a Django task's error as ``module.Class: message`` and the
    traceback (:class:`~graphile_py.contrib.django.errors.TaskFailed`); any other text
    (a Node worker's, a forced shutdown's) is named :class:`JobFailed`.
    """
    text = text or ""
    match = _CLASS_PATH.match(text)
    if match is None:
        return TaskError(
            exception_class_path=f"{JobFailed.__module__}.{JobFailed.__qualname__}",
            traceback=text,
        )
    _, _, rest = text.partition("\n")
    return TaskError(exception_class_path=match.group(1), traceback=rest or text)


def read_result(backend: Any, result_id: str) -> Any:
    """The result of job ``result_id`` (see the module's table), on Django's connection."""
    job_id = _job_id(result_id)
    config = backend.config
    with mark_for_rollback_on_error(using=config.database):
        conn = psycopg_connection(config.database)
        jobs = InspectionStatements.for_schema(config.schema).get_jobs(conn, [job_id])
        side = side_schema_for(config.schema, config.side_schema)
        # Checked first, with statements that cannot fail: an error here would abort
        # the caller's transaction.
        attempts: list[Row] = []
        last_payload: Any = None
        if side_schema_ready(conn, side):
            views = HistoryViewStatements.for_schema(config.schema, side)
            attempts = views.timeline(conn, job_id)
            if attempts and not jobs:
                last = views.last_attempt(conn, job_id)
                last_payload = last["payload"] if last and last["payload_stored"] else None
    job = jobs[0] if jobs else None
    if job is None and not attempts:
        raise TaskResultDoesNotExist(
            f"there is no job {job_id} in the queue, and no history of it: it succeeded"
            " (graphile-worker deletes finished jobs), was deleted, or never existed. Run"
            " the workers with --history to keep results of finished tasks"
        )
    identifier = job["task_identifier"] if job else attempts[-1]["task_identifier"]
    payload = job["payload"] if job else last_payload
    task = resolve_task(identifier, payload, job["priority"] if job else None)
    if task is None:
        raise TaskResultDoesNotExist(
            f"job {job_id} runs the task {identifier!r}, which is not a Django task: no"
            " module path of that name imports to a task"
        )
    try:
        payload_arguments(payload)
    except ValueError:
        # Gone, and its history kept no payload (over the size cap); or not a Django
        # task's payload (added by hand), which the worker fails for good.
        payload = {}
    meta = payload.get("django") if isinstance(payload.get("django"), Mapping) else {}
    alias: str = meta["backend"] if isinstance(meta.get("backend"), str) else backend.alias
    if job is not None:
        return _from_job(task, job, attempts, payload, alias)
    return _from_history(task, job_id, attempts, payload, alias)


def _from_job(task: Any, job: Row, attempts: Sequence[Row], payload: Any, alias: str) -> Any:
    state = job["state"]
    if state == "running":
        status = TaskResultStatus.RUNNING
    elif state == "failed":
        status = TaskResultStatus.FAILED
    else:  # ready, scheduled, or waiting for its retry
        status = TaskResultStatus.READY
    failed = [row for row in attempts if row["outcome"] != "success"]
    if failed:
        errors = [parse_error(row["error"]) for row in failed]
    else:
        errors = [parse_error(job["last_error"])] if job["last_error"] else []
    known = {row["attempt"]: row["pool_id"] for row in attempts}
    if job["locked_by"] is not None:
        known[job["attempts"]] = job["locked_by"]
    worker_ids = [known.get(n, "") for n in range(1, job["attempts"] + 1)]
    first = attempts[0]["started_at"] if attempts else None
    last = job["locked_at"] or (attempts[-1]["started_at"] if attempts else None)
    return task_result(
        task,
        job_id=job["id"],
        status=status,
        payload=payload,
        backend=alias,
        enqueued_at=job["created_at"],
        started_at=first or job["locked_at"],
        last_attempted_at=last,
        finished_at=job["updated_at"] if status == TaskResultStatus.FAILED else None,
        errors=errors,
        worker_ids=worker_ids,
    )


def _from_history(task: Any, job_id: int, attempts: Sequence[Row], payload: Any, alias: str) -> Any:
    last = attempts[-1]
    succeeded = last["outcome"] == "success"
    known = {row["attempt"]: row["pool_id"] for row in attempts}
    return task_result(
        task,
        job_id=job_id,
        status=TaskResultStatus.SUCCESSFUL if succeeded else TaskResultStatus.FAILED,
        payload=payload,
        backend=alias,
        enqueued_at=None,  # the history keeps attempts, not the job's creation
        started_at=attempts[0]["started_at"],
        last_attempted_at=last["started_at"],
        finished_at=last["finished_at"],
        errors=[parse_error(row["error"]) for row in attempts if row["outcome"] != "success"],
        worker_ids=[known.get(n, "") for n in range(1, last["attempt"] + 1)],
    )


def _job_id(result_id: object) -> int:
    text = str(result_id)
    if not _DIGITS.fullmatch(text) or not 0 < int(text) <= _MAX_JOB_ID:
        raise TaskResultDoesNotExist(
            f"{result_id!r} is not a graphile-py task result id (a job id: a positive integer)"
        )
    return int(text)


def django_time(moment: datetime.datetime | None) -> datetime.datetime | None:
    """A time as Django gives times: aware, or naive local time with USE_TZ = False."""
    if moment is None or settings.USE_TZ or timezone.is_naive(moment):
        return moment
    naive: datetime.datetime = timezone.make_naive(moment, timezone.get_default_timezone())
    return naive
