"""What every worker thread does, round and round: claim a job, run it, record it.

:class:`ClaimLoop` owns a pool's worker slots and is what their threads call. A worker
claims one job at a time in a short autocommit statement (spec 3.4), or takes one from
the local queue, runs its task without holding a connection, then completes or fails it
(spec 3.6, 3.7), when it can in the same round trip as its next claim. Idle workers
wait on their own event for at most ``poll_interval``; :meth:`ClaimLoop.nudge` wakes
them. A worker nudged while it was fetching fetches again at once, so no notification
is lost to a race. Task time limits are enforced here too.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from graphile_py.db import Statements, borrow, map_db_errors
from graphile_py.db.lease import ConnectionLease
from graphile_py.db.retry import with_retries
from graphile_py.db.task_index import TASK_INDEX_NAME, task_index_usable
from graphile_py.errors import GraphileError, WorkerError
from graphile_py.events import WorkerEvents
from graphile_py.jobs import Job
from graphile_py.logs import JobLogger
from graphile_py.pool.execution import EventLoopThread, Outcome, log_outcome, run_task
from graphile_py.pool.local_queue import LocalQueue
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.outcomes import FINAL_WRITE_TIMEOUT, OutcomeWriter
from graphile_py.pool.slots import ActiveJob, SlotTable, WorkerSlot
from graphile_py.tasks import JobHelpers, TaskFunction

__all__ = ["ClaimLoop"]

logger = logging.getLogger("graphile_py.worker")


class ClaimLoop:
    """Claims, runs and records the jobs of one pool, on its worker threads.

    Built with the pool; :meth:`open` gives it the pool's connections once they exist.
    """

    def __init__(
        self,
        *,
        pool_id: str,
        tasks: dict[str, TaskFunction],
        timeouts: dict[str, float],
        options: WorkerOptions,
        once: bool,
        statements: Statements,
        events: WorkerEvents,
        outcomes: OutcomeWriter,
        loop: EventLoopThread,
        stopping: threading.Event,
        fail: Callable[[BaseException], None],
        may_claim: Callable[[], bool] = lambda: True,
    ) -> None:
        self.pool_id = pool_id
        self.tasks = tasks
        self.options = options
        self.once = once
        self.statements = statements
        self.events = events
        self.outcomes = outcomes
        self._timeouts = timeouts
        self._loop = loop
        self._stopping = stopping
        self._fail = fail
        # False once the pool must fence itself (its heartbeat is overdue): no claims.
        self._may_claim = may_claim
        self._counts_lock = threading.Lock()
        self._succeeded = 0
        self._failed = 0
        self._lease: ConnectionLease | None = None
        self._task_ids: list[int] = []
        self._identifier_by_task_id: dict[int, str] = {}
        self._queue_names: dict[int, str] = {}
        #: The side schema whose claim_next function claims single jobs, when prepared
        #: statements are off and it is installed (see WorkerPool._check_pooler); else None.
        self.claim_function_schema: str | None = None
        #: True when graphile_py_jobs_task_index was there and valid at start: claims then
        #: look up each task's jobs apart (db/task_index.py).
        self.per_task = False
        self.local_queue: LocalQueue | None = None
        self.slots = SlotTable(self._new_slot, options.concurrency)

    @property
    def stopping(self) -> bool:
        """True once the pool has stopped claiming jobs."""
        return self._stopping.is_set()

    @property
    def has_time_limits(self) -> bool:
        """True if some task may run out of time (a per-task or a default time limit)."""
        return bool(self._timeouts) or self.options.task_timeout is not None

    @property
    def connections(self) -> ConnectionLease:
        """The pool's connections (after :meth:`open`)."""
        assert self._lease is not None, "the pool has not been started"
        return self._lease

    def open(self, lease: ConnectionLease) -> None:
        """Use ``lease`` for claims, outcomes and tasks' connections from now on."""
        self._lease = lease
        self.outcomes.attach(lease)

    def register_tasks(self, wait: Callable[[float], bool]) -> None:
        """Register the pool's task identifiers (retried; ``wait`` as in with_retries)."""

        def register() -> dict[int, str]:
            with self.connection() as conn:
                self.outcomes.check_history(conn)  # history on needs its table: say so now
                self.per_task = task_index_usable(conn, self.options.schema)
                return self.statements.register_task_identifiers(conn, list(self.tasks))

        self._identifier_by_task_id = with_retries(
            register, description="Registering tasks", wait=wait
        )
        self._task_ids = list(self._identifier_by_task_id)
        if self.per_task:
            logger.info(
                "Claiming per task through the index %s (graphile-py task-index)", TASK_INDEX_NAME
            )

    def start_local_queue(self, size: int) -> None:
        """Claim jobs in batches of ``size`` from now on, and hand them out from memory."""
        self.local_queue = LocalQueue(
            size=size,
            ttl=self.options.local_queue_ttl,
            poll_interval=self.options.poll_interval,
            once=self.once,
            fetch=lambda count: self.claim(batch_size=count),
            hand_back=lambda ids: self.outcomes.hand_back(ids, within=FINAL_WRITE_TIMEOUT),
        )

    def nudge(self, count: int) -> None:
        """Wake up to ``count`` idle workers to look for jobs now."""
        if self.local_queue is not None:
            self.local_queue.pulse(count)
        woken = 0
        for slot in self.slots:
            if woken >= count:
                break
            if slot.idle:
                woken += 1
            # A busy worker keeps the nudge and fetches again as soon as it is free.
            slot.wake.set()

    def wake_all(self) -> None:
        """Wake every worker (so that it sees the pool stopping)."""
        for slot in self.slots:
            slot.wake.set()

    def stop_claiming(self) -> None:
        """Wake every worker so it sees the pool stopping; hand back the local queue."""
        self.wake_all()
        if self.local_queue is not None:
            self.local_queue.release()

    def fail(self, error: BaseException) -> None:
        """Stop the pool because of ``error``."""
        self._fail(error)

    # -- called from worker threads ------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow one of the pool's connections, translating pool timeouts."""
        with borrow(self.connections) as conn:
            yield conn

    def claim(self, batch_size: int = 1, flags: Sequence[str] | None = None) -> list[Job]:
        """Lock and return up to ``batch_size`` ready jobs of ours."""
        if not self._may_claim():
            return []
        now = datetime.now(UTC) if self.options.use_node_time else None
        with self.connection() as conn:
            side = self._claim_function_for(batch_size, flags)
            if side is not None:
                return self.statements.claim_next(
                    conn,
                    side,
                    pool_id=self.pool_id,
                    task_ids=self._task_ids,
                    identifiers=self._identifier_by_task_id,
                    per_task=self.per_task,
                )
            return self.statements.claim_jobs(
                conn,
                pool_id=self.pool_id,
                task_ids=self._task_ids,
                batch_size=batch_size,
                forbidden_flags=flags,
                now=now,
                identifiers=self._identifier_by_task_id,
                per_task=self.per_task,
            )

    def _claim_function_for(self, batch_size: int, flags: Sequence[str] | None) -> str | None:
        """The side schema to claim through (its claim_next), if this claim may use it."""
        if batch_size != 1 or flags or self.options.use_node_time:
            return None
        return self.claim_function_schema

    def next_job(self, slot: WorkerSlot) -> Job | None:
        """The next job for ``slot``, or None after waiting (idle, or nothing ready)."""
        self.events.worker_get_job_start(slot.worker_id)
        flags = self._forbidden_flags()
        if self.local_queue is not None and flags is None:
            job = self.local_queue.get_job(self._stopping)
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
        busy = self.slots.others_busy(slot) or self.outcomes.busy
        if busy:
            slot.wake.wait(0.02)
        else:
            slot.ran_dry = True

    def execute(self, slot: WorkerSlot, job: Job) -> Job | None:
        """Run ``job`` on this thread and record the outcome; maybe return the next job."""
        timeout = self._timeouts.get(job.task_identifier, self.options.task_timeout)
        active = self.slots.begin(slot, job, timeout)
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
        if not self.slots.task_returned(slot, active):
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
                self.pool_id,
            )
            self.events.worker_fatal_error(slot.worker_id, exc, job)
        finally:
            self.slots.written(slot, active)
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
            or self.local_queue is not None
            or not self.outcomes.writes_at_once(outcome)
            or not self._may_claim()
        ):
            self.outcomes.record(job, outcome)
            return None
        # Only now: a forbidden_flags callable is called once per claim, not per job.
        flags = self._forbidden_flags()
        self.events.worker_get_job_start(slot.worker_id)
        now = datetime.now(UTC) if self.options.use_node_time else None
        try:
            with self.connection() as conn:
                side = self._claim_function_for(1, flags) if self.outcomes.history is None else None
                if outcome.succeeded and side is not None:
                    jobs = self.statements.claim_next(
                        conn,
                        side,
                        pool_id=self.pool_id,
                        task_ids=self._task_ids,
                        done_id=job.id,
                        identifiers=self._identifier_by_task_id,
                        per_task=self.per_task,
                    )
                elif outcome.succeeded:
                    # The common case: one statement deletes the job and claims the next.
                    jobs = self.statements.complete_and_claim(
                        conn,
                        done_id=job.id,
                        pool_id=self.pool_id,
                        task_ids=self._task_ids,
                        forbidden_flags=flags,
                        now=now,
                        identifiers=self._identifier_by_task_id,
                        history=self.outcomes.history,
                        started_at=outcome.started_at,
                        done_task=job.task_identifier,
                        per_task=self.per_task,
                    )
                else:
                    with (
                        map_db_errors("Recording an outcome and claiming the next job"),
                        conn.pipeline(),
                    ):
                        self.outcomes.write(conn, job, outcome)
                        jobs = self.statements.claim_jobs(
                            conn,
                            pool_id=self.pool_id,
                            task_ids=self._task_ids,
                            forbidden_flags=flags,
                            now=now,
                            identifiers=self._identifier_by_task_id,
                            per_task=self.per_task,
                        )
        except GraphileError as exc:
            logger.debug("Pipelined write failed (%s); writing the outcome on its own", exc)
            self.outcomes.record(job, outcome)
            return None
        if not jobs:
            self.events.worker_get_job_empty(slot.worker_id)
            return None
        return jobs[0]

    def hand_back(self, job: Job) -> None:
        """Return a claimed job that will not be run by this pool (it is stopping)."""
        try:
            self.outcomes.hand_back([job.id], within=FINAL_WRITE_TIMEOUT)
        except GraphileError as exc:
            logger.error("Could not hand back job %s: %s", job.id, exc)

    def counts(self) -> tuple[int, int]:
        """``(succeeded, failed)``: attempts this pool has seen end so far."""
        with self._counts_lock:
            return self._succeeded, self._failed

    def _emit_outcome(self, worker_id: str, job: Job, outcome: Outcome) -> None:
        with self._counts_lock:
            if outcome.error is None:
                self._succeeded += 1
            else:
                self._failed += 1
        if outcome.error is None:
            self.events.job_success(worker_id, job)
        else:
            self.events.job_error(worker_id, job, outcome.error, outcome.batch_errors)
            if job.attempts >= job.max_attempts or outcome.permanent:
                self.events.job_failed(worker_id, job, outcome.error, outcome.batch_errors)
        self.events.job_complete(worker_id, job, outcome.error)

    # -- time limits (on a thread of their own) ------------------------------------------

    def enforce_time_limits(self) -> None:
        """Until the pool stops: abort overdue tasks, fail and replace the stuck ones."""
        while not self._stopping.wait(0.05):
            for overdue in self.slots.enforce_time_limits(self.options.task_timeout_grace):
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
            self.outcomes.fail_now(job, message, started_at=active.started_at)
        except GraphileError as exc:
            logger.error("Could not fail timed-out job %s: %s", job.id, exc)
        error = TimeoutError(message)
        self._emit_outcome(worker_id, job, Outcome(error=error, message=message))
        self.slots.written(None, active)

    # -- internals -----------------------------------------------------------------------

    def _new_slot(self) -> WorkerSlot:
        worker_id = self.options.worker_id or f"worker-{secrets.token_hex(9)}"
        return WorkerSlot(self, worker_id, self.options.poll_interval)

    def _forbidden_flags(self) -> Sequence[str] | None:
        flags = self.options.forbidden_flags
        if callable(flags):
            flags = flags()
        return list(flags) if flags else None

    def _queue_name(self, queue_id: int) -> str:
        name = self._queue_names.get(queue_id)
        if name is None:
            with self.connection() as conn:
                self._queue_names.update(self.statements.lookup_queue_names(conn, [queue_id]))
            name = self._queue_names.get(queue_id)
            if name is None:
                raise WorkerError(f"Queue with id '{queue_id}' not found")
        return name
