"""Rows of the side schema's registry and history, written directly to set up a state.

A lost pool, a pool whose heartbeat is late, a job's three attempts: the operators'
views are tested on these; the pools and the history recording have tests of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.types.json import Json

from graphile_py.db.side_schema import side_schema_for
from tests.support import TestDatabase

#: The pool that rescues the lost ones and runs every recorded attempt.
ALIVE = "pool-alive"


def side_identifier(db: TestDatabase) -> sql.Identifier:
    return sql.Identifier(side_schema_for(db.schema))


def register_pool(
    db: TestDatabase,
    pool_id: str,
    *,
    heartbeat_ago: float = 1.0,
    stopped: bool = False,
    lost_ago: float | None = None,
    **extra: Any,
) -> None:
    now = datetime.now(UTC)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.pools (id, hostname, pid, version, concurrency,"
                " task_identifiers, heartbeat_timeout, started_at, heartbeat_at, stopped_at,"
                " lost_at, lost_by, jobs_rescued, jobs_succeeded, jobs_failed) values"
                " (%s, %s, %s, '0.9.0', 4, %s, interval '20 seconds', %s, %s, %s, %s, %s, %s,"
                " %s, %s)"
            ).format(side_identifier(db)),
            (
                pool_id,
                extra.get("hostname", "host-" + pool_id),
                extra.get("pid", 1234),
                ["email", "report"],
                now - timedelta(hours=3),
                now - timedelta(seconds=heartbeat_ago),
                now - timedelta(minutes=5) if stopped else None,
                now - timedelta(seconds=lost_ago) if lost_ago is not None else None,
                ALIVE if lost_ago is not None else None,
                2 if lost_ago is not None else None,
                extra.get("succeeded", 0),
                extra.get("failed", 0),
            ),
        )


def record_attempt(
    db: TestDatabase,
    job_id: int,
    task: str,
    outcome: str,
    *,
    attempt: int = 1,
    error: str | None = None,
    payload: Any = None,
    payload_bytes: int = 2,
    queue: str | None = None,
    finished_ago: float = 60.0,
    max_attempts: int = 3,
) -> None:
    finished = datetime.now(UTC) - timedelta(seconds=finished_ago)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.job_attempts (job_id, task_identifier, queue_name, key, payload,"
                " payload_bytes, attempt, max_attempts, pool_id, started_at, finished_at,"
                " outcome, error) values (%s, %s, %s, null, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(side_identifier(db)),
            (
                job_id,
                task,
                queue,
                Json(payload) if payload is not None else None,
                payload_bytes,
                attempt,
                max_attempts,
                ALIVE,
                finished - timedelta(seconds=1.5),
                finished,
                outcome,
                error,
            ),
        )


def record_sample_history(db: TestDatabase) -> None:
    """Job 7 (email) failed twice then succeeded; job 8 (report, queue ``reports``)
    succeeded two hours ago; job 9 (report) was lost ten seconds ago."""
    record_attempt(db, 7, "email", "failure", attempt=1, error="timeout", finished_ago=300)
    record_attempt(
        db, 7, "email", "failure", attempt=2, error="refused\nsecond line", finished_ago=200
    )
    record_attempt(db, 7, "email", "success", attempt=3, payload={"to": "a"}, finished_ago=100)
    record_attempt(db, 8, "report", "success", queue="reports", payload={"m": 1}, finished_ago=7200)
    record_attempt(db, 9, "report", "lost", queue="reports", finished_ago=10)
