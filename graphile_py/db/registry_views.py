"""What operators read of the pool registry: the pools, with the jobs and queues each holds.

The registry (``pools`` in the side schema) is written by the pools themselves
(:mod:`graphile_py.db.registry`); these statements only read it. How many jobs and named
queues a pool holds comes from the worker schema's ``locked_by`` columns, grouped once
per read rather than counted per pool.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from graphile_py.db.rows import Row
from graphile_py.db.side_views import SideViewStatements, reading_side_schema
from graphile_py.db.statement_set import Statement

__all__ = ["RegistryViewStatements"]


class RegistryViewStatements(SideViewStatements):
    """The operators' reads of the pool registry, for one worker schema and side schema."""

    # Live pools first (newest first), then the others by when they ended. A pool whose
    # heartbeat is overdue but that nobody has declared lost yet still counts as live
    # here; the caller tells the two apart with heartbeat_timeout.
    list_pools_sql = Statement(
        "select pools.id, pools.hostname, pools.pid, pools.version, pools.concurrency,"
        " pools.task_identifiers, pools.heartbeat_timeout, pools.started_at,"
        " pools.heartbeat_at, pools.stopped_at, pools.lost_at, pools.lost_by,"
        " pools.jobs_rescued, pools.jobs_succeeded, pools.jobs_failed, now() as now,"
        " coalesce(held_jobs.n, 0) as running_jobs, coalesce(held_queues.n, 0) as locked_queues"
        " from {side}.pools as pools"
        " left join (select locked_by, count(*) as n from {schema}._private_jobs"
        " where locked_by is not null group by locked_by) as held_jobs"
        " on held_jobs.locked_by = pools.id"
        " left join (select locked_by, count(*) as n from {schema}._private_job_queues"
        " where locked_by is not null group by locked_by) as held_queues"
        " on held_queues.locked_by = pools.id"
        " where %(all)s::boolean or (pools.stopped_at is null"
        " and (pools.lost_at is null or pools.lost_at > now() - %(lost_within)s::interval))"
        " order by (pools.stopped_at is null and pools.lost_at is null) desc,"
        " coalesce(pools.lost_at, pools.stopped_at, pools.started_at) desc, pools.id"
        " limit %(limit)s::int"
    )
    # For the metrics sampler: cheap (the registry's partial index on live pools).
    count_pools_sql = Statement(
        "select count(*) filter (where pools.heartbeat_at >= now() - pools.heartbeat_timeout),"
        " count(*) filter (where pools.heartbeat_at < now() - pools.heartbeat_timeout)"
        " from {side}.pools as pools"
        " where pools.stopped_at is null and pools.lost_at is null"
    )

    registered_sql = Statement(
        "select pools.id from {side}.pools as pools where pools.id = any(%s::text[])"
    )
    # Which task identifiers the live pools serve, and whether any pool ever registered
    # (a registry nobody uses says nothing about the workers). One row per live
    # (task, pool) pair; a null task row when no pool is live but some registered.
    live_tasks_sql = Statement(
        "select served.task, served.pool_id from (select task, pools.id as pool_id"
        " from {side}.pools as pools, unnest(pools.task_identifiers) as task"
        " where pools.stopped_at is null and pools.lost_at is null"
        " and pools.heartbeat_at >= now() - pools.heartbeat_timeout) as served"
        " union all select null, null where exists (select 1 from {side}.pools)"
        " order by 1 nulls first, 2"
    )
    # Tasks (among those asked about) with a job locked by a worker outside the registry
    # (Node, an older graphile-py) within the last 4 hours: evidently served by it. Older
    # locks are graphile-worker's stale ones, left by a worker that is gone.
    held_outside_sql = Statement(
        "select distinct tasks.identifier from {schema}._private_jobs as jobs"
        " join {schema}._private_tasks as tasks on tasks.id = jobs.task_id"
        " where jobs.locked_by is not null and jobs.locked_at > now() - interval '4 hours'"
        " and tasks.identifier = any(%s::text[])"
        " and not exists (select 1 from {side}.pools as pools where pools.id = jobs.locked_by)"
    )

    def list_pools(
        self,
        conn: psycopg.Connection[Any],
        *,
        include_ended: bool,
        lost_within: timedelta,
        limit: int,
    ) -> list[Row]:
        """Registered pools: live ones and those lost within ``lost_within`` (or all)."""
        params = {"all": include_ended, "lost_within": lost_within, "limit": limit}
        with (
            reading_side_schema("Listing worker pools", self.side_schema),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(self.list_pools_sql, params)
            return cur.fetchall()

    def count_pools(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        """``(alive, overdue)``: unended pools whose heartbeat is on time, and late."""
        with reading_side_schema("Counting worker pools", self.side_schema):
            row = conn.execute(self.count_pools_sql, ()).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def registered(self, conn: psycopg.Connection[Any], pool_ids: list[str]) -> set[str]:
        """Which of these pool ids are in the registry (ended ones included)."""
        with reading_side_schema("Reading the worker registry", self.side_schema):
            rows = conn.execute(self.registered_sql, (pool_ids,)).fetchall()
        return {row[0] for row in rows}

    def live_tasks(self, conn: psycopg.Connection[Any]) -> dict[str, list[str]] | None:
        """Each task identifier live pools serve, with their ids; None if no pool ever
        registered."""
        with reading_side_schema("Reading which tasks live pools serve", self.side_schema):
            rows = conn.execute(self.live_tasks_sql, ()).fetchall()
        if not rows:
            return None
        served: dict[str, list[str]] = {}
        for task, pool_id in rows:
            if task is not None:
                served.setdefault(task, []).append(pool_id)
        return served

    def held_outside(self, conn: psycopg.Connection[Any], tasks: list[str]) -> set[str]:
        """Which of ``tasks`` have a job locked by an unregistered worker (recently)."""
        with reading_side_schema("Reading which jobs unregistered workers hold", self.side_schema):
            rows = conn.execute(self.held_outside_sql, (tasks,)).fetchall()
        return {row[0] for row in rows}
