"""Recording what happened to jobs: completions, failures and hand-backs.

Each write is retried through transient database trouble (a job whose outcome is
dropped stays locked for 4 hours). With a batch delay, outcomes are queued for a
:class:`WriteBatcher` instead and written together; shutdown flushes them. With
``history`` on, each write also records the attempts in the side schema's job history,
in the same statement (:mod:`graphile_py.db.history`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg

from graphile_py.db import ConnectionSource, FailureSpec, Statements, borrow
from graphile_py.db.history import History
from graphile_py.db.retry import with_retries
from graphile_py.errors import GraphileError
from graphile_py.jobs import Job
from graphile_py.logs import plural
from graphile_py.pool.batch_writer import WriteBatcher
from graphile_py.pool.execution import Outcome
from graphile_py.pool.options import WorkerOptions

__all__ = ["FINAL_WRITE_TIMEOUT", "OutcomeWriter", "history_for", "prune_history"]

T = TypeVar("T")

#: A finished job and when its task started (epoch seconds), for the job history.
Finished = tuple[Job, float | None]

logger = logging.getLogger("graphile_py.worker")

#: How long shutdown waits for the final fail/complete writes once the grace period is over.
FINAL_WRITE_TIMEOUT = 15.0


class OutcomeWriter:
    """Writes job outcomes for one pool, at once or in batches (after :meth:`attach`)."""

    def __init__(
        self,
        *,
        pool_id: str,
        statements: Statements,
        complete_delay: float | None,
        fail_delay: float | None,
        on_batch_failure: Callable[[BaseException, str, int], None],
        history: History | None = None,
    ) -> None:
        self._pool_id = pool_id
        self._statements = statements
        #: Where attempts are recorded with their outcomes; None when history is off.
        self.history = history
        self._connections: ConnectionSource | None = None
        self._give_up = threading.Event()
        self._completions: WriteBatcher[Finished] | None = None
        self._failures: WriteBatcher[FailureSpec] | None = None
        if complete_delay is not None:
            self._completions = WriteBatcher(
                name=f"graphile-py-completions-{pool_id}",
                delay=complete_delay,
                write=self._complete,
                on_failure=lambda exc, jobs: on_batch_failure(exc, "complete_job", len(jobs)),
            )
        if fail_delay is not None:
            self._failures = WriteBatcher(
                name=f"graphile-py-failures-{pool_id}",
                delay=fail_delay,
                write=self._fail,
                on_failure=lambda exc, specs: on_batch_failure(exc, "fail_job", len(specs)),
            )

    def attach(self, connections: ConnectionSource) -> None:
        """Write with ``connections`` (the pool's, which exist only once it starts)."""
        self._connections = connections

    def check_history(self, conn: psycopg.Connection[Any]) -> None:
        """With history on, raise ConfigurationError if its table is not installed."""
        if self.history is not None:
            self.history.check_installed(conn)

    @property
    def busy(self) -> bool:
        """True while batched outcomes are waiting to be written."""
        return any(b is not None and b.busy for b in (self._completions, self._failures))

    def record(self, job: Job, outcome: Outcome) -> None:
        """Complete or fail ``job`` as ``outcome`` says (queued, when batching)."""
        if outcome.succeeded:
            if self._completions is not None:
                self._completions.add((job, outcome.started_at))
            else:
                self._complete([(job, outcome.started_at)])
            return
        spec = _failure(job, outcome)
        if self._failures is not None:
            self._failures.add(spec)
        else:
            self._fail([spec])

    def writes_at_once(self, outcome: Outcome) -> bool:
        """True if :meth:`record` would write this outcome now rather than batch it."""
        batcher = self._completions if outcome.succeeded else self._failures
        return batcher is None

    def write(self, conn: psycopg.Connection[Any], job: Job, outcome: Outcome) -> None:
        """Send the statement recording ``outcome`` on ``conn`` (no retries, no batching)."""
        if outcome.succeeded:
            self._send_completions(conn, [(job, outcome.started_at)])
        else:
            self._send_failures(conn, [_failure(job, outcome)])

    def fail_now(self, job: Job, message: str, *, started_at: float | None = None) -> None:
        """Fail one job at once, bypassing any batch (a task past its time limit).

        The attempt is recorded as abandoned, started at ``started_at``.
        """
        self._fail([FailureSpec(job, message, started_at=started_at, outcome="abandoned")])

    def fail_all(
        self,
        ids: Sequence[int],
        message: str,
        *,
        within: float,
        started: Mapping[int, float] | None = None,
    ) -> None:
        """Fail these jobs with one message, trying for at most ``within`` seconds.

        The attempts are recorded as abandoned; ``started`` gives the start of those whose
        task was running (the others count from their claim).
        """
        history = self.history

        def write(conn: psycopg.Connection[Any]) -> object:
            if history is not None:
                return history.fail_jobs_with_message(
                    conn, self._pool_id, ids, message, started or {}
                )
            return self._statements.fail_jobs_with_message(conn, self._pool_id, ids, message)

        try:
            self._write("Failing jobs at shutdown", write, deadline=time.monotonic() + within)
        except GraphileError as exc:
            logger.error(
                "Could not fail jobs %s at shutdown: %s; they stay locked by %s until"
                " force_unlock_workers or the stale-lock sweep frees them",
                list(ids),
                exc,
                self._pool_id,
            )

    def hand_back(self, ids: Sequence[int], *, within: float) -> None:
        """Return claimed jobs that never started, undoing their attempt."""
        self._write(
            f"Handing back {plural(len(ids), 'job')}",
            lambda conn: self._statements.return_unstarted_jobs(conn, self._pool_id, ids),
            deadline=time.monotonic() + within,
        )

    def close(self, timeout: float) -> None:
        """Write every queued outcome (waiting at most ``timeout`` per batcher)."""
        for batcher in (self._completions, self._failures):
            if batcher is not None:
                batcher.close(timeout=timeout)

    def give_up(self) -> None:
        """Stop retrying writes that still fail (the pool is going away)."""
        self._give_up.set()

    def _complete(self, finished: list[Finished]) -> None:
        self._write(
            f"Completing {plural(len(finished), 'job')}",
            lambda conn: self._send_completions(conn, finished),
        )

    def _fail(self, specs: list[FailureSpec]) -> None:
        self._write(
            f"Failing {plural(len(specs), 'job')}", lambda conn: self._send_failures(conn, specs)
        )

    def _send_completions(self, conn: psycopg.Connection[Any], finished: list[Finished]) -> None:
        if self.history is not None:
            self.history.complete_jobs(conn, self._pool_id, finished)
        else:
            self._statements.complete_jobs(conn, self._pool_id, [job for job, _ in finished])

    def _send_failures(self, conn: psycopg.Connection[Any], specs: list[FailureSpec]) -> None:
        if self.history is not None:
            self.history.fail_jobs(conn, self._pool_id, specs)
        else:
            self._statements.fail_jobs(conn, self._pool_id, specs)

    def _write(
        self,
        description: str,
        write: Callable[[psycopg.Connection[Any]], T],
        *,
        deadline: float | None = None,
    ) -> T:
        connections = self._connections
        assert connections is not None, "the pool has not been started"

        def attempt() -> T:
            with borrow(connections) as conn:
                return write(conn)

        def wait(delay: float) -> bool:
            if deadline is not None and time.monotonic() + delay > deadline:
                return True
            return self._give_up.wait(delay)

        return with_retries(attempt, description=description, wait=wait)


def _failure(job: Job, outcome: Outcome) -> FailureSpec:
    return FailureSpec(
        job,
        outcome.message or "",
        outcome.replacement_payload,
        has_replacement=outcome.replacement_payload is not None,
        started_at=outcome.started_at,
        permanent=outcome.permanent,
    )


def history_for(options: WorkerOptions) -> History | None:
    """The job history a pool with ``options`` records into; None when history is off."""
    if not options.history:
        return None
    return History.for_schemas(
        options.schema,
        options.resolved_side_schema,
        payload_limit=options.history_payload_limit,
    )


def prune_history(options: WorkerOptions, connections: ConnectionSource) -> None:
    """Delete history older than ``history_retention`` (the sweeper calls it; logs failures)."""
    history = history_for(options)
    if history is None:
        return
    try:
        with borrow(connections) as conn:
            deleted = history.prune(conn, options.history_retention)
    except GraphileError as exc:
        logger.warning("Failed to prune the job history; we'll try again later: %s", exc)
        return
    if deleted:
        logger.info(
            "Pruned %s older than %gs",
            plural(deleted, "job history row"),
            options.history_retention,
        )
