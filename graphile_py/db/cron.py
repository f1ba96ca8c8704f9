"""The statements of cron: known crontabs, registration, and the atomic claim-and-enqueue.

Cron runners, Node's and ours, de-duplicate through ``_private_known_crontabs`` alone
(spec 6.6): writing one minute's jobs is ONE statement that moves each identifier's
``last_execution`` forward only if it is still before that minute, and calls ``add_job``
for the identifiers it moved, in order. A runner that finds the minute already claimed
adds nothing. The statement takes the same JSON document graphile-worker sends, so a
minute written by either runtime looks the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors

__all__ = ["CronStatements", "KnownCrontab", "cron_statements_for"]

#: ``(identifier, known_since, last_execution)`` of one ``_private_known_crontabs`` row.
KnownCrontab = tuple[str, datetime, datetime | None]


def cron_statements_for(schema: str) -> CronStatements:
    """The cron statements for one worker schema (built once per schema per process)."""
    return CronStatements.for_schema(schema)


class CronStatements(StatementSet):
    """The cron statements of one worker schema, and the functions that run them."""

    known_crontabs_sql = Statement(
        "select identifier, known_since, last_execution"
        " from {schema}._private_known_crontabs where identifier = any(%s::text[])"
    )
    register_sql = Statement(
        "insert into {schema}._private_known_crontabs as known (identifier, known_since)"
        " select wanted.identifier, %s::timestamptz"
        " from unnest(%s::text[]) as wanted(identifier)"
        " on conflict do nothing"
    )
    # One statement, so it is atomic: claim the minute for every identifier whose
    # last_execution is still before it (strictly), then add a job for each identifier
    # actually claimed, in the order given. Another runner that claimed the minute
    # first makes the upsert's WHERE false here, so nothing is returned or added.
    schedule_sql = Statement(
        "with specs as ("
        "select entry.position,"
        " (entry.spec->>'identifier')::text as identifier,"
        " (entry.spec->'job'->>'task')::text as task,"
        " (entry.spec->'job'->'payload')::json as payload,"
        " (entry.spec->'job'->>'queueName')::text as queue_name,"
        " (entry.spec->'job'->>'runAt')::timestamptz as run_at,"
        " (entry.spec->'job'->>'maxAttempts')::smallint as max_attempts,"
        " (entry.spec->'job'->>'priority')::smallint as priority,"
        " (entry.spec->'job'->>'jobKey')::text as job_key,"
        " (entry.spec->'job'->>'jobKeyMode')::text as job_key_mode"
        " from json_array_elements(%(specs)s::json) with ordinality"
        " as entry(spec, position)),"
        " claimed as ("
        "insert into {schema}._private_known_crontabs as known"
        " (identifier, known_since, last_execution)"
        " select specs.identifier, %(ts)s::timestamptz, %(ts)s::timestamptz from specs"
        " on conflict (identifier) do update set last_execution = excluded.last_execution"
        " where known.last_execution is null"
        " or known.last_execution < excluded.last_execution"
        " returning known.identifier)"
        " select (added).id from (select {schema}.add_job("
        "specs.task, specs.payload, specs.queue_name,"
        " coalesce(specs.run_at, %(now)s::timestamptz, now()), specs.max_attempts,"
        " specs.job_key, specs.priority, null, specs.job_key_mode) as added"
        " from specs join claimed on claimed.identifier = specs.identifier"
        " order by specs.position) as jobs"
    )

    def known_crontabs(
        self, conn: psycopg.Connection[Any], identifiers: Sequence[str]
    ) -> list[KnownCrontab]:
        """The ``_private_known_crontabs`` rows of the given identifiers."""
        with map_db_errors("Reading known crontabs"):
            rows = conn.execute(self.known_crontabs_sql, (list(identifiers),)).fetchall()
        return [(str(row[0]), row[1], row[2]) for row in rows]

    def register(
        self, conn: psycopg.Connection[Any], identifiers: Sequence[str], known_since: datetime
    ) -> None:
        """Record new identifiers as known since ``known_since``, never run (no backfill)."""
        with map_db_errors("Registering cron identifiers"):
            _run(conn, self.register_sql, (known_since, list(identifiers)))

    def schedule(
        self,
        conn: psycopg.Connection[Any],
        specs_json: str,
        ts: datetime,
        now: datetime | None = None,
    ) -> list[int | None]:
        """Claim minute ``ts`` for the specs and add their jobs; return the added jobs' ids.

        ``specs_json`` is graphile-worker's JSON array of
        ``{"identifier", "job": {"task", "payload", "queueName"?, "runAt", "maxAttempts"?,
        "jobKey"?, "jobKeyMode"?, "priority"?}}``. Identifiers another runner already ran at
        ``ts`` (or later) are skipped. ``now`` is only the fallback ``run_at``.
        """
        params = {"specs": specs_json, "ts": ts, "now": now}
        with map_db_errors("Scheduling cron jobs"):
            rows = _run(conn, self.schedule_sql, params)
        return [row[0] for row in rows]


def _run(conn: psycopg.Connection[Any], query: bytes, params: Any) -> list[tuple[Any, ...]]:
    # A pooled connection is normally in autocommit mode, where one statement is its own
    # transaction. Otherwise commit here: a pool rolls back what it gets back open.
    if conn.autocommit:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
    with conn.transaction():
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
