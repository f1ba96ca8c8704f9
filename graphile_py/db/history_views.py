"""What operators read of the job history: attempts by filter, a job's timeline, a replay's source.

``job_attempts`` in the side schema gets a row per attempt a Python pool ran, written
with the attempt's completion or failure (:mod:`graphile_py.db.history`) when history is
on; these statements only read it. Lists leave the payload out, as the job lists do;
``payload_stored`` says whether it was kept (it is not when over the size cap).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from graphile_py.db.rows import Row
from graphile_py.db.side_views import SideViewStatements, reading_side_schema
from graphile_py.db.statement_set import Statement

__all__ = ["HistoryViewStatements"]

_ATTEMPT_COLUMNS = (
    "attempts.id, attempts.job_id, attempts.task_identifier, attempts.queue_name,"
    " attempts.key, attempts.payload is not null as payload_stored, attempts.payload_bytes,"
    " attempts.attempt, attempts.max_attempts, attempts.pool_id, attempts.started_at,"
    " attempts.finished_at, attempts.outcome, attempts.error"
)


class HistoryViewStatements(SideViewStatements):
    """The operators' reads of the job history, for one worker schema and side schema."""

    # Newest first, keyset-paginated on id. A filter left null matches every attempt.
    list_attempts_sql = Statement(
        "select " + _ATTEMPT_COLUMNS + " from {side}.job_attempts as attempts"
        " where (%(task)s::text is null or attempts.task_identifier = %(task)s::text)"
        " and (%(queue)s::text is null or attempts.queue_name = %(queue)s::text)"
        " and (%(outcome)s::text is null or attempts.outcome = %(outcome)s::text)"
        " and (%(since)s::timestamptz is null or attempts.finished_at >= %(since)s::timestamptz)"
        " and (%(job_id)s::bigint is null or attempts.job_id = %(job_id)s::bigint)"
        " and (%(before)s::bigint is null or attempts.id < %(before)s::bigint)"
        " order by attempts.id desc limit %(limit)s::int"
    )
    any_attempt_sql = Statement("select exists (select from {side}.job_attempts)")
    timeline_sql = Statement(
        "select " + _ATTEMPT_COLUMNS + " from {side}.job_attempts as attempts"
        " where attempts.job_id = %s::bigint order by attempts.id"
    )
    # What a replay of a job that is gone starts from. The payload is told apart from a
    # stored JSON null by payload_stored.
    last_attempt_sql = Statement(
        "select " + _ATTEMPT_COLUMNS + ", attempts.payload"
        " from {side}.job_attempts as attempts"
        " where attempts.job_id = %s::bigint order by attempts.id desc limit 1"
    )

    def list_attempts(
        self,
        conn: psycopg.Connection[Any],
        *,
        task: str | None,
        queue: str | None,
        outcome: str | None,
        since: datetime | None,
        job_id: int | None,
        before_id: int | None,
        limit: int,
    ) -> list[Row]:
        """Attempt rows matching every filter given, newest first."""
        params = {
            "task": task,
            "queue": queue,
            "outcome": outcome,
            "since": since,
            "job_id": job_id,
            "before": before_id,
            "limit": limit,
        }
        return self._rows(conn, "Reading the job history", self.list_attempts_sql, params)

    def any_attempt(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the history holds any attempt at all."""
        with reading_side_schema("Reading the job history", self.side_schema):
            row = conn.execute(self.any_attempt_sql, ()).fetchone()
        return bool(row and row[0])

    def timeline(self, conn: psycopg.Connection[Any], job_id: int) -> list[Row]:
        """Every recorded attempt of one job, oldest first."""
        return self._rows(conn, "Reading a job's attempts", self.timeline_sql, (job_id,))

    def last_attempt(self, conn: psycopg.Connection[Any], job_id: int) -> Row | None:
        """The job's latest recorded attempt, with its payload; None if it has none."""
        rows = self._rows(conn, "Reading a job's attempts", self.last_attempt_sql, (job_id,))
        return rows[0] if rows else None

    def _rows(
        self, conn: psycopg.Connection[Any], action: str, query: bytes, params: Any
    ) -> list[Row]:
        with (
            reading_side_schema(action, self.side_schema),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(query, params)
            return cur.fetchall()
