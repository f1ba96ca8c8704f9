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
from enum import Enum
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from graphile_py.batching import WriteBatcher
from graphile_py.db import FailureSpec, borrow, map_db_errors, statements_for
from graphile_py.errors import (
    EXIT_INCOMPATIBLE_SCHEMA,
    GraphileError,
    WorkerError,
)
from graphile_py.events import guarded
from graphile_py.execution import EventLoopThread, Outcome, log_outcome, run_task
from graphile_py.jobs import Job
from graphile_py.listener import Listener
from graphile_py.local_queue import LocalQueue
from graphile_py.logs import JobLogger
from graphile_py.options import WorkerOptions
from graphile_py.retry import with_retries
from graphile_py.tasks import JobHelpers, TaskFunction, TaskRegistry, validate_task_map

__all__ = ["WorkerPool"]

logger = logging.getLogger("graphile_py.worker")

# How long shutdown waits for the final fail/complete writes once the grace period is over.
_FINAL_WRITE_TIMEOUT = 15.0


class _JobState(Enum):
    RUNNING = "running"  # the task is executing
    WRITING = "writing"  # the worker is recording the outcome
    ABANDONED = "abandoned"  # shutdown or a timeout failed the job; the worker must not write


class _ActiveJob:
    __slots__ = ("abort", "deadline", "job", "state", "timeout", "written")

    def __init__(self, job: Job, timeout: float | None) -> None:
        self.job = job
        self.state = _JobState.RUNNING
        self.written = threading.Event()
        #: Set when the task should stop: shutdown, or its time limit passed.
        self.abort = threading.Event()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout if timeout is not None else None


class _Slot:
    """One worker thread and the state the pool needs to nudge it, time it or stop it."""

    def __init__(self, pool: WorkerPool, worker_id: str) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.wake = threading.Event()
        self.idle = False
        self.ran_dry = False  # run-once: nothing was ready
        self.retired = False  # a timed-out task holds this thread; a new slot took over
        self.failures = 0
        self.active: _ActiveJob | None = None
        self.thread = threading.Thread(target=self._run, name=worker_id, daemon=True)
        self.log = JobLogger(logger, {"worker_id": worker_id})

    def _run(self) -> None:
        pool = self.pool
        error: BaseException | None = None
        self.log.debug("Spawned")
        try:
            while not (pool.stopping or self.retired or self.ran_dry):
                job = pool.next_job(self)
                if job is not None:
                    pool.execute(self, job)
        except BaseException as exc:  # a bug in the pool itself: stop it rather than hang
            error = exc
            self.log.exception("Worker crashed")
            pool.fail(exc)
        finally:
            pool.events.worker_stop(self.worker_id, error)

    def idle_wait(self) -> None:
        self.idle = True
        try:
            self.wake.wait(self.pool.options.poll_interval)
        finally:
            self.idle = False


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
        self._task_ids: list[int] = []
        self._identifier_by_task_id: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._stop_reason = ""
        self._force_reason = ""
        self._force_requested = threading.Event()
        self._stopping = threading.Event()
        self._give_up_writes = threading.Event()
        self._abort_all = threading.Event()
        self._error: BaseException | None = None
        self._loop = EventLoopThread(f"graphile-py-async-{self.id}")
        self._listener: Listener | None = None
        self._local_queue: LocalQueue | None = None
        self._completions: WriteBatcher[Job] | None = None
        self._failures: WriteBatcher[FailureSpec] | None = None
        self._background: list[threading.Thread] = []
        self._queue_names: dict[int, str] = {}
        self._slots = [self._new_slot() for _ in range(self.options.concurrency)]
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

    def run(self) -> int:
        """Start, run until stopped (or, once, until nothing is ready), shut down."""
        self.start()
        try:
            self.wait_for_stop_request()
        finally:
            self.shutdown()
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
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min(opts.concurrency, opts.max_pool_size),
            max_size=opts.max_pool_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            open=False,
            name=f"graphile-py-{self.id}",
        )
        with map_db_errors("Connecting to the database"):
            self._pool.open(wait=True, timeout=30)
        try:
            self._register_tasks()
        except BaseException:
            self._pool.close()
            raise
        if opts.concurrency > opts.max_pool_size:
            logger.warning(
                "max_pool_size (%d) is smaller than concurrency (%d); workers will wait for"
                " connections",
                opts.max_pool_size,
                opts.concurrency,
            )
        self._start_helpers()
        for slot in self._slots:
            self.events.worker_create(slot.worker_id, list(self.tasks))
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
                hand_back=self._hand_back,
            )
        if opts.complete_job_batch_delay is not None:
            self._completions = WriteBatcher(
                name=f"graphile-py-completions-{self.id}",
                delay=opts.complete_job_batch_delay,
                write=self._write_completions,
                on_failure=lambda exc, jobs: self._batch_failed(exc, "complete_job", len(jobs)),
            )
        if opts.fail_job_batch_delay is not None:
            self._failures = WriteBatcher(
                name=f"graphile-py-failures-{self.id}",
                delay=opts.fail_job_batch_delay,
                write=self._write_failures,
                on_failure=lambda exc, specs: self._batch_failed(exc, "fail_job", len(specs)),
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
        if force and not self._force_requested.is_set():
            self._force_reason = reason
            self._force_requested.set()

    def wait_for_stop_request(self) -> None:
        """Block until a stop is requested (or, once, every worker has run dry)."""
        while not self._stop_requested.wait(0.2):
            if self.once and not any(slot.thread.is_alive() for slot in self._slots):
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
        assert self._pool is not None, "the pool has not been started"
        with borrow(self._pool) as conn:
            yield conn

    def claim(self, batch_size: int = 1, flags: Sequence[str] | None = None) -> list[Job]:
        """Lock and return up to ``batch_size`` ready jobs of ours."""
        now = datetime.now(UTC) if self.options.use_node_time else None
        with self.connection() as conn:
            rows = self._statements.claim_jobs(
                conn,
                pool_id=self.id,
                task_ids=self._task_ids,
                batch_size=batch_size,
                forbidden_flags=flags,
                now=now,
            )
        return [
            Job.from_row(row, task_identifier=self._identifier_by_task_id[row["task_id"]])
            for row in rows
        ]

    def next_job(self, slot: _Slot) -> Job | None:
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

    def _check_ran_dry(self, slot: _Slot) -> None:
        # Run-once ends for a worker when nothing is ready -- but a job of a named queue
        # becomes ready when a sibling still running (or whose outcome is still being
        # written) releases the queue, so look again while anything is in flight.
        with self._lock:
            busy = any(other.active is not None for other in self._slots if other is not slot)
        busy = busy or any(b is not None and b.busy for b in (self._completions, self._failures))
        if busy:
            slot.wake.wait(0.02)
        else:
            slot.ran_dry = True

    def execute(self, slot: _Slot, job: Job) -> None:
        """Run ``job`` on the current thread and record the outcome."""
        active = _ActiveJob(job, self._timeouts.get(job.task_identifier, self.options.task_timeout))
        if self._abort_all.is_set():
            active.abort.set()
        with self._lock:
            slot.active = active
        log = JobLogger(
            logger, {"worker_id": slot.worker_id, "task": job.task_identifier, "job_id": job.id}
        )
        log.debug("Found task %s (%s)", job.id, job.task_identifier)
        self.events.job_start(slot.worker_id, job)
        helpers = JobHelpers(
            job=job,
            pool=self._require_pool(),
            schema=self.options.schema,
            logger=log,
            abort_event=active.abort,
            worker_id=slot.worker_id,
            queue_name_lookup=self._queue_name,
        )
        started = time.perf_counter()
        outcome = run_task(self.tasks[job.task_identifier], job.payload, helpers, self._loop)
        elapsed_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            if active.state is _JobState.ABANDONED:
                if slot.active is active:
                    slot.active = None
                log.warning(
                    "Task %s (%s) finished after it had been failed (shutdown or time limit);"
                    " its result is discarded",
                    job.id,
                    job.task_identifier,
                )
                return
            active.state = _JobState.WRITING
        self._emit_outcome(slot.worker_id, job, outcome)
        try:
            self._record(job, outcome)
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
            with self._lock:
                slot.active = None
            active.written.set()
        log_outcome(log, job, outcome, elapsed_ms)

    def _emit_outcome(self, worker_id: str, job: Job, outcome: Outcome) -> None:
        if outcome.error is None:
            self.events.job_success(worker_id, job)
        else:
            self.events.job_error(worker_id, job, outcome.error, outcome.batch_errors)
            if job.attempts >= job.max_attempts:
                self.events.job_failed(worker_id, job, outcome.error, outcome.batch_errors)
        self.events.job_complete(worker_id, job, outcome.error)

    def _record(self, job: Job, outcome: Outcome) -> None:
        if outcome.succeeded:
            if self._completions is not None:
                self._completions.add(job)
                return
            self._write_with_retries(
                f"Completing job {job.id}",
                lambda conn: self._statements.complete_jobs(conn, self.id, [job]),
            )
            return
        spec = FailureSpec(
            job,
            outcome.message or "",
            outcome.replacement_payload,
            has_replacement=outcome.replacement_payload is not None,
        )
        if self._failures is not None:
            self._failures.add(spec)
            return
        self._write_with_retries(
            f"Failing job {job.id}", lambda conn: self._statements.fail_jobs(conn, self.id, [spec])
        )

    def _write_with_retries(
        self, description: str, write: Any, *, deadline: float | None = None
    ) -> Any:
        def attempt() -> Any:
            with self.connection() as conn:
                return write(conn)

        def wait(delay: float) -> bool:
            if deadline is not None and time.monotonic() + delay > deadline:
                return True
            return self._give_up_writes.wait(delay)

        return with_retries(attempt, description=description, wait=wait)

    def _write_completions(self, jobs: list[Job]) -> None:
        self._write_with_retries(
            f"Completing {len(jobs)} job(s)",
            lambda conn: self._statements.complete_jobs(conn, self.id, jobs),
        )

    def _write_failures(self, specs: list[FailureSpec]) -> None:
        self._write_with_retries(
            f"Failing {len(specs)} job(s)",
            lambda conn: self._statements.fail_jobs(conn, self.id, specs),
        )

    def _batch_failed(self, error: BaseException, action: str, count: int) -> None:
        logger.error(
            "Failed to %s %d job(s) in a batch: %s; they stay locked by %s until"
            " force_unlock_workers or the stale-lock sweep frees them. Shutting down, since"
            " the queue is no longer in a consistent state.",
            action.replace("_", " "),
            count,
            error,
            self.id,
        )
        self.events.pool_fatal_error(self, error, action)
        self.request_stop(f"could not {action.replace('_', ' ')}s")

    def _hand_back(self, ids: Sequence[int]) -> None:
        self._write_with_retries(
            f"Handing back {len(ids)} job(s)",
            lambda conn: self._statements.return_unstarted_jobs(conn, self.id, ids),
            deadline=time.monotonic() + _FINAL_WRITE_TIMEOUT,
        )

    # -- time limits ---------------------------------------------------------------------

    def _enforce_timeouts(self) -> None:
        grace = self.options.task_timeout_grace
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            overdue: list[tuple[str, _ActiveJob]] = []
            with self._lock:
                for index, slot in enumerate(self._slots):
                    active = slot.active
                    if active is None or active.deadline is None:
                        continue
                    if active.state is not _JobState.RUNNING or now < active.deadline:
                        continue
                    if not active.abort.is_set():
                        slot.log.warning(
                            "Task %s (%s) passed its time limit of %gs; asking it to stop",
                            active.job.id,
                            active.job.task_identifier,
                            active.timeout,
                        )
                        active.abort.set()
                    if now >= active.deadline + grace:
                        active.state = _JobState.ABANDONED
                        slot.retired = True
                        slot.active = None
                        replacement = self._new_slot()
                        self._slots[index] = replacement
                        overdue.append((slot.worker_id, active))
                        self.events.worker_create(replacement.worker_id, list(self.tasks))
                        replacement.thread.start()
            for worker_id, active in overdue:
                self._fail_timed_out(worker_id, active)

    def _fail_timed_out(self, worker_id: str, active: _ActiveJob) -> None:
        job = active.job
        message = (
            f"Task timed out after {active.timeout:g}s and did not stop within"
            f" {self.options.task_timeout_grace:g}s of being asked to"
        )
        logger.error("Failing job %s (%s): %s", job.id, job.task_identifier, message)
        spec = FailureSpec(job, message)
        try:
            self._write_with_retries(
                f"Failing job {job.id}",
                lambda conn: self._statements.fail_jobs(conn, self.id, [spec]),
            )
        except GraphileError as exc:
            logger.error("Could not fail timed-out job %s: %s", job.id, exc)
        error = TimeoutError(message)
        self._emit_outcome(worker_id, job, Outcome(error=error, message=message))
        active.written.set()

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
        while any(slot.thread.is_alive() for slot in self._slots):
            if self._force_requested.is_set():
                forced = True
                break
            waited = time.monotonic() - started
            if waited >= opts.graceful_shutdown_abort_timeout and not self._abort_all.is_set():
                logger.info("Asking running tasks to stop (abort_event set)")
                self._abort_running_jobs()
            if waited >= opts.shutdown_timeout:
                break
            time.sleep(0.02)

        still_running = self._abandon_running_jobs()
        if still_running:
            self._abort_running_jobs()
            self.events.pool_forceful_shutdown(self, reason)
            message = (
                f"Forced worker shutdown due to {self._force_reason or reason}"
                if forced
                else f"Worker shutdown ({reason}): the job did not finish within the"
                f" {opts.shutdown_timeout:g}s grace period"
            )
            self._fail_abandoned([job.id for job in still_running], message)
        self._wait_for_writes()
        for batcher in (self._completions, self._failures):
            if batcher is not None:
                batcher.close(timeout=_FINAL_WRITE_TIMEOUT)
        self._release_leftover_locks(reason)
        self._give_up_writes.set()
        for thread in self._background:
            thread.join(timeout=5)
        self._loop.close()
        self._pool.close()
        logger.info("Worker pool %s stopped", self.id)
        self.events.pool_release(self)

    def _abort_running_jobs(self) -> None:
        with self._lock:
            self._abort_all.set()
            for slot in self._slots:
                if slot.active is not None:
                    slot.active.abort.set()

    def _abandon_running_jobs(self) -> list[Job]:
        with self._lock:
            running = [
                slot.active
                for slot in self._slots
                if slot.active is not None and slot.active.state is _JobState.RUNNING
            ]
            for active in running:
                active.state = _JobState.ABANDONED
        return [active.job for active in running]

    def _fail_abandoned(self, ids: list[int], message: str) -> None:
        logger.warning("Failing %d job(s) still running at shutdown: %s", len(ids), ids)

        def write() -> None:
            with self.connection() as conn:
                self._statements.fail_jobs_with_message(conn, self.id, ids, message)

        deadline = time.monotonic() + _FINAL_WRITE_TIMEOUT
        try:
            with_retries(
                write,
                description="Failing jobs at shutdown",
                wait=lambda delay: (
                    time.monotonic() + delay > deadline or self._give_up_writes.wait(delay)
                ),
            )
        except GraphileError as exc:
            logger.error(
                "Could not fail jobs %s at shutdown: %s; they stay locked by %s until"
                " force_unlock_workers or the stale-lock sweep frees them",
                ids,
                exc,
                self.id,
            )

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

    def _wait_for_writes(self) -> None:
        deadline = time.monotonic() + _FINAL_WRITE_TIMEOUT
        with self._lock:
            writing = [
                slot.active
                for slot in self._slots
                if slot.active is not None and slot.active.state is _JobState.WRITING
            ]
        for active in writing:
            active.written.wait(max(0.0, deadline - time.monotonic()))

    # -- internals -----------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        return _Slot(self, self.options.worker_id or f"worker-{secrets.token_hex(9)}")

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
