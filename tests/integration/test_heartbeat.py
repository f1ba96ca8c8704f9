"""The pool registry in one process: registration, heartbeats, rescue, fencing, life without it.

Pools here run in the test process with short heartbeats; a "lost pool" is a registry row
whose heartbeat is old, holding jobs through ``locked_by`` like a dead process would.
The same things with real processes killed, frozen and cut off are in
``tests/reliability/test_heartbeat_recovery.py``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py import EXIT_FENCED, JobSpec, WorkerEvents, add_jobs
from graphile_py.db.side_schema import side_schema_for
from graphile_py.events import PoolView
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, make_pool, queue_rows, running_pool, wait_for

FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "poll_interval": 0.2}


class PoolEvents(WorkerEvents):
    def __init__(self) -> None:
        self.lost: list[tuple[str, str, int]] = []
        self.fenced: list[tuple[str, str]] = []

    def pool_lost(self, pool: PoolView, lost_pool_id: str, jobs: int) -> None:
        self.lost.append((pool.id, lost_pool_id, jobs))

    def pool_fenced(self, pool: PoolView, reason: str) -> None:
        self.fenced.append((pool.id, reason))


def _side(db: TestDatabase) -> sql.Identifier:
    return sql.Identifier(side_schema_for(db.schema))


def _pools(db: TestDatabase) -> dict[str, dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("select * from {}.pools").format(_side(db)))
        return {row["id"]: row for row in cur.fetchall()}


def _register_dead_pool(db: TestDatabase, pool_id: str, silent_for: str) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.pools (id, hostname, pid, version, concurrency,"
                " task_identifiers, heartbeat_timeout, heartbeat_at)"
                " values (%s, 'gone-host', 4242, 'test', 2, '{{t}}', interval '1 second',"
                " now() - %s::interval)"
            ).format(_side(db)),
            (pool_id, silent_for),
        )


def _lock_for(db: TestDatabase, pool_id: str, job_ids: list[int]) -> None:
    """Lock jobs (and their queues) as a claim by ``pool_id`` would have."""
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {}._private_jobs set locked_by = %s, locked_at = now(),"
                " attempts = attempts + 1 where id = any(%s)"
            ).format(ident),
            (pool_id, job_ids),
        )
        conn.execute(
            sql.SQL(
                "update {s}._private_job_queues set locked_by = %s, locked_at = now()"
                " where id in (select job_queue_id from {s}._private_jobs where id = any(%s))"
            ).format(s=ident),
            (pool_id, job_ids),
        )


def _add(db: TestDatabase, *specs: JobSpec) -> list[int]:
    with db.connect() as conn:
        return [job.id for job in add_jobs(conn, list(specs), schema=db.schema)]


def test_a_pool_registers_beats_and_deregisters(db: TestDatabase) -> None:
    _add(db, JobSpec("t", {}), JobSpec("t", {}))
    with running_pool(db, {"t": lambda p, h: None}, concurrency=2, **FAST) as pool:
        row = _pools(db)[pool.id]
        assert (row["concurrency"], row["task_identifiers"]) == (2, ["t"])
        assert row["heartbeat_timeout"].total_seconds() == 1.0
        first = row["heartbeat_at"]
        wait_for(lambda: _pools(db)[pool.id]["heartbeat_at"] > first, timeout=5)
        wait_for(lambda: _pools(db)[pool.id]["jobs_succeeded"] == 2, timeout=5)
    row = _pools(db)[pool.id]
    assert row["stopped_at"] is not None and row["lost_at"] is None
    assert pool.result() == 0


def test_a_live_pool_rescues_a_silent_registered_pool(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[tuple[int, int]] = []
    plain, queued = _add(db, JobSpec("t", {}), JobSpec("t", {}, queue_name="q"))
    _register_dead_pool(db, "pool-dead", "5 seconds")
    _lock_for(db, "pool-dead", [plain, queued])
    events = PoolEvents()
    caplog.set_level(logging.WARNING, logger="graphile_py.heartbeat")
    with running_pool(
        db, {"t": lambda p, h: ran.append((h.job.id, h.job.attempts))}, events=events, **FAST
    ) as pool:
        wait_for(lambda: len(ran) == 2, timeout=10)
        row = _pools(db)["pool-dead"]
        assert (row["lost_by"], row["jobs_rescued"]) == (pool.id, 2)
    assert sorted(ran) == [(plain, 2), (queued, 2)]
    assert events.lost == [(pool.id, "pool-dead", 2)]
    assert any("Declared worker pool pool-dead" in m for m in caplog.messages)


def test_the_rescue_message_and_an_unregistered_pool_left_alone(db: TestDatabase) -> None:
    plain, node = _add(db, JobSpec("t", {}), JobSpec("t", {}))
    _register_dead_pool(db, "pool-dead", "1 minute")
    _lock_for(db, "pool-dead", [plain])
    _lock_for(db, "node-pool-like", [node])  # never registered: the four-hour rule
    with running_pool(db, {"u": lambda p, h: None}, **FAST):
        wait_for(lambda: _pools(db)["pool-dead"]["lost_at"] is not None, timeout=10)
    rows = {row["id"]: row for row in jobs_rows(db)}
    assert rows[plain]["locked_by"] is None and rows[plain]["attempts"] == 1
    assert rows[plain]["last_error"].startswith("Worker pool pool-dead was declared lost at ")
    assert "(no heartbeat for 6" in rows[plain]["last_error"]
    assert rows[node]["locked_by"] == "node-pool-like"
    assert _pools(db)["pool-dead"]["jobs_rescued"] == 1


def test_a_pool_declared_lost_fences_itself(db: TestDatabase) -> None:
    events = PoolEvents()
    started, aborted = threading.Event(), threading.Event()

    def long(payload: object, helpers: Any) -> None:
        started.set()
        if helpers.abort_event.wait(20):
            aborted.set()
            raise RuntimeError("aborted")

    [job_id] = _add(db, JobSpec("long", {}))
    pool = make_pool(db, {"long": long}, events=events, **FAST)
    status: list[int] = []
    runner = threading.Thread(target=lambda: status.append(pool.run()))
    runner.start()
    try:
        assert started.wait(10)
        with db.connect() as conn:
            # What a rescuer does: the job goes to another pool, this one is marked lost.
            conn.execute(
                sql.SQL("update {}.pools set lost_at = now(), lost_by = 'x' where id = %s").format(
                    _side(db)
                ),
                (pool.id,),
            )
        _lock_for(db, "pool-rescuer", [job_id])
        runner.join(30)
        assert not runner.is_alive()
    finally:
        pool.request_stop("test over", force=True)
        runner.join(30)
    assert status == [EXIT_FENCED]
    assert aborted.is_set()
    assert [reason for _, reason in events.fenced] == [
        "another pool declared it lost (its heartbeat was overdue)"
    ]
    assert pool.fenced is not None
    # Its failure was not written over the job the rescuer holds now.
    [row] = jobs_rows(db)
    assert (row["locked_by"], row["last_error"]) == ("pool-rescuer", None)
    assert _pools(db)[pool.id]["stopped_at"] is None  # a fenced pool does not deregister


def test_without_the_side_schema_a_pool_warns_once_and_runs(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(_side(db)))
    ran: list[int] = []
    _add(db, JobSpec("t", {}))
    caplog.set_level(logging.WARNING, logger="graphile_py.heartbeat")
    pool = make_pool(db, {"t": lambda p, h: ran.append(1)}, once=True, **FAST)
    assert pool.run() == 0
    assert ran == [1]
    warnings = [m for m in caplog.messages if "runs without heartbeats" in m]
    assert len(warnings) == 1, caplog.messages
    assert "4-hour" in warnings[0]
    assert not any("deregister" in m for m in caplog.messages), caplog.messages


def test_a_run_once_pool_registers_and_deregisters(db: TestDatabase) -> None:
    seen: list[dict[str, Any]] = []
    _add(db, JobSpec("t", {}))

    def task(payload: object, helpers: Any) -> None:
        seen.append(_pools(db)[helpers.job.locked_by])

    pool = make_pool(db, {"t": task}, once=True, **FAST)
    assert pool.run() == 0
    assert seen[0]["stopped_at"] is None
    row = _pools(db)[pool.id]
    assert row["stopped_at"] is not None and row["jobs_succeeded"] == 1
    assert queue_rows(db) == []


def test_a_rescuer_with_history_on_records_the_lost_attempts(db: TestDatabase) -> None:
    """The attempt a lost pool was running appears in the history as ``lost``, by that pool,
    before the rescuer's own successful attempt."""
    ran: list[int] = []
    plain, queued = _add(db, JobSpec("t", {"n": 1}), JobSpec("t", {"n": 2}, queue_name="q"))
    _register_dead_pool(db, "pool-dead", "5 seconds")
    _lock_for(db, "pool-dead", [plain, queued])
    with running_pool(db, {"t": lambda p, h: ran.append(h.job.id)}, history=True, **FAST) as pool:
        wait_for(lambda: len(ran) == 2, timeout=10)
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select job_id, queue_name, payload, attempt, pool_id, outcome, error"
                " from {}.job_attempts order by job_id, id"
            ).format(_side(db))
        )
        rows = cur.fetchall()
    assert [(r["job_id"], r["pool_id"], r["outcome"], r["attempt"]) for r in rows] == [
        (plain, "pool-dead", "lost", 1),
        (plain, pool.id, "success", 2),
        (queued, "pool-dead", "lost", 1),
        (queued, pool.id, "success", 2),
    ]
    lost = [r for r in rows if r["outcome"] == "lost"]
    assert [(r["queue_name"], r["payload"]) for r in lost] == [(None, {"n": 1}), ("q", {"n": 2})]
    assert all("Worker pool pool-dead was declared lost" in r["error"] for r in lost)
