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
from datetime import datetime
from typing import Any, Protocol, cast

from graphile_py.jobs import Job

__all__ = ["CombinedEvents", "PoolView", "WorkerEvents", "combine_events", "guarded"]

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
