"""Hooks into what the worker pool and cron are doing (graphile-worker's events).

Subclass :class:`WorkerEvents`, override the methods you care about, and pass an
instance as ``WorkerOptions(events=...)``. Every method here does nothing. Hooks run on
the thread that reached the event (a worker thread for ``job_*``), so keep them quick.
A hook that raises is logged and ignored: it never kills a worker.

>>> class Counting(WorkerEvents):
...     def __init__(self) -> None:
...         self.succeeded = 0
...     def job_success(self, worker_id: str, job: Job) -> None:
...         self.succeeded += 1
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, cast

from graphile_py.jobs import Job

__all__ = [
    "TRACE_KEY",
    "TRACING",
    "AttemptTrace",
    "CombinedEvents",
    "EnqueueTrace",
    "JobTracer",
    "PoolView",
    "WorkerEvents",
    "combine_events",
    "guarded",
]

logger = logging.getLogger("graphile_py.events")


class PoolView(Protocol):
    """The pool as the ``pool_*`` and ``reset_locked_*`` hooks see it (read-only).

    A :class:`~graphile_py.WorkerPool` is one. Hooks are typed with this rather than
    with the pool's class so that events, at the bottom of the package, does not
    depend on the pool, which emits them.
    """

    @property
    def id(self) -> str:
        """The pool's id, written to ``locked_by`` of the jobs and queues it claims."""
        ...

    @property
    def tasks(self) -> Mapping[str, Callable[..., object]]:
        """The pool's tasks by identifier."""
        ...

    @property
    def once(self) -> bool:
        """True in run-once mode."""
        ...

    @property
    def started(self) -> bool:
        """True once the pool has opened its connections."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the pool has stopped claiming jobs."""
        ...

    @property
    def listener_reconnects(self) -> int:
        """How often the LISTEN connection was lost and re-established."""
        ...


class WorkerEvents:
    """No-op hooks; override the ones you need. Arguments mirror graphile-worker's events."""

    # -- the pool ------------------------------------------------------------------------
    def pool_create(self, pool: PoolView) -> None:
        """The pool was built (before it connects)."""

    def pool_listen_connecting(self, pool: PoolView, attempts: int) -> None:
        """The LISTEN connection is being (re)established; ``attempts`` failed so far."""

    def pool_listen_success(self, pool: PoolView) -> None:
        """LISTEN is active."""

    def pool_listen_error(self, pool: PoolView, error: BaseException) -> None:
        """The LISTEN connection failed; it will be retried with backoff."""

    def pool_listen_notification(self, pool: PoolView, channel: str, payload: str) -> None:
        """A notification arrived on ``jobs:insert`` or ``worker:migrate``."""

    def pool_listen_release(self, pool: PoolView) -> None:
        """The LISTEN connection was closed for good (shutdown)."""

    def pool_graceful_shutdown(self, pool: PoolView, message: str) -> None:
        """Graceful shutdown began: no new jobs are claimed."""

    def pool_forceful_shutdown(self, pool: PoolView, message: str) -> None:
        """Running jobs are being failed because shutdown was forced or timed out."""

    def pool_fatal_error(self, pool: PoolView, error: BaseException, action: str) -> None:
        """A batched write (``complete_job`` or ``fail_job``) failed for good."""

    def pool_release(self, pool: PoolView) -> None:
        """The pool has stopped and released its connections."""

    def pool_lost(self, pool: PoolView, lost_pool_id: str, jobs: int) -> None:
        """This pool declared another lost (no heartbeat) and released its ``jobs`` jobs."""

    def pool_fenced(self, pool: PoolView, reason: str) -> None:
        """This pool may have been declared lost: it stops claiming and exits non-zero."""

    # -- workers -------------------------------------------------------------------------
    def worker_create(self, worker_id: str, tasks: Sequence[str]) -> None:
        """A worker thread was created."""

    def worker_get_job_start(self, worker_id: str) -> None:
        """A worker is about to look for a job."""

    def worker_get_job_empty(self, worker_id: str) -> None:
        """A worker found no job ready."""

    def worker_get_job_error(self, worker_id: str, error: BaseException) -> None:
        """Looking for a job failed; it is retried after the poll interval."""

    def worker_stop(self, worker_id: str, error: BaseException | None) -> None:
        """A worker thread ended."""

    def worker_fatal_error(self, worker_id: str, error: BaseException, job: Job) -> None:
        """A job's outcome could not be recorded; it stays locked until unlocked."""

    # -- jobs ----------------------------------------------------------------------------
    def job_start(self, worker_id: str, job: Job) -> None:
        """A job was claimed and its task is about to run."""

    def job_success(self, worker_id: str, job: Job) -> None:
        """The task returned."""

    def job_error(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        """The task raised (or some items of a batch job failed); the job will be retried."""

    def job_failed(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        """After ``job_error``, when no attempts are left: the job failed permanently."""

    def job_complete(self, worker_id: str, job: Job, error: BaseException | None) -> None:
        """The outcome is being recorded (success when ``error`` is None)."""

    # -- the stale-lock sweep ------------------------------------------------------------
    def reset_locked_started(self, pool: PoolView) -> None:
        """The stale-lock sweep is running."""

    def reset_locked_success(self, pool: PoolView, next_delay: float | None) -> None:
        """The sweep finished; the next one is in ``next_delay`` seconds."""

    def reset_locked_failure(
        self, pool: PoolView, error: BaseException, next_delay: float | None
    ) -> None:
        """The sweep failed; it is tried again in ``next_delay`` seconds."""

    # -- cron ----------------------------------------------------------------------------
    def cron_starting(self, start: datetime) -> None:
        """Cron is registering its items and backfilling."""

    def cron_started(self, start: datetime) -> None:
        """Cron registration and backfill are done; scheduling has begun."""

    def cron_backfill(self, identifiers: Sequence[str], timestamp: datetime) -> None:
        """Missed runs of these items at ``timestamp`` are being scheduled."""

    def cron_schedule(self, timestamp: datetime, identifiers: Sequence[str]) -> None:
        """The jobs of one minute are about to be written."""

    def cron_scheduled(self, timestamp: datetime, identifiers: Sequence[str]) -> None:
        """The jobs of one minute were written."""

    def cron_premature_timer(self, current: datetime, expected: datetime) -> None:
        """The clock was behind when cron woke up (clock skew); it waits longer."""

    def cron_overdue_timer(self, current: datetime, expected: datetime) -> None:
        """Cron woke up late (a busy machine or a clock jump); it catches up."""

    # -- the process ---------------------------------------------------------------------
    def graceful_shutdown(self, signal: str) -> None:
        """A signal started a graceful shutdown."""

    def forceful_shutdown(self, signal: str) -> None:
        """A second signal forced the shutdown."""

    def stop(self) -> None:
        """The runner was asked to stop."""


class CombinedEvents(WorkerEvents):
    """Several :class:`WorkerEvents` as one: every hook is called on each, in order.

    A hook that raises is logged and skipped; the others still receive the event (the
    metrics exporter and your own hooks both see every job).
    """

    def __init__(self, *events: WorkerEvents) -> None:
        self.events = tuple(events)

    def _fan_out(self, name: str, args: tuple[Any, ...]) -> None:
        for events in self.events:
            try:
                getattr(events, name)(*args)
            except Exception:
                logger.exception("Event hook %s.%s raised; ignored", type(events).__name__, name)


def _fan_out_hook(name: str) -> Callable[..., None]:
    def hook(self: CombinedEvents, *args: Any) -> None:
        self._fan_out(name, args)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = getattr(WorkerEvents, name).__doc__
    return hook


_HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in vars(WorkerEvents).items() if callable(value) and name[0] != "_"
)
for _name in _HOOK_NAMES:
    setattr(CombinedEvents, _name, _fan_out_hook(_name))
del _name


def combine_events(*events: WorkerEvents | None) -> WorkerEvents | None:
    """One :class:`WorkerEvents` that calls each given one (``None`` entries are skipped).

    Returns None for none, the instance itself for one, else a :class:`CombinedEvents`.
    """
    given = [e for e in events if e is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]
    return CombinedEvents(*given)


def guarded(events: WorkerEvents | None) -> WorkerEvents:
    """``events`` with every hook wrapped so that an exception is logged, never raised."""
    if events is None:
        return _NO_EVENTS
    return cast(WorkerEvents, _Guarded(events))


class _Guarded:
    def __init__(self, inner: WorkerEvents) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Callable[..., None]:
        hook = getattr(self._inner, name)

        @functools.wraps(hook)
        def call(*args: Any) -> None:
            try:
                hook(*args)
            except Exception:
                logger.exception(
                    "Event hook %s.%s raised; ignored", type(self._inner).__name__, name
                )

        setattr(self, name, call)  # look the hook up once
        return call


_NO_EVENTS = WorkerEvents()


# -- tracing hooks -----------------------------------------------------------------------
# Tracing needs to wrap work (an enqueue, a task's run) rather than hear about it after
# the fact, and must be installable from the outside (graphile_py.contrib.otel) without
# the library importing a tracing package: hence these three small protocols and one
# slot. With nothing installed, add_job and run_task pay one attribute read.

#: The payload key that carries a job's trace context: ``{"trace_id", "span_id", "flags"}``
#: in an object payload (and in each object item of an array payload), the format
#: graphile_worker_rs writes and reads. Typed tasks never see it.
TRACE_KEY = "_trace"


class EnqueueTrace(Protocol):
    """One traced enqueue: the payloads to store, and what to call once jobs exist."""

    @property
    def payloads(self) -> Sequence[object]:
        """The payloads to store, carrying the trace context (the caller's are not changed)."""
        ...

    def added(self, jobs: Sequence[Job]) -> None:
        """The jobs were added (their ids are known)."""
        ...


class AttemptTrace(Protocol):
    """One traced attempt of a job."""

    @property
    def payload(self) -> object:
        """The payload to give the task (without the trace context)."""
        ...

    def wrap(self, function: Callable[[Any, Any], object]) -> Callable[[Any, Any], object]:
        """``function`` made to run inside the attempt's trace context (sync or async)."""
        ...

    def end(self, error: BaseException | None, message: str | None) -> None:
        """The attempt ended: success when ``error`` is None."""
        ...


class JobTracer(Protocol):
    """What :data:`TRACING` holds when tracing is installed."""

    def enqueue(
        self, identifiers: Sequence[str], payloads: Sequence[object]
    ) -> AbstractContextManager[EnqueueTrace]:
        """Around adding jobs: exceptions raised inside propagate through it."""
        ...

    def attempt(
        self, job: Job, worker_id: str, queue_name: Callable[[], str | None]
    ) -> AttemptTrace:
        """An attempt of ``job`` is starting on this thread (``queue_name()`` names its
        queue, looked up once per queue and pool)."""
        ...


class _TracerSlot:
    """Where the installed :class:`JobTracer` lives (one per process)."""

    __slots__ = ("tracer",)

    def __init__(self) -> None:
        self.tracer: JobTracer | None = None


#: ``TRACING.tracer`` is the installed tracer, or None (the default).
TRACING = _TracerSlot()
