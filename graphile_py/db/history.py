"""The job history: each attempt a Python pool runs, recorded in the side schema.

With ``history`` on, a pool records an attempt in the same statement that completes or
fails the job: the statements here are the outcome statements of
:mod:`~graphile_py.db.outcomes` with one more common table expression that inserts the
attempt into ``<side schema>.job_attempts``. So recording costs no round trip, and an
attempt is recorded exactly when its outcome is (a write that is retried, or that a
fenced pool is refused, records nothing twice and nothing for a job it no longer holds).

What the row says comes from the job's row as the statement finds it (task, queue, key,
payload, attempt, max attempts), so Python serialises nothing; Python passes only what the
database cannot know: when the task started (epoch seconds), the outcome and the error.
With history off none of this is sent: the pool runs the outcome statements unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py.db.outcomes import (
    COMPLETION_FENCE,
    FAIL_ALL_BODY,
    FAIL_BODY,
    FailureSpec,
    failures_json,
)
from graphile_py.db.rows import Row, int_array
from graphile_py.db.side_schema import side_schema_ready
from graphile_py.db.side_views import SideViewStatements
from graphile_py.db.statement_set import Statement, compose
from graphile_py.db.translate import map_db_errors
from graphile_py.errors import ConfigurationError
from graphile_py.jobs import Job

__all__ = [
    "ATTEMPT_COLUMNS",
    "ATTEMPT_OUTCOMES",
    "PRUNE_BATCH_SIZE",
    "History",
    "HistoryStatements",
    "record_attempts",
]

#: What ``job_attempts.outcome`` may say (the table's check constraint).
ATTEMPT_OUTCOMES = ("success", "failure", "abandoned", "lost")

#: Rows deleted per retention statement: each is its own short transaction.
PRUNE_BATCH_SIZE = 10_000

#: What :func:`record_attempts` reads of a job row (``jobs``), e.g. in a ``returning``.
ATTEMPT_COLUMNS = (
    "jobs.id, jobs.job_queue_id, jobs.task_id, jobs.key, jobs.payload, jobs.attempts,"
    " jobs.max_attempts, jobs.locked_at"
)


def record_attempts(
    source: str,
    *,
    started: str,
    outcome: str,
    error: str,
    unqueued_task: str | None = None,
    pool: str = "%(pool)s::text",
) -> str:
    """The ``insert`` of one ``job_attempts`` row per row of ``source``.

    ``source`` is a from-list whose alias ``ran`` has the job's columns as they were when
    the task ran (a ``delete ... returning`` CTE, or ``_private_jobs`` read in the
    statement's snapshot, which an ``update`` in the same statement does not change);
    ``started`` is an expression in epoch seconds (null: when the job was claimed).
    Uses the parameter ``%(payload_limit)s``, and ``%(pool)s`` unless ``pool`` (the
    expression for the pool that ran the attempt) says otherwise.

    ``unqueued_task``, an expression for the task identifier of jobs known to have no
    named queue, spares the statement its two joins: on the one-job-per-statement hot path
    the planner's work on them cost more than the insert (see bench/results/history-drain.md).
    """
    if unqueued_task is None:
        names = "tasks.identifier, queues.queue_name"
        joins = (
            " join {schema}._private_tasks as tasks on tasks.id = ran.task_id"
            " left join {schema}._private_job_queues as queues on queues.id = ran.job_queue_id"
        )
    else:
        names, joins = unqueued_task + ", null", ""
    size = "octet_length(ran.payload::text)"
    return (
        "insert into {side}.job_attempts (job_id, task_identifier, queue_name, key, payload,"
        " payload_bytes, attempt, max_attempts, pool_id, started_at, outcome, error)"
        " select ran.id, " + names + ", ran.key,"
        " case when " + size + " <= %(payload_limit)s::int then ran.payload end, " + size + ","
        " ran.attempts, ran.max_attempts, " + pool + ","
        " coalesce(to_timestamp(" + started + "), ran.locked_at, now()),"
        " " + outcome + ", " + error + " from " + source + joins
    )


_UNLOCK_QUEUES = (
    "update {schema}._private_job_queues as queues set locked_by = null, locked_at = null"
    " from {source} where queues.id = {source}.job_queue_id and queues.locked_by = %(pool)s::text"
)

# The completion (db/outcomes.py's, for queued and unqueued jobs alike) and the attempts.
_COMPLETE = (
    "with done as (delete from {schema}._private_jobs as jobs"
    " using unnest(%(ids)s::bigint[], %(started)s::float8[]) as wanted(id, started)"
    " where jobs.id = wanted.id" + COMPLETION_FENCE + " returning " + ATTEMPT_COLUMNS + ","
    " wanted.started),"
    " unlocked as ("
    + _UNLOCK_QUEUES.format(schema="{schema}", source="done")
    + ") "
    + record_attempts("done as ran", started="ran.started", outcome="'success'", error="null")
)

# The failure (db/outcomes.py's) and the attempts; a failure may say it was abandoned.
_FAIL = (
    "with failed as (" + FAIL_BODY + " returning jobs.id, jobs.job_queue_id, failure.el),"
    " unlocked as ("
    + _UNLOCK_QUEUES.format(schema="{schema}", source="failed")
    + ") "
    + record_attempts(
        "failed join {schema}._private_jobs as ran on ran.id = failed.id",
        started="(failed.el->>'startedAt')::float8",
        outcome="coalesce(failed.el->>'outcome', 'failure')",
        error="failed.el->>'message'",
    )
)

# Shutdown's "fail everything still running with one message", and the attempts.
_FAIL_ALL = (
    "with failed as (" + FAIL_ALL_BODY + " returning *),"
    " unlocked as (" + _UNLOCK_QUEUES.format(schema="{schema}", source="failed") + "),"
    " recorded as ("
    + record_attempts(
        "failed join {schema}._private_jobs as ran on ran.id = failed.id"
        " left join unnest(%(known)s::bigint[], %(started)s::float8[]) as given(id, started)"
        " on given.id = failed.id",
        started="given.started",
        outcome="'abandoned'",
        error="%(message)s::text",
    )
    + ") select * from failed"
)

# Oldest first, in batches; SKIP LOCKED so that pools pruning at once share the work.
_PRUNE = (
    "with old as (select id from {side}.job_attempts"
    " where finished_at < now() - %(retention)s::float8 * interval '1 second'"
    " order by finished_at limit %(batch)s::int for update skip locked)"
    " delete from {side}.job_attempts as attempts using old where attempts.id = old.id"
)


class HistoryStatements(SideViewStatements):
    """The history statements for one worker schema and its side schema (built once)."""

    complete_sql = Statement(_COMPLETE)
    fail_sql = Statement(_FAIL)
    fail_all_sql = Statement(_FAIL_ALL)
    prune_sql = Statement(_PRUNE)

    def compose(self, template: str, **parts: sql.Composable) -> bytes:
        """``template`` with ``{schema}`` and ``{side}`` (for variants built on demand)."""
        side = sql.SQL(sql.Identifier(self.side_schema).as_string(None).replace("%", "%%"))
        return compose(template, self.schema, side=side, **parts)


@dataclass(frozen=True, slots=True)
class History:
    """Recording attempts for one pool: where (the statements) and the payload cap."""

    statements: HistoryStatements
    #: Payloads of more bytes than this are recorded as null (their size still is).
    payload_limit: int

    @classmethod
    def for_schemas(cls, schema: str, side: str, *, payload_limit: int) -> History:
        """Record into ``side``'s ``job_attempts`` the attempts at ``schema``'s jobs."""
        return cls(HistoryStatements.for_schema(schema, side), payload_limit)

    @property
    def side_schema(self) -> str:
        """The schema whose ``job_attempts`` this records into."""
        return self.statements.side_schema

    def check_installed(self, conn: psycopg.Connection[Any]) -> None:
        """Raise ConfigurationError unless the side schema is installed and up to date."""
        if not side_schema_ready(conn, self.side_schema):
            raise ConfigurationError(
                f"history is on, but the side schema {self.side_schema!r} that keeps it is not"
                " installed (or is older than this graphile-py): run `graphile-py migrate`"
                " (or start the worker with migrations on), or turn history off"
            )

    def complete_jobs(
        self,
        conn: psycopg.Connection[Any],
        pool_id: str,
        finished: Sequence[tuple[Job, float | None]],
    ) -> None:
        """Complete jobs (queued or not) and record each ``(job, started_at)`` as a success."""
        ids = int_array([job.id for job, _ in finished])
        with map_db_errors("Completing jobs"):
            conn.execute(
                self.statements.complete_sql,
                {
                    "ids": ids,
                    "started": _float_array([started for _, started in finished]),
                    "pool": pool_id,
                    "payload_limit": self.payload_limit,
                },
            )

    def fail_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, failures: Sequence[FailureSpec]
    ) -> None:
        """Fail jobs as :meth:`OutcomeStatements.fail_jobs` does, and record the attempts."""
        with map_db_errors("Failing jobs"):
            conn.execute(
                self.statements.fail_sql,
                {
                    "failures": failures_json(failures, history=True),
                    "pool": pool_id,
                    "payload_limit": self.payload_limit,
                },
            )

    def fail_jobs_with_message(
        self,
        conn: psycopg.Connection[Any],
        pool_id: str,
        job_ids: Sequence[int],
        message: str,
        started: Mapping[int, float],
    ) -> list[Row]:
        """Fail these jobs with one message, recording them as abandoned (at shutdown).

        ``started`` gives the start of the tasks that were running; the others (claimed,
        or whose outcome could not be written) are recorded as started when claimed.
        """
        params = {
            "ids": list(job_ids),
            "message": message,
            "pool": pool_id,
            "known": int_array(list(started)),
            "started": _float_array(list(started.values())),
            "payload_limit": self.payload_limit,
        }
        with map_db_errors("Failing jobs"), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.statements.fail_all_sql, params)
            return cur.fetchall()

    def prune(
        self,
        conn: psycopg.Connection[Any],
        retention: float,
        *,
        batch_size: int = PRUNE_BATCH_SIZE,
    ) -> int:
        """Delete attempts that finished more than ``retention`` seconds ago; return how many.

        One statement per ``batch_size`` rows, each its own transaction on an autocommit
        connection, so no statement holds locks or a snapshot for long (see the history
        section of docs/operations.md).
        """
        total = 0
        with map_db_errors("Pruning the job history"):
            while True:
                cur = conn.execute(
                    self.statements.prune_sql, {"retention": retention, "batch": batch_size}
                )
                total += max(cur.rowcount, 0)
                if cur.rowcount < batch_size:
                    return total


def _float_array(values: Sequence[float | None]) -> str:
    """A ``float8[]`` literal (see :func:`~graphile_py.db.rows.int_array` for why a string)."""
    return "{" + ",".join("NULL" if v is None else repr(float(v)) for v in values) + "}"
