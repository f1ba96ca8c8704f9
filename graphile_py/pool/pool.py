"""The worker pool: N worker threads, a LISTEN thread and a stale-lock sweeper.

Each worker thread claims one job at a time in a short autocommit statement (spec 3.4),
runs its task without holding a connection, then completes or fails it (spec 3.6, 3.7).
Idle workers wait on their own event for at most ``poll_interval``; a ``jobs:insert``
notification sets the events of as many workers as there are new jobs. A worker nudged
while it was fetching fetches again at once, so no notification is lost to a race.

Shutdown runs in order: stop claiming, let running jobs finish within
``shutdown_timeout`` (asking them to stop through ``abort_event`` after
``graceful_shutdown_abort_timeout``), fail whatever is still running with a clear
message, and wait for every one of those writes before closing connections. A job is
never left locked by a pool that stopped on purpose.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from graphile_py.db import borrow, map_db_errors, statements_for
from graphile_py.db.lease import ConnectionLease
from graphile_py.db.retry import with_retries
from graphile_py.errors import (
    EXIT_INCOMPATIBLE_SCHEMA,
    GraphileError,
    WorkerError,
)
from graphile_py.events import guarded
from graphile_py.jobs import Job
from graphile_py.logs import JobLogger
from graphile_py.pool.execution import EventLoopThread, Outcome, log_outcome, run_task
from graphile_py.pool.listener import Listener
from graphile_py.pool.local_queue import LocalQueue
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.outcomes import OutcomeWriter
from graphile_py.pool.slots import ActiveJob, SlotTable, WorkerSlot
from graphile_py.tasks import JobHelpers, TaskFunction, TaskRegistry, validate_task_map

__all__ = ["WorkerPool"]

logger = logging.getLogger("graphile_py.worker")

# How long shutdown waits for the final fail/complete writes once the grace period is over.
_FINAL_WRITE_TIMEOUT = 15.0


class WorkerPool:
    """Runs jobs from the database with a pool of threads until told to stop.

    ``run()`` blocks: it starts everything, waits for :meth:`request_stop` (signals call
    it), shuts down in order, and returns the process exit status (0, or 57 when a
    breaking migration by another process made it unsafe to go on). With ``once=True``
    the pool instead returns when no job is ready.
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
        self._timeouts = dict(tasks.timeouts) if isinstance(tasks, TaskRegistry) else {}
        self._conninfo = conninfo
        self._statements = statements_for(self.options.schema)
        self._connect_kwargs: dict[str, Any] = {
            "prepare_threshold": 0 if self.options.prepared_statements else None
        }
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lease: ConnectionLease | None = None
        self._task_ids: list[int] = []
        self._identifier_by_task_id: dict[int, str] = {}
        self._stop_requested = threading.Event()
        self._stop_reason = ""
        self._force_reason = ""
        self._force_requested = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._loop = EventLoopThread(f"graphile-py-async-{self.id}")
        self._listener: Listener | None = None
        self._local_queue: LocalQueue | None = None
        self._outcomes = OutcomeWriter(
            pool_id=self.id,
            statements=self._statements,
            connection=self.connection,
            complete_delay=self.options.complete_job_batch_delay,
            fail_delay=self.options.fail_job_batch_delay,
            on_batch_failure=self._batch_failed,
        )
        self._background: list[threading.Thread] = []
        self._queue_names: dict[int, str] = {}
        self._slots = SlotTable(self._new_slot, self.options.concurrency)
        self.events.pool_create(self)

    # -- public control ------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once the pool has stopped claiming jobs."""
        return self._stopping.is_set()

    @property
    def listener_reconnects(self) -> int:
        """How often the LISTEN connection was lost and re-established."""
        return self._listener.reconnects if self._listener else 0

    @property
    def connection_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The psycopg pool behind the worker (for its statistics); see :attr:`connections`."""
        return self._require_pool()

    @property
    def connections(self) -> ConnectionLease:
        """Where companions such as cron borrow the pool's connections (after :meth:`start`).

        Borrow through this, not from :attr:`connection_pool`: the lease keeps connections
        between uses, and the pool would not see them free.
        """
        assert self._lease is not None, "the pool has not been started"
        return self._lease

    # -- for health probes and metrics (graphile_py.extras.metrics) -------------------

    @property
    def conninfo(self) -> str:
        """The connection string the pool was given (probes open their own connections)."""
        return self._conninfo

    @property
    def started(self) -> bool:
        """True once :meth:`start` has opened the pool's connections."""
        return self._pool is not None

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
        opts = self.options
        # One direct connection first: a wrong connection string fails now, with the
        # server's own words, instead of after the pool's 30 s of retrying.
        with map_db_errors("Connecting to the database"):
            psycopg.connect(self._conninfo, **self._connect_kwargs).close()
        # Start with a couple of connections and let the pool grow on demand: waiting for
        # max_pool_size connections made every start (and every --once) slow.
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min(2, opts.max_pool_size),
            max_size=opts.max_pool_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            open=False,
            name=f"graphile-py-{self.id}",
        )
        with map_db_errors("Connecting to the database"):
            self._pool.open(wait=True, timeout=30)
        self._lease = ConnectionLease(self._pool)
        try:
            self._register_tasks()
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
            self._local_queue = LocalQueue(
                size=opts.local_queue_size,
                ttl=opts.local_queue_ttl,
                poll_interval=opts.poll_interval,
                once=self.once,
                fetch=lambda size: self.claim(batch_size=size),
                hand_back=lambda ids: self._outcomes.hand_back(ids, within=_FINAL_WRITE_TIMEOUT),
            )
        if not self.once:
            events = self.events
            self._listener = Listener(
                conninfo=self._conninfo,
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
        if self._timeouts or opts.task_timeout is not None:
            self._background.append(self._thread(self._enforce_timeouts, "timeouts"))

    def _thread(self, target: Any, role: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"graphile-py-{role}-{self.id}", daemon=True)
        thread.start()
        return thread

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """Block until the LISTEN connection is up (always True in run-once mode)."""
        return self._listener is None or self._listener.wait_connected(timeout)

    def request_stop(self, reason: str = "stop requested", *, force: bool = False) -> None:
        """Ask the pool to shut down; safe from signal handlers and other threads."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            self._stop_requested.set()
            self.events.stop()
        if force and not self._force_requested.is_set():
            self._force_reason = reason
            self._force_requested.set()

    def wait_for_stop_request(self) -> None:
        """Block until a stop is requested (or, once, every worker has run dry)."""
        interval = 0.005 if self.once else 0.2
        while not self._stop_requested.wait(interval):
            if self.once and not self._slots.any_alive():
                return

    def nudge(self, count: int) -> None:
        """Wake up to ``count`` idle workers to look for jobs now."""
        if self._local_queue is not None:
            self._local_queue.pulse(count)
        woken = 0
        for slot in self._slots:
            if woken >= count:
                break
            if slot.idle:
                woken += 1
            # A busy worker keeps the nudge and fetches again as soon as it is free.
            slot.wake.set()

    def fail(self, error: BaseException) -> None:
        """Stop the pool because of ``error``; :meth:`run` re-raises it."""
        if self._error is None:
            self._error = error
        self.request_stop(f"error: {error}")

    # -- the hot path (called from worker threads) ---------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection from the pool, translating pool timeouts."""
        assert self._lease is not None, "the pool has not been started"
        with borrow(self._lease) as conn:
            yield conn

    def claim(self, batch_size: int = 1, flags: Sequence[str] | None = None) -> list[Job]:
        """Lock and return up to ``batch_size`` ready jobs of ours."""
        now = datetime.now(UTC) if self.options.use_node_time else None
        with self.connection() as conn:
            return self._statements.claim_jobs(
                conn,
                pool_id=self.id,
                task_ids=self._task_ids,
                batch_size=batch_size,
                forbidden_flags=flags,
                now=now,
                identifiers=self._identifier_by_task_id,
            )

    def next_job(self, slot: WorkerSlot) -> Job | None:
        """The next job for ``slot``, or None after waiting (idle, or nothing ready)."""
        self.events.worker_get_job_start(slot.worker_id)
        flags = self._forbidden_flags()
        if self._local_queue is not None and flags is None:
            job = self._local_queue.get_job(self._stopping)
            if job is None and self.once:
                self._check_ran_dry(slot)
            return job
        slot.wake.clear()
        try:
            jobs = self.claim(flags=flags)
        except GraphileError as exc:
            slot.failures += 1
            slot.log.warning("Failed to acquire job: %s (%d contiguous fails)", exc, slot.failures)
            self.events.worker_get_job_error(slot.worker_id, exc)
            if self.once and slot.failures >= 3:
                self.fail(exc)
                slot.ran_dry = True
            else:
                slot.idle_wait()
            return None
        slot.failures = 0
        if jobs:
            return jobs[0]
        self.events.worker_get_job_empty(slot.worker_id)
        if self.once:
            self._check_ran_dry(slot)
        else:
            slot.idle_wait()
        return None

    def _check_ran_dry(self, slot: WorkerSlot) -> None:
        # Run-once ends for a worker when nothing is ready -- but a job of a named queue
        # becomes ready when a sibling still running (or whose outcome is still being
        # written) releases the queue, so look again while anything is in flight.
        busy = self._slots.others_busy(slot) or self._outcomes.busy
        if busy:
            slot.wake.wait(0.02)
        else:
            slot.ran_dry = True

    def execute(self, slot: WorkerSlot, job: Job) -> Job | None:
        """Run ``job`` on this thread and record the outcome; maybe return the next job."""
        timeout = self._timeouts.get(job.task_identifier, self.options.task_timeout)
        active = self._slots.begin(slot, job, timeout)
        log = JobLogger(
            logger, {"worker_id": slot.worker_id, "task": job.task_identifier, "job_id": job.id}
        )
        log.debug("Found task %s (%s)", job.id, job.task_identifier)
        self.events.job_start(slot.worker_id, job)
        helpers = JobHelpers(
            job=job,
            pool=self.connections,
            schema=self.options.schema,
            logger=log,
            abort_event=lambda: active.abort,
            worker_id=slot.worker_id,
            queue_name_lookup=self._queue_name,
            use_node_time=self.options.use_node_time,
        )
        started = time.perf_counter()
        outcome = run_task(self.tasks[job.task_identifier], job.payload, helpers, self._loop)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not self._slots.task_returned(slot, active):
            log.warning(
                "Task %s (%s) finished after it had been failed (shutdown or time limit);"
                " its result is discarded",
                job.id,
                job.task_identifier,
            )
            return None
        self._emit_outcome(slot.worker_id, job, outcome)
        next_job: Job | None = None
        try:
            next_job = self._record_and_claim(slot, job, outcome)
        except GraphileError as exc:
            log.error(
                "Failed to release job %s after %s: %s; it stays locked by %s until"
                " force_unlock_workers or the 4-hour stale-lock sweep frees it",
                job.id,
                "success" if outcome.succeeded else f"failure {outcome.message!r}",
                exc,
                self.id,
            )
            self.events.worker_fatal_error(slot.worker_id, exc, job)
        finally:
            self._slots.written(slot, active)
        log_outcome(log, job, outcome, elapsed_ms, self._queue_name)
        return next_job

    def _record_and_claim(self, slot: WorkerSlot, job: Job, outcome: Outcome) -> Job | None:
        """Record the outcome; when it is written at once, claim the next job with it.

        One round trip instead of two per job: a success is one statement that deletes
        and claims; a failure and the claim go in one pipeline. Either way they share a
        transaction, so if anything fails neither took effect, and the outcome is written
        again on its own, with retries (completion is by id, so a repeat is harmless).
        Not for a job of a named queue: releasing the queue and claiming again in one
        transaction would never let another pool (Node or Python) see the queue free,
        and this worker would keep it to itself.
        """
        if (
            self.stopping
            or job.job_queue_id is not None
            or self._local_queue is not None
            or not self._outcomes.writes_at_once(outcome)
        ):
            self._outcomes.record(job, outcome)
            return None
        # Only now: a forbidden_flags callable is called once per claim, not per job.
        flags = self._forbidden_flags()
        self.events.worker_get_job_start(slot.worker_id)
        now = datetime.now(UTC) if self.options.use_node_time else None
        try:
            with self.connection() as conn:
                if outcome.succeeded:
                    # The common case: one statement deletes the job and claims the next.
                    jobs = self._statements.complete_and_claim(
                        conn,
                        done_id=job.id,
                        pool_id=self.id,
                        task_ids=self._task_ids,
                        forbidden_flags=flags,
                        now=now,
                        identifiers=self._identifier_by_task_id,
                    )
                else:
                    with (
                        map_db_errors("Recording an outcome and claiming the next job"),
                        conn.pipeline(),
                    ):
                        self._outcomes.write(conn, job, outcome)
                        jobs = self._statements.claim_jobs(
                            conn,
                            pool_id=self.id,
                            task_ids=self._task_ids,
                            forbidden_flags=flags,
                            now=now,
                            identifiers=self._identifier_by_task_id,
                        )
        except GraphileError as exc:
            logger.debug("Pipelined write failed (%s); writing the outcome on its own", exc)
            self._outcomes.record(job, outcome)
            return None
        if not jobs:
            self.events.worker_get_job_empty(slot.worker_id)
            return None
        return jobs[0]

    def hand_back(self, job: Job) -> None:
        """Return a claimed job that will not be run by this pool (it is stopping)."""
        try:
            self._outcomes.hand_back([job.id], within=_FINAL_WRITE_TIMEOUT)
        except GraphileError as exc:
            logger.error("Could not hand back job %s: %s", job.id, exc)

    def _emit_outcome(self, worker_id: str, job: Job, outcome: Outcome) -> None:
        if outcome.error is None:
            self.events.job_success(worker_id, job)
        else:
            self.events.job_error(worker_id, job, outcome.error, outcome.batch_errors)
            if job.attempts >= job.max_attempts:
                self.events.job_failed(worker_id, job, outcome.error, outcome.batch_errors)
        self.events.job_complete(worker_id, job, outcome.error)

    def _batch_failed(self, error: BaseException, action: str, count: int) -> None:
        verb = "complete" if action == "complete_job" else "fail"
        logger.error(
            "Could not %s %d job(s) in a batch: %s. Shutting down, since the queue is no"
            " longer in a consistent state; shutdown fails the jobs this pool still holds.",
            verb,
            count,
            error,
        )
        self.events.pool_fatal_error(self, error, action)
        self.fail(error)

    # -- time limits ---------------------------------------------------------------------

    def _enforce_timeouts(self) -> None:
        while not self._stopping.wait(0.05):
            for overdue in self._slots.enforce_time_limits(self.options.task_timeout_grace):
                self.events.worker_create(overdue.replacement.worker_id, list(self.tasks))
                overdue.replacement.thread.start()
                self._fail_timed_out(overdue.worker_id, overdue.active)

    def _fail_timed_out(self, worker_id: str, active: ActiveJob) -> None:
        job = active.job
        message = (
            f"Task timed out after {active.timeout:g}s and did not stop within"
            f" {self.options.task_timeout_grace:g}s of being asked to"
        )
        logger.error("Failing job %s (%s): %s", job.id, job.task_identifier, message)
        try:
            self._outcomes.fail_now(job, message)
        except GraphileError as exc:
            logger.error("Could not fail timed-out job %s: %s", job.id, exc)
        error = TimeoutError(message)
        self._emit_outcome(worker_id, job, Outcome(error=error, message=message))
        self._slots.written(None, active)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop in order; returns when no job of ours is locked any more."""
        if self._pool is None:
            return
        reason = self._stop_reason or (
            "'Run once' mode processed all available jobs and is now exiting"
            if self.once
            else "stop requested"
        )
        forced = self._force_requested.is_set()
        logger.info("Worker pool %s shutting down (%s)", self.id, reason)
        self.events.pool_graceful_shutdown(self, reason)
        self._stopping.set()
        for slot in self._slots:
            slot.wake.set()
        if self._local_queue is not None:
            self._local_queue.release()
        if self._listener is not None:
            self._listener.stop()
            self.events.pool_listen_release(self)

        started = time.monotonic()
        opts = self.options
        aborted = False
        while self._slots.any_alive():
            if self._force_requested.is_set():
                forced = True
                break
            waited = time.monotonic() - started
            if waited >= opts.graceful_shutdown_abort_timeout and not aborted:
                logger.info("Asking running tasks to stop (abort_event set)")
                self._slots.abort_all()
                aborted = True
            if waited >= opts.shutdown_timeout:
                break
            time.sleep(0.02)

        still_running = self._slots.abandon_running()
        if still_running:
            self._slots.abort_all()
            self.events.pool_forceful_shutdown(self, reason)
            message = (
                f"Forced worker shutdown due to {self._force_reason or reason}"
                if forced
                else f"Worker shutdown ({reason}): the job did not finish within the"
                f" {opts.shutdown_timeout:g}s grace period"
            )
            self._fail_abandoned([job.id for job in still_running], message)
        self._slots.wait_for_writes(_FINAL_WRITE_TIMEOUT)
        self._outcomes.close(timeout=_FINAL_WRITE_TIMEOUT)
        self._release_leftover_locks(reason)
        self._outcomes.give_up()
        for thread in self._background:
            thread.join(timeout=5)
        self._loop.close()
        if self._lease is not None:
            self._lease.close()
        self._pool.close()
        logger.info("Worker pool %s stopped", self.id)
        self.events.pool_release(self)

    def _fail_abandoned(self, ids: list[int], message: str) -> None:
        logger.warning("Failing %d job(s) still running at shutdown: %s", len(ids), ids)
        self._outcomes.fail_all(ids, message, within=_FINAL_WRITE_TIMEOUT)

    def _release_leftover_locks(self, reason: str) -> None:
        # Safety net: a job claimed in the instant shutdown began, or one whose outcome
        # could not be written in time, must not stay locked by a pool that is gone.
        try:
            with self.connection() as conn:
                leftover = self._statements.jobs_locked_by(conn, self.id)
        except GraphileError as exc:
            logger.error("Could not check for jobs still locked by %s: %s", self.id, exc)
            return
        if leftover:
            self._fail_abandoned(
                leftover,
                f"Worker shutdown ({reason}) before the job's outcome was recorded",
            )

    # -- internals -----------------------------------------------------------------------

    def _new_slot(self) -> WorkerSlot:
        worker_id = self.options.worker_id or f"worker-{secrets.token_hex(9)}"
        return WorkerSlot(self, worker_id, self.options.poll_interval)

    def _require_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        assert self._pool is not None
        return self._pool

    def _register_tasks(self) -> None:
        def register() -> dict[int, str]:
            with self.connection() as conn:
                return self._statements.register_task_identifiers(conn, list(self.tasks))

        self._identifier_by_task_id = with_retries(
            register,
            description="Registering tasks",
            wait=self._stop_requested.wait,
        )
        self._task_ids = list(self._identifier_by_task_id)

    def _forbidden_flags(self) -> Sequence[str] | None:
        flags = self.options.forbidden_flags
        if callable(flags):
            flags = flags()
        return list(flags) if flags else None

    def _queue_name(self, queue_id: int) -> str:
        name = self._queue_names.get(queue_id)
        if name is None:
            with self.connection() as conn:
                self._queue_names.update(self._statements.lookup_queue_names(conn, [queue_id]))
            name = self._queue_names.get(queue_id)
            if name is None:
                raise WorkerError(f"Queue with id '{queue_id}' not found")
        return name

    def _on_breaking_migration(self, number: int | None) -> None:
        logger.warning(
            "Graphile Worker detected breaking migration to database schema revision '%s';"
            " it would be unsafe to continue, so shutting down...",
            number,
        )
        self.exit_code = EXIT_INCOMPATIBLE_SCHEMA
        self.request_stop(f"breaking migration {number}")

    def _sweep_stale_locks(self) -> None:
        opts = self.options
        delay = random.random() * min(60.0, opts.max_reset_locked_interval)
        while not self._stopping.wait(delay):
            now = datetime.now(UTC) if opts.use_node_time else None
            self.events.reset_locked_started(self)
            delay = _next_sweep_delay(opts)
            try:
                with self.connection() as conn:
                    self._statements.reset_stale_locks(conn, now)
            except GraphileError as exc:
                logger.warning("Failed to reset locked; we'll try again in %.0fs: %s", delay, exc)
                self.events.reset_locked_failure(self, exc, delay)
                continue
            self.events.reset_locked_success(self, delay)


def _next_sweep_delay(opts: WorkerOptions) -> float:
    low, high = opts.min_reset_locked_interval, opts.max_reset_locked_interval
    return low + random.random() * (high - low)
