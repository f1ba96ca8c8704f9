"""The one statement the dashboard sends beyond the Inspector's: the sampler's probe.

Every few seconds the dashboard's sampler reads a handful of cheap aggregates, from which
it derives how many jobs were created, completed and failed in each interval. None of
them needs an index or a history table:

* ``last_id``: the jobs id sequence's last value (0 before its first use). Every
  insert takes an id, so its growth counts created jobs (an ``add_job`` that replaces a
  keyed job takes one too).
* ``deleted``: PostgreSQL's cumulative count of rows deleted from ``_private_jobs``
  (``pg_stat_get_tuples_deleted``). Jobs that succeed are deleted, so its growth counts
  completions (and jobs removed by hand or by clean-up). It lags by up to a second,
  goes back to zero when the statistics are reset, and stays at zero with
  ``track_counts`` off.
* ``failures``: ``(id, attempts)`` of every unlocked job that has failed and whose next
  run is after the previous sample. A failure always pushes ``run_at`` into the future
  and leaves a new ``attempts`` value, so the pairs that were not there last time are
  the failures of the interval.
* the number of jobs in each state, in the same scan, by the Inspector's rule
  (:data:`graphile_py.db.inspection.STATE_SQL`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from graphile_py.db.inspection import STATE_SQL
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors

__all__ = ["MAX_FAILURE_PAIRS", "DashboardStatements", "RawSample", "dashboard_statements_for"]

#: At most this many failed jobs are read per sample, latest run_at first (a failure
#: pushes run_at into the future, so the newest failures come first).
MAX_FAILURE_PAIRS = 10_000


@dataclass(frozen=True, slots=True)
class RawSample:
    """What one probe read; the sampler turns consecutive ones into rates."""

    taken_at: datetime
    last_id: int | None
    deleted: int | None
    failures: frozenset[tuple[int, int]]
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int


def dashboard_statements_for(schema: str) -> DashboardStatements:
    """The dashboard's statements for one worker schema (built once per schema)."""
    return DashboardStatements.for_schema(schema)


class DashboardStatements(StatementSet):
    """The sampler's probe, composed for one worker schema."""

    # The jobs table's name travels as a bind parameter (quoted by quote_ident) for the
    # two functions that want a regclass; the id sequence's name is looked up rather
    # than spelled out, because migration 11 left it with a generated name.
    sample_sql = Statement(
        "with jobs_table as (select (quote_ident(%(schema)s::text) || '._private_jobs')"
        "::regclass as oid)"
        " select now() as taken_at,"
        " coalesce(pg_sequence_last_value(pg_get_serial_sequence("
        "(select oid from jobs_table)::text, 'id')::regclass), 0) as last_id,"
        " pg_stat_get_tuples_deleted((select oid from jobs_table)) as deleted,"
        " (select coalesce(json_agg(json_build_array(recent.id, recent.attempts)), '[]')"
        " from (select id, attempts from {schema}._private_jobs"
        " where locked_at is null and last_error is not null and attempts > 0"
        " and run_at > coalesce(%(since)s::timestamptz, '-infinity')"
        " order by run_at desc limit %(max_pairs)s::int) as recent) as failures,"
        " counts.*"
        " from (select"
        " count(*) filter (where classified.state = 'ready') as ready,"
        " count(*) filter (where classified.state = 'scheduled') as scheduled,"
        " count(*) filter (where classified.state = 'running') as running,"
        " count(*) filter (where classified.state = 'retrying') as retrying,"
        " count(*) filter (where classified.state = 'failed') as failed"
        " from (select " + STATE_SQL + " as state from {schema}._private_jobs as jobs)"
        " as classified) as counts"
    )

    def sample(self, conn: psycopg.Connection[Any], since: datetime | None) -> RawSample:
        """Read the aggregates now; ``since`` is the previous sample's ``taken_at``."""
        with map_db_errors("Sampling the job counts"):
            row = conn.execute(
                self.sample_sql,
                {"schema": self.schema, "since": since, "max_pairs": MAX_FAILURE_PAIRS},
            ).fetchone()
        assert row is not None
        taken_at, last_id, deleted, failures, ready, scheduled, running, retrying, failed = row
        pairs = json.loads(failures) if isinstance(failures, str) else failures
        return RawSample(
            taken_at=taken_at,
            last_id=None if last_id is None else int(last_id),
            deleted=None if deleted is None else int(deleted),
            failures=frozenset((int(job_id), int(attempts)) for job_id, attempts in pairs),
            ready=int(ready),
            scheduled=int(scheduled),
            running=int(running),
            retrying=int(retrying),
            failed=int(failed),
        )
