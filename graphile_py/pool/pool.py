"""The worker pool: N worker threads, a LISTEN thread, a heartbeat and a stale-lock sweeper.

:class:`WorkerPool` is the pool's public face: it opens the connections, starts the
threads and takes stop requests. The work itself is done by its parts:
:mod:`~graphile_py.pool.claim_loop` (what each worker thread does: claim, run, record),
:mod:`~graphile_py.pool.listener` (a ``jobs:insert`` notification wakes as many idle
workers as there are new jobs), :mod:`~graphile_py.pool.heartbeat` (the pool registry,
rescue of lost pools, fencing), :mod:`~graphile_py.pool.sweeper` (stale locks) and
:mod:`~graphile_py.pool.shutdown` (stopping in order: a job is never left locked by a
pool that stopped on purpose).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from graphile_py.db import map_db_errors, statements_for
from graphile_py.db.lease import ConnectionLease
from graphile_py.db.pooler import connect_kwargs
from graphile_py.errors import EXIT_FENCED, EXIT_INCOMPATIBLE_SCHEMA, WorkerError
from graphile_py.events import guarded
from graphile_py.jobs import Job
from graphile_py.logs import plural
from graphile_py.pool.claim_loop import ClaimLoop
from graphile_py.pool.execution import EventLoopThread
from graphile_py.pool.heartbeat import Heartbeat
from graphile_py.pool.listener import Listener
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.outcomes import OutcomeWriter, history_for, prune_history
from graphile_py.pool.pooler_check import probe_pooler
from graphile_py.pool.shutdown import StopRequest, finish_jobs
from graphile_py.pool.sweeper import sweep_stale_locks
from graphile_py.tasks import TaskFunction, TaskRegistry, validate_task_map

__all__ = ["WorkerPool"]

logger = logging.getLogger("graphile_py.worker")


class WorkerPool:
    """Runs jobs from the database with a pool of threads until told to stop.

    ``run()`` blocks: it starts everything, waits for :meth:`request_stop` (signals call
    it), shuts down in order, and returns the process exit status (0, or 57 when a
    breaking migration by another process made it unsafe to go on, or 75 when the pool
    fenced itself because it may have been declared lost). With ``once=True`` the pool
    instead returns when no job is ready.
    """

    def __init__(
        self,
        tasks: Mapping[str, TaskFunction],
        *,
        conninfo: str,
        options: WorkerOptions | None = None,
        once: bool = False,
    ) -> None:
        self.tasks = validate_task_map(tasks)
        self.options = options or WorkerOptions()
        self.once = once
        #: Written to ``locked_by`` of claimed jobs and queues; unique per pool.
        self.id = ("otpool-" if once else "pool-") + secrets.token_hex(9)
        self.exit_code = 0
        self.events = guarded(self.options.events)
        self._conninfo = conninfo
        self._statements = statements_for(self.options.schema)
        # Shared with the heartbeat, and updated in place if start() finds a pooler.
        self._connect_kwargs: dict[str, Any] = connect_kwargs(
            prepared_statements=self.options.prepared_statements
        )
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lease: ConnectionLease | None = None
        self._stop = StopRequest()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._loop = EventLoopThread(f"graphile-py-async-{self.id}")
        self._listener: Listener | None = None
        self._background: list[threading.Thread] = []
        self._claims = ClaimLoop(
            pool_id=self.id,
            tasks=self.tasks,
            timeouts=dict(tasks.timeouts) if isinstance(tasks, TaskRegistry) else {},
            options=self.options,
            once=once,
            statements=self._statements,
            events=self.events,
            outcomes=OutcomeWriter(
                pool_id=self.id,
                statements=self._statements,
                complete_delay=self.options.complete_job_batch_delay,
                fail_delay=self.options.fail_job_batch_delay,
                on_batch_failure=self._batch_failed,
                history=history_for(self.options),
            ),
            loop=self._loop,
            stopping=self._stopping,
            fail=self.fail,
            may_claim=lambda: self._heartbeat.may_claim(),  # noqa: PLW0108 - built below
        )
        self._slots = self._claims.slots
        self._heartbeat = Heartbeat.for_pool(
            self.id,
            options=self.options,
            tasks=list(self.tasks),
            conninfo=conninfo,
            connect_kwargs=self._connect_kwargs,
            counters=self._claims.counts,
            on_fenced=self._fenced,
            on_rescued=lambda lost: self.events.pool_lost(self, lost.pool_id, len(lost.job_ids)),
        )
        self.events.pool_create(self)

    # -- public control ------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once the pool has stopped claiming jobs."""
        return self._stopping.is_set()

    @property
    def fenced(self) -> str | None:
        """Why the pool fenced itself (it may have been declared lost), or None."""
        return self._heartbeat.fenced

    @property
    def listener_reconnects(self) -> int:
        """How often the LISTEN connection was lost and re-established."""
        return self._listener.reconnects if self._listener else 0

    @property
    def connection_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The psycopg pool behind the worker (for its statistics); see :attr:`connections`."""
        assert self._pool is not None
        return self._pool

    @property
    def connections(self) -> ConnectionLease:
        """Where companions such as cron borrow the pool's connections (after :meth:`start`).

        Borrow through this, not from :attr:`connection_pool`: the lease keeps connections
        between uses, and the pool would not see them free.
        """
        assert self._lease is not None, "the pool has not been started"
        return self._lease

    # -- state for observers (health probes, metrics) ------------------------------------

    @property
    def conninfo(self) -> str:
        """The connection string the pool was given (probes open their own connections)."""
        return self._conninfo

    @property
    def started(self) -> bool:
        """True once :meth:`start` has opened the pool's connections (and its lease)."""
        # The lease, not the pool: a metrics scrape while the pool opens reads both.
        return self._lease is not None

    def dead_threads(self) -> list[str]:
        """Names of the threads a running pool needs that have died (empty when healthy).

        Always empty in run-once mode (workers end when nothing is ready) and once the
        pool is stopping; threads not started yet are not counted as dead.
        """
        if self._pool is None or self.once or self.stopping:
            return []
        threads = [slot.thread for slot in self._slots if not slot.retired]
        threads += self._background
        dead = [t.name for t in threads if t.ident is not None and not t.is_alive()]
        if self._listener is not None and not self._listener.alive:
            dead.append("listener")
        if self._heartbeat.registered and not self._heartbeat.alive:
            dead.append("heartbeat")
        return dead

    def run(self) -> int:
        """Start, run until stopped (or, once, until nothing is ready), shut down."""
        self.start()
        try:
            self.wait_for_stop_request()
        finally:
            self.shutdown()
        return self.result()

    def result(self) -> int:
        """After shutdown: the exit status, or the error that stopped the pool, raised."""
        if self._error is not None:
            raise WorkerError(
                f"the worker pool stopped because of an error: {self._error}"
            ) from self._error
        return self.exit_code

    def start(self) -> None:
        """Connect, register our tasks, and start the threads."""
        # One direct connection first: a wrong connection string fails now, with the
        # server's own words, instead of after the pool's 30 s of retrying.
        with map_db_errors("Connecting to the database"):
            psycopg.connect(self._conninfo, **self._connect_kwargs).close()
        self._check_pooler()
        opts = self.options
        # Start with a couple of connections and let the pool grow on demand: waiting for
        # max_pool_size connections made every start (and every --once) slow.
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min(2, opts.max_pool_size),
            max_size=opts.max_pool_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            # Test a connection before lending it: after a restart or failover the pool
            # may hold connections the server has closed (the lease tests its own).
            check=ConnectionPool.check_connection,
            open=False,
            name=f"graphile-py-{self.id}",
        )
        with map_db_errors("Connecting to the database"):
            self._pool.open(wait=True, timeout=30)
        self._lease = ConnectionLease(self._pool)
        self._claims.open(self._lease)
        try:
            self._claims.register_tasks(wait=self._stop.requested.wait)
            # Registered before the first claim: a job is never held by an unknown pool.
            if self._heartbeat.register(wait=self._stop.requested.wait):
                self._heartbeat.start()
        except BaseException:
            self._lease.close()
            self._pool.close()
            raise
        if opts.concurrency > opts.max_pool_size:
            logger.warning(
                "max_pool_size (%d) is smaller than concurrency (%d); workers will wait for"
                " connections",
                opts.max_pool_size,
                opts.concurrency,
            )
        # In graphile-worker's order: the workers exist before the listener connects.
        for slot in self._slots:
            self.events.worker_create(slot.worker_id, list(self.tasks))
        self._start_helpers()
        for slot in self._slots:
            slot.thread.start()
        names = ", ".join(repr(name) for name in self.tasks)
        logger.info(
            "Worker connected and looking for jobs... (pool %s, %d worker%s, task names: %s)",
            self.id,
            len(self._slots),
            "" if len(self._slots) == 1 else "s",
            names,
        )

    def _start_helpers(self) -> None:
        opts = self.options
        if opts.local_queue_size is not None:
            if opts.local_queue_size < opts.concurrency:
                logger.warning(
                    "local_queue_size (%d) is smaller than concurrency (%d); some workers"
                    " will wait for every batch",
                    opts.local_queue_size,
                    opts.concurrency,
                )
            self._claims.start_local_queue(opts.local_queue_size)
        if not self.once:
            events = self.events
            self._listener = Listener(
                conninfo=opts.listen_conninfo or self._conninfo,
                connect_kwargs={},
                on_jobs=self.nudge,
                on_breaking_migration=self._on_breaking_migration,
                on_reconnected=lambda: self.nudge(len(self._slots)),
                on_connecting=lambda attempts: events.pool_listen_connecting(self, attempts),
                on_connected=lambda: events.pool_listen_success(self),
                on_error=lambda exc: events.pool_listen_error(self, exc),
                on_notification=lambda ch, payload: events.pool_listen_notification(
                    self, ch, payload
                ),
            )
            self._listener.start()
            self._background.append(self._thread(self._sweep_stale_locks, "sweeper"))
        elif opts.history:
            # A run-once pool never sweeps, and may be all that ever runs (from cron):
            # it prunes the history once, beside its jobs.
            self._background.append(
                self._thread(lambda: prune_history(opts, self.connections), "pruner")
            )
        if self._claims.has_time_limits:
            self._background.append(self._thread(self._claims.enforce_time_limits, "timeouts"))

    def _thread(self, target: Callable[[], None], role: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"graphile-py-{role}-{self.id}", daemon=True)
        thread.start()
        return thread

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """Block until the LISTEN connection is up (always True in run-once mode)."""
        return self._listener is None or self._listener.wait_connected(timeout)

    def request_stop(self, reason: str = "stop requested", *, force: bool = False) -> None:
        """Ask the pool to shut down; safe from signal handlers and other threads."""
        if self._stop.ask(reason):
            self.events.stop()
        if force:
            self._stop.force(reason)

    def wait_for_stop_request(self) -> None:
        """Block until a stop is requested (or, once, every worker has run dry)."""
        interval = 0.005 if self.once else 0.2
        while not self._stop.requested.wait(interval):
            if self.once and not self._slots.any_alive():
                return
            # A watchdog beside the heartbeat thread, which a hung network call may hold.
            self._heartbeat.may_claim()

    def nudge(self, count: int) -> None:
        """Wake up to ``count`` idle workers to look for jobs now."""
        self._claims.nudge(count)

    def fail(self, error: BaseException) -> None:
        """Stop the pool because of ``error``; :meth:`run` re-raises it."""
        if self._error is None:
            self._error = error
        self.request_stop(f"error: {error}")

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection from the pool, translating pool timeouts."""
        with self._claims.connection() as conn:
            yield conn

    def claim(self, batch_size: int = 1, flags: Sequence[str] | None = None) -> list[Job]:
        """Lock and return up to ``batch_size`` ready jobs of ours."""
        return self._claims.claim(batch_size, flags)

    def hand_back(self, job: Job) -> None:
        """Return a claimed job that will not be run by this pool (it is stopping)."""
        self._claims.hand_back(job)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop in order; returns when no job of ours is locked any more."""
        if self._pool is None:
            return
        reason = self._stop.reason or (
            "'Run once' mode processed all available jobs and is now exiting"
            if self.once
            else "stop requested"
        )
        forced = self._stop.forced.is_set()
        logger.info("Worker pool %s shutting down (%s)", self.id, reason)
        self.events.pool_graceful_shutdown(self, reason)
        self._stopping.set()
        self._claims.stop_claiming()
        if self._listener is not None:
            self._listener.stop()
            self.events.pool_listen_release(self)
        finish_jobs(
            self._claims,
            self._stop,
            reason=reason,
            forced=forced,
            on_forceful=lambda: self.events.pool_forceful_shutdown(self, reason),
        )
        for thread in self._background:
            thread.join(timeout=5)
        # Heartbeats go on until no job of ours is left: until then we are alive.
        self._heartbeat.stop()
        if self.fenced is None:
            self._heartbeat.deregister()
        else:
            self._heartbeat.close()
        self._loop.close()
        if self._lease is not None:
            self._lease.close()
        self._pool.close()
        logger.info("Worker pool %s stopped", self.id)
        self.events.pool_release(self)

    # -- internals -----------------------------------------------------------------------

    def _check_pooler(self) -> None:
        """Work around what a transaction-mode pooler would break (see pooler_check)."""
        found = probe_pooler(self.options, self._conninfo, once=self.once)
        if found.poll_interval is not None:
            self._use_poll_interval(found.poll_interval)
        if not found.prepared_statements and self.options.prepared_statements:
            self.options = dataclasses.replace(self.options, prepared_statements=False)
            self._claims.options = self.options
            self._connect_kwargs.update(connect_kwargs(prepared_statements=False))
        self._heartbeat.session_settings = found.session_settings
        self._claims.claim_function_schema = found.claim_function_schema

    def _use_poll_interval(self, seconds: float) -> None:
        self.options = dataclasses.replace(self.options, poll_interval=seconds)
        self._claims.options = self.options
        for slot in self._slots:
            slot.poll_interval = seconds

    def _batch_failed(self, error: BaseException, action: str, count: int) -> None:
        verb = "complete" if action == "complete_job" else "fail"
        logger.error(
            "Could not %s %s in a batch: %s. Shutting down, since the queue is no"
            " longer in a consistent state; shutdown fails the jobs this pool still holds.",
            verb,
            plural(count, "job"),
            error,
        )
        self.events.pool_fatal_error(self, error, action)
        self.fail(error)

    def _fenced(self, reason: str) -> None:
        # Called once, by the heartbeat (which logged why): stop as a pool whose jobs may
        # be running elsewhere. Writes stay safe: completions and failures are only
        # written over jobs this pool still holds (or that nobody holds).
        if self.exit_code == 0:
            self.exit_code = EXIT_FENCED
        self._stopping.set()
        self._claims.wake_all()
        self._slots.abort_all()
        self.events.pool_fenced(self, reason)
        self.request_stop(f"fenced: {reason}")

    def _on_breaking_migration(self, number: int | None) -> None:
        logger.warning(
            "Graphile Worker detected breaking migration to database schema revision '%s';"
            " it would be unsafe to continue, so shutting down...",
            number,
        )
        self.exit_code = EXIT_INCOMPATIBLE_SCHEMA
        self.request_stop(f"breaking migration {number}")

    def _sweep_stale_locks(self) -> None:
        sweep_stale_locks(
            self,
            options=self.options,
            statements=self._statements,
            connections=self.connections,
            events=self.events,
            stopping=self._stopping,
        )
