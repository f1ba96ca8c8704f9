"""What a live pool writes to the pool registry: registration, heartbeats, rescue.

The registry is the side schema's ``pools`` table. A Python pool inserts its row before
its first claim, refreshes ``heartbeat_at`` every ``heartbeat_interval`` and marks the
row stopped after a clean shutdown. After a heartbeat, a pool that saw a registered pool
silent for longer than that pool's own ``heartbeat_timeout`` releases its jobs and named
queues in one statement (:attr:`RegistryStatements.rescue_sql`): the lost pool's rows are
taken ``for update skip locked``, so two rescuers never release the same pool's jobs, and
a pool's own heartbeat waits for a rescuer that holds its row, then finds itself lost.
Pools that never registered (Node, older graphile-py) are never touched here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from graphile_py.db.history import record_attempts
from graphile_py.db.side_views import SideViewStatements
from graphile_py.db.statement_set import Statement
from graphile_py.db.translate import map_db_errors

__all__ = ["LostPool", "PoolRegistration", "RegistryStatements"]


@dataclass(frozen=True, slots=True)
class PoolRegistration:
    """What a pool says about itself when it registers."""

    pool_id: str
    hostname: str
    pid: int
    version: str
    concurrency: int
    task_identifiers: Sequence[str]
    heartbeat_timeout: float


@dataclass(frozen=True, slots=True)
class LostPool:
    """A pool declared lost by a rescue, and what was released of it."""

    pool_id: str
    hostname: str
    pid: int
    heartbeat_at: datetime
    lost_at: datetime
    job_ids: list[int]
    queues: int


def _rescue(*, recorded: str) -> str:
    """The rescue statement; ``recorded`` is a common table expression to add (or "")."""
    return (
        "with lost as materialized (select pools.id, now() - pools.heartbeat_at as silence"
        " from {side}.pools as pools"
        " where pools.stopped_at is null and pools.lost_at is null"
        " and pools.id <> %(id)s::text"
        " and pools.heartbeat_at < now() - pools.heartbeat_timeout"
        " for update skip locked),"
        " released_jobs as (update {schema}._private_jobs as jobs"
        " set locked_by = null, locked_at = null,"
        " last_error = 'Worker pool ' || lost.id || ' was declared lost at '"
        " || to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " || ' by pool ' || %(id)s::text || ' (no heartbeat for '"
        " || round(extract(epoch from lost.silence)::numeric, 1) || 's); the job will run"
        " again unless it has no attempts left'"
        " from lost where jobs.locked_by = lost.id"
        " returning lost.id as pool_id, jobs.id as job_id, jobs.last_error),"
        + recorded
        + " released_queues as (update {schema}._private_job_queues as queues"
        " set locked_by = null, locked_at = null"
        " from lost where queues.locked_by = lost.id returning lost.id as pool_id),"
        " marked as (update {side}.pools as pools"
        " set lost_at = now(), lost_by = %(id)s::text,"
        " jobs_rescued = (select count(*) from released_jobs"
        " where released_jobs.pool_id = pools.id)"
        " from lost where pools.id = lost.id"
        " returning pools.id, pools.hostname, pools.pid, pools.heartbeat_at, pools.lost_at)"
        " select marked.id, marked.hostname, marked.pid, marked.heartbeat_at, marked.lost_at,"
        " coalesce((select array_agg(released_jobs.job_id order by released_jobs.job_id)"
        " from released_jobs where released_jobs.pool_id = marked.id), '{{}}'::bigint[]),"
        " (select count(*) from released_queues where released_queues.pool_id = marked.id)"
        " from marked order by marked.id"
    )


class RegistryStatements(SideViewStatements):
    """The registry statements of one pool, for a worker schema and its side schema."""

    register_sql = Statement(
        "insert into {side}.pools as pools (id, hostname, pid, version, concurrency,"
        " task_identifiers, heartbeat_timeout) values (%(id)s::text, %(hostname)s::text,"
        " %(pid)s::int, %(version)s::text, %(concurrency)s::int, %(tasks)s::text[],"
        " make_interval(secs => %(timeout)s::float8))"
    )
    # No row back means another pool declared this one lost: the caller fences itself.
    # The row tells whether some other registered pool is overdue, so the rescue (which
    # scans the jobs table) only runs when there is something to rescue.
    heartbeat_sql = Statement(
        "update {side}.pools as pools set heartbeat_at = now(),"
        " jobs_succeeded = %(succeeded)s::bigint, jobs_failed = %(failed)s::bigint"
        " where pools.id = %(id)s::text and pools.lost_at is null"
        " returning exists (select 1 from {side}.pools as others"
        " where others.stopped_at is null and others.lost_at is null"
        " and others.id <> %(id)s::text"
        " and others.heartbeat_at < now() - others.heartbeat_timeout)"
    )
    deregister_sql = Statement(
        "update {side}.pools as pools set stopped_at = now(), heartbeat_at = now(),"
        " jobs_succeeded = %(succeeded)s::bigint, jobs_failed = %(failed)s::bigint"
        " where pools.id = %(id)s::text and pools.lost_at is null and pools.stopped_at is null"
    )
    rescue_sql = Statement(_rescue(recorded=""))
    # With history on, each released job's attempt is recorded as lost, by its pool.
    rescue_recording_sql = Statement(
        _rescue(
            recorded=" recorded as ("
            + record_attempts(
                "released_jobs join {schema}._private_jobs as ran on ran.id = released_jobs.job_id",
                started="null",
                outcome="'lost'",
                error="released_jobs.last_error",
                pool="released_jobs.pool_id",
            )
            + "),"
        )
    )
    wake_sql = Statement("select pg_notify('jobs:insert', %s::text)")

    def register(self, conn: psycopg.Connection[Any], pool: PoolRegistration) -> None:
        """Insert the pool's row (heartbeat now)."""
        params = {
            "id": pool.pool_id,
            "hostname": pool.hostname,
            "pid": pool.pid,
            "version": pool.version,
            "concurrency": pool.concurrency,
            "tasks": list(pool.task_identifiers),
            "timeout": pool.heartbeat_timeout,
        }
        with map_db_errors("Registering the worker pool"):
            conn.execute(self.register_sql, params)

    def heartbeat(
        self, conn: psycopg.Connection[Any], pool_id: str, *, succeeded: int, failed: int
    ) -> bool | None:
        """Refresh the pool's heartbeat: None if it was declared lost, else whether
        another registered pool is overdue (a rescue is worth trying)."""
        params = {"id": pool_id, "succeeded": succeeded, "failed": failed}
        with map_db_errors("Writing the pool's heartbeat"):
            row = conn.execute(self.heartbeat_sql, params).fetchone()
        return None if row is None else bool(row[0])

    def deregister(
        self, conn: psycopg.Connection[Any], pool_id: str, *, succeeded: int, failed: int
    ) -> bool:
        """Mark the pool stopped after a clean shutdown; False if it was declared lost."""
        params = {"id": pool_id, "succeeded": succeeded, "failed": failed}
        with map_db_errors("Deregistering the worker pool"):
            return conn.execute(self.deregister_sql, params).rowcount == 1

    def rescue(
        self, conn: psycopg.Connection[Any], pool_id: str, *, history_payload_limit: int | None
    ) -> list[LostPool]:
        """Declare overdue pools lost and release their jobs and queues; wake idle pools.

        One statement: the pools are marked and their locks released together, or not
        at all. Jobs keep the attempt the lost pool used and get a ``last_error`` naming
        the lost pool. Then one ``jobs:insert`` notification announces the released jobs.
        With ``history_payload_limit`` (history on), each released job's attempt goes into
        the job history as ``lost``, in the same statement.
        """
        with map_db_errors("Rescuing the jobs of lost pools"):
            if history_payload_limit is None:
                cur = conn.execute(self.rescue_sql, {"id": pool_id})
            else:
                params = {"id": pool_id, "payload_limit": history_payload_limit}
                cur = conn.execute(self.rescue_recording_sql, params)
            rows = cur.fetchall()
            lost = [
                LostPool(
                    pool_id=str(row[0]),
                    hostname=str(row[1]),
                    pid=int(row[2]),
                    heartbeat_at=row[3],
                    lost_at=row[4],
                    job_ids=[int(job_id) for job_id in row[5]],
                    queues=int(row[6]),
                )
                for row in rows
            ]
            released = sum(len(pool.job_ids) for pool in lost)
            if released:
                conn.execute(self.wake_sql, (json.dumps({"count": released}),))
        return lost
