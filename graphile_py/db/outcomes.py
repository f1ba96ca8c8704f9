"""What a worker pool writes after a claim: completions, failures, returns, stale locks.

The statements reproduce graphile-worker 0.18.0's (spec 3.6 to 3.9), so that a job
claimed by one runtime can be completed, failed or unlocked as the other would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py.db.rows import Row, int_array
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors
from graphile_py.jobs import Job

__all__ = [
    "COMPLETION_FENCE",
    "FAIL_ALL_BODY",
    "FAIL_BODY",
    "FailureSpec",
    "OutcomeStatements",
    "failures_json",
]

#: The condition every completion adds (``jobs`` is the job row, ``%(pool)s`` our pool id):
#: a pool never deletes a job that another pool now holds, as happens once it has been
#: declared lost and its jobs rescued (fencing). A job nobody holds is still completed:
#: it ran to success, and running it again would be the double execution.
COMPLETION_FENCE = " and (jobs.locked_by = %(pool)s::text or jobs.locked_by is null)"


@dataclass(frozen=True, slots=True)
class FailureSpec:
    """One failed job for :meth:`OutcomeStatements.fail_jobs`."""

    job: Job
    message: str
    #: For a batch job's partial failure: the payload entries that failed.
    replacement_payload: Any = None
    has_replacement: bool = False
    #: For the job history: when the task started (epoch seconds) and how the attempt
    #: ended ("failure", or "abandoned" for a task past its time limit).
    started_at: float | None = None
    outcome: str = "failure"
    #: No retries (the task raised PermanentFailure): the attempts are used up.
    permanent: bool = False


#: The failure of the jobs in ``%(failures)s`` (a JSON array, see :func:`failures_json`).
FAIL_BODY = (
    "update {schema}._private_jobs as jobs set"
    " last_error = failure.el->>'message',"
    " run_at = greatest(now(), jobs.run_at)"
    " + exp(least(jobs.attempts, 10)) * interval '1 second',"
    " locked_by = null, locked_at = null,"
    " payload = coalesce(failure.el->'payload', jobs.payload),"
    # A permanent failure uses up the attempts, as permanently_fail_jobs does (spec).
    " attempts = case when failure.el->'permanent' is null then jobs.attempts"
    " else greatest(jobs.attempts, jobs.max_attempts) end"
    " from json_array_elements(%(failures)s::json) as failure(el)"
    " where jobs.id = (failure.el->>'jobId')::bigint and jobs.locked_by = %(pool)s::text"
)


#: The failure of the jobs ``%(ids)s`` with one message, ``%(message)s`` (at shutdown).
FAIL_ALL_BODY = (
    "update {schema}._private_jobs as jobs set"
    " last_error = %(message)s::text,"
    " run_at = greatest(now(), jobs.run_at)"
    " + exp(least(jobs.attempts, 10)) * interval '1 second',"
    " locked_by = null, locked_at = null"
    " where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(pool)s::text"
)


class OutcomeStatements(StatementSet):
    """Completing, failing and returning claimed jobs; unlocking those of dead workers."""

    fail_no_queue_sql = Statement(FAIL_BODY)
    fail_with_queue_sql = Statement(
        "with failed as (" + FAIL_BODY + " returning jobs.job_queue_id)"
        " update {schema}._private_job_queues as queues"
        " set locked_by = null, locked_at = null from failed"
        " where queues.id = failed.job_queue_id and queues.locked_by = %(pool)s::text"
    )
    # Unlike Node's (spec 3.6), which matches the id whatever locked_by says, completion
    # is fenced: see COMPLETION_FENCE. The queue is only unlocked if this pool holds it.
    complete_one_sql = Statement(
        "delete from {schema}._private_jobs as jobs where jobs.id = %(id)s::bigint"
        + COMPLETION_FENCE
    )
    complete_many_sql = Statement(
        "delete from {schema}._private_jobs as jobs"
        " using unnest(%(ids)s::bigint[]) as done(id) where jobs.id = done.id" + COMPLETION_FENCE
    )
    complete_with_queue_sql = Statement(
        "with done as (delete from {schema}._private_jobs as jobs"
        " using unnest(%(ids)s::bigint[]) as wanted(id) where jobs.id = wanted.id"
        + COMPLETION_FENCE
        + " returning jobs.job_queue_id)"
        " update {schema}._private_job_queues as queues"
        " set locked_by = null, locked_at = null from done"
        " where queues.id = done.job_queue_id and queues.locked_by = %(pool)s::text"
    )
    fail_all_sql = Statement(
        "with failed as (" + FAIL_ALL_BODY + " returning *),"
        " unlocked as (update {schema}._private_job_queues as queues"
        " set locked_by = null, locked_at = null from failed"
        " where queues.id = failed.job_queue_id and queues.locked_by = %(pool)s::text)"
        " select * from failed"
    )
    locked_by_pool_sql = Statement(
        "select id from {schema}._private_jobs where locked_by = %s::text"
    )
    return_jobs_sql = Statement(
        "with returned as (update {schema}._private_jobs as jobs set"
        " attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null"
        " where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(pool)s::text"
        " returning jobs.job_queue_id)"
        " update {schema}._private_job_queues as queues"
        " set locked_by = null, locked_at = null from returned"
        " where queues.id = returned.job_queue_id and queues.locked_by = %(pool)s::text"
    )
    reset_locked_sql = Statement(
        "with stale_jobs as (update {schema}._private_jobs as jobs"
        " set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, {now})"
        " where jobs.locked_at < {now} - interval '4 hours'),"
        " stale_queues as (update {schema}._private_job_queues as queues"
        " set locked_at = null, locked_by = null"
        " where queues.locked_at < {now} - interval '4 hours')"
        " select 1",
        now=sql.SQL("coalesce(%(now)s::timestamptz, now())"),
    )

    def complete_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, jobs: Sequence[Job]
    ) -> None:
        """Delete finished jobs this pool (or no pool) holds; release their named queues."""
        queued = [job.id for job in jobs if job.job_queue_id is not None]
        unqueued = [job.id for job in jobs if job.job_queue_id is None]
        with map_db_errors("Completing jobs"):
            if queued:
                conn.execute(
                    self.complete_with_queue_sql, {"ids": int_array(queued), "pool": pool_id}
                )
            if len(unqueued) == 1:
                conn.execute(self.complete_one_sql, {"id": unqueued[0], "pool": pool_id})
            elif unqueued:
                conn.execute(self.complete_many_sql, {"ids": int_array(unqueued), "pool": pool_id})

    def fail_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, failures: Sequence[FailureSpec]
    ) -> None:
        """Record failed attempts: last error, exponential backoff, unlock job and queue."""
        queued = [f for f in failures if f.job.job_queue_id is not None]
        unqueued = [f for f in failures if f.job.job_queue_id is None]
        with map_db_errors("Failing jobs"):
            if queued:
                conn.execute(
                    self.fail_with_queue_sql, {"failures": failures_json(queued), "pool": pool_id}
                )
            if unqueued:
                conn.execute(
                    self.fail_no_queue_sql, {"failures": failures_json(unqueued), "pool": pool_id}
                )

    def fail_jobs_with_message(
        self, conn: psycopg.Connection[Any], pool_id: str, job_ids: Sequence[int], message: str
    ) -> list[Row]:
        """Fail every listed job this pool holds with one message (used at shutdown)."""
        with map_db_errors("Failing jobs"), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self.fail_all_sql, {"ids": list(job_ids), "message": message, "pool": pool_id}
            )
            return cur.fetchall()

    def jobs_locked_by(self, conn: psycopg.Connection[Any], pool_id: str) -> list[int]:
        """Ids of the jobs ``pool_id`` holds (a full scan: for shutdown, not the hot path)."""
        with map_db_errors("Finding locked jobs"):
            return [int(row[0]) for row in conn.execute(self.locked_by_pool_sql, (pool_id,))]

    def return_unstarted_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, job_ids: Sequence[int]
    ) -> None:
        """Hand claimed but unstarted jobs back, undoing the attempt their claim counted."""
        with map_db_errors("Returning jobs"):
            conn.execute(self.return_jobs_sql, {"ids": list(job_ids), "pool": pool_id})

    def reset_stale_locks(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> None:
        """Unlock jobs and queues locked more than 4 hours ago (their worker is presumed dead)."""
        with map_db_errors("Resetting stale locks"):
            conn.execute(self.reset_locked_sql, {"now": now})


def failures_json(failures: Sequence[FailureSpec], *, history: bool = False) -> str:
    """The ``%(failures)s`` of :data:`FAIL_BODY`; with ``history``, start times and outcomes."""
    return json.dumps(
        [
            {"jobId": str(f.job.id), "message": f.message}
            | ({"payload": f.replacement_payload} if f.has_replacement else {})
            | ({"startedAt": f.started_at, "outcome": f.outcome} if history else {})
            | ({"permanent": True} if f.permanent else {})
            for f in failures
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
