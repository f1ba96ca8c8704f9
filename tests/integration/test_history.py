"""The job history (issue 11, item 4): each attempt a Python pool runs, in the side schema.

An attempt is written in the same statement as the job's completion or failure, whatever
path that takes (complete-and-claim, a named queue's completion, a pipelined failure,
the batch writers, a time limit, shutdown); with history off nothing about it is sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graphile_py import ConfigurationError, WorkerOptions, add_job
from graphile_py.db.history import History
from graphile_py.db.side_schema import side_schema_for
from graphile_py.pool.execution import error_summary
from graphile_py.pool.outcomes import prune_history
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, make_pool, run_once, running_pool, wait_for


def _add(db: TestDatabase, identifier: str, payload: object = None, **options: Any) -> int:
    with db.connect() as conn:
        return add_job(conn, identifier, payload, schema=db.schema, **options).id


def _side(db: TestDatabase) -> sql.Identifier:
    return sql.Identifier(side_schema_for(db.schema))


def _attempts(db: TestDatabase) -> list[dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("select * from {}.job_attempts order by id").format(_side(db)))
        return cur.fetchall()


def _make_ready(db: TestDatabase) -> None:
    """Skip the retry backoff: every job that is not locked may run now."""
    with db.connect() as conn:
        conn.execute(
            sql.SQL("update {}._private_jobs set run_at = now() where locked_at is null").format(
                sql.Identifier(db.schema)
            )
        )


@pytest.mark.parametrize("queue_name", [None, "history-q"])
def test_every_attempt_is_recorded_with_its_error_in_order(
    db: TestDatabase, queue_name: str | None
) -> None:
    """Fails twice, then succeeds: three rows, the errors and outcomes in order."""
    calls: list[int] = []

    def flaky(payload: Any, helpers: Any) -> None:
        calls.append(helpers.job.attempts)
        if helpers.job.attempts < 3:
            raise RuntimeError(f"boom {helpers.job.attempts}")

    job_id = _add(db, "flaky", {"n": 1}, queue_name=queue_name, job_key="k-1", max_attempts=5)
    before = time.time()
    for _ in range(3):
        run_once(db, {"flaky": flaky}, history=True)
        _make_ready(db)
    assert calls == [1, 2, 3]
    assert jobs_rows(db) == []

    rows = _attempts(db)
    assert [r["outcome"] for r in rows] == ["failure", "failure", "success"]
    assert [r["error"] and error_summary(r["error"]) for r in rows] == ["boom 1", "boom 2", None]
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert row["job_id"] == job_id
        assert row["task_identifier"] == "flaky"
        assert row["queue_name"] == queue_name
        assert row["key"] == "k-1"
        assert row["payload"] == {"n": 1}
        assert row["payload_bytes"] == len(b'{"n":1}')
        assert row["max_attempts"] == 5
        assert row["pool_id"].startswith("otpool-")
        assert before - 1 <= row["started_at"].timestamp() <= row["finished_at"].timestamp() + 1
    # Each attempt is a different run of a fresh run-once pool.
    assert len({r["pool_id"] for r in rows}) == 3


def test_the_started_time_is_when_the_task_started(db: TestDatabase) -> None:
    def slow(payload: Any, helpers: Any) -> None:
        time.sleep(0.3)

    _add(db, "slow")
    run_once(db, {"slow": slow}, history=True)
    (row,) = _attempts(db)
    took = row["finished_at"] - row["started_at"]
    assert timedelta(seconds=0.25) <= took < timedelta(seconds=5)


def test_payloads_over_the_limit_keep_only_their_size(db: TestDatabase) -> None:
    small = {"x": "a" * 10}
    big = {"x": "b" * 200}
    small_id = _add(db, "noop", small)
    big_id = _add(db, "noop", big)
    failing_big_id = _add(db, "fail", big, max_attempts=1)
    run_once(
        db,
        {"noop": lambda p, h: None, "fail": lambda p, h: 1 / 0},
        history=True,
        history_payload_limit=100,
    )
    by_job = {row["job_id"]: row for row in _attempts(db)}
    size = len(json.dumps(big, separators=(",", ":")).encode())
    assert by_job[small_id]["payload"] == small
    assert by_job[small_id]["payload_bytes"] == len(json.dumps(small, separators=(",", ":")))
    assert by_job[big_id]["payload"] is None
    assert by_job[big_id]["payload_bytes"] == size
    assert by_job[failing_big_id]["payload"] is None
    assert by_job[failing_big_id]["payload_bytes"] == size
    assert by_job[failing_big_id]["outcome"] == "failure"
    assert error_summary(by_job[failing_big_id]["error"]) == "division by zero"


def test_a_limit_of_zero_never_keeps_a_payload(db: TestDatabase) -> None:
    _add(db, "noop", {"a": 1})
    run_once(db, {"noop": lambda p, h: None}, history=True, history_payload_limit=0)
    (row,) = _attempts(db)
    assert row["payload"] is None and row["payload_bytes"] == 7


def test_a_batch_jobs_partial_failure_records_the_payload_that_ran(db: TestDatabase) -> None:
    def batch(payload: list[int], helpers: Any) -> list[Any]:
        return [ValueError(f"bad {item}") if item % 2 else None for item in payload]

    job_id = _add(db, "batch", [1, 2, 3])
    run_once(db, {"batch": batch}, history=True)
    (row,) = _attempts(db)
    assert row["job_id"] == job_id and row["outcome"] == "failure"
    assert row["payload"] == [1, 2, 3]
    assert row["error"] == "Batch failures:\nbad 1\nbad 3"
    # The job itself keeps only the failed items, as without history.
    assert jobs_rows(db)[0]["payload"] == [1, 3]


def test_batched_completions_and_failures_are_recorded(db: TestDatabase) -> None:
    ids = {
        _add(db, "work", {"fail": i % 3 == 0}, queue_name=f"q{i % 2}" if i % 4 == 0 else None)
        for i in range(30)
    }

    def work(payload: Any, helpers: Any) -> None:
        if payload["fail"]:
            raise ValueError("no")

    run_once(
        db,
        {"work": work},
        history=True,
        concurrency=4,
        local_queue_size=10,
        complete_job_batch_delay=0.05,
        fail_job_batch_delay=0.05,
    )
    rows = _attempts(db)
    assert {r["job_id"] for r in rows} == ids
    assert len(rows) == len(ids)
    for row in rows:
        failed = row["payload"]["fail"]
        assert row["outcome"] == ("failure" if failed else "success")
        assert (row["error"] and error_summary(row["error"])) == ("no" if failed else None)
        assert row["started_at"] <= row["finished_at"]
    queued = [r for r in rows if r["queue_name"] is not None]
    assert queued and {r["queue_name"] for r in queued} <= {"q0", "q1"}


def test_a_job_past_its_time_limit_is_recorded_as_abandoned(db: TestDatabase) -> None:
    release = threading.Event()

    def stuck(payload: Any, helpers: Any) -> None:
        release.wait(10)  # ignores the abort event

    job_id = _add(db, "stuck", max_attempts=1)
    try:
        with running_pool(
            db, {"stuck": stuck}, history=True, task_timeout=0.2, task_timeout_grace=0.2
        ):
            wait_for(lambda: len(_attempts(db)) == 1, timeout=10)
    finally:
        release.set()
    (row,) = _attempts(db)
    assert row["job_id"] == job_id and row["outcome"] == "abandoned"
    assert row["error"].startswith("Task timed out after 0.2s")
    took = (row["finished_at"] - row["started_at"]).total_seconds()
    assert 0.3 <= took < 5


def test_a_job_running_at_forced_shutdown_is_recorded_as_abandoned(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()

    def stuck(payload: Any, helpers: Any) -> None:
        entered.set()
        release.wait(10)

    job_id = _add(db, "stuck", {"p": True}, queue_name="q")
    try:
        with running_pool(db, {"stuck": stuck}, history=True) as pool:
            assert entered.wait(5)
            time.sleep(0.1)
            pool.request_stop("SIGINT")
            pool.request_stop("SIGTERM", force=True)
    finally:
        release.set()
    (row,) = _attempts(db)
    assert row["job_id"] == job_id and row["outcome"] == "abandoned"
    assert row["error"] == "Forced worker shutdown due to SIGTERM"
    assert row["queue_name"] == "q" and row["payload"] == {"p": True}
    assert (row["finished_at"] - row["started_at"]).total_seconds() >= 0.1


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every statement sent through a psycopg cursor during the test, as bytes."""
    queries: list[bytes] = []
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, bytes | str):
            queries.append(query.encode() if isinstance(query, str) else query)
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    yield queries


def test_history_off_writes_nothing_and_sends_todays_statements(
    db: TestDatabase, sent: list[bytes]
) -> None:
    from graphile_py.db import statements_for

    def work(payload: Any, helpers: Any) -> None:
        if payload["fail"]:
            raise ValueError("no")

    for i in range(6):
        _add(db, "work", {"fail": i % 2 == 0}, queue_name="q" if i < 2 else None)
    run_once(db, {"work": work})
    for i in range(6):
        _add(db, "work", {"fail": i % 2 == 0}, queue_name="q" if i < 2 else None)
    run_once(
        db,
        {"work": work},
        local_queue_size=5,
        complete_job_batch_delay=0.01,
        fail_job_batch_delay=0.01,
    )
    assert _attempts(db) == []
    assert not [q for q in sent if b"job_attempts" in q]
    statements = statements_for(db.schema)
    # Every path an outcome takes, and each sent the statement it sends without history.
    for name in ("complete_with_queue_sql", "fail_no_queue_sql", "fail_with_queue_sql"):
        assert getattr(statements, name) in sent, name
    assert statements.complete_one_sql in sent or statements.complete_many_sql in sent
    complete_and_claim = statements.claim_statement(
        batch=False, flags=False, node_time=False, complete_first=True
    )
    assert complete_and_claim in sent


def test_history_on_sends_one_statement_per_outcome(db: TestDatabase, sent: list[bytes]) -> None:
    """Recording is part of the completion's statement: no extra statement per job."""
    for _ in range(5):
        _add(db, "noop")
    run_once(db, {"noop": lambda p, h: None}, history=True)
    assert len(_attempts(db)) == 5
    inserts = [q for q in sent if b"insert into" in q and b"job_attempts" in q]
    history = History.for_schemas(db.schema, side_schema_for(db.schema), payload_limit=0)
    # Five jobs, one claim: the first claim alone, then four complete-and-claims (each
    # records the job it completes), the last completion claims nothing.
    assert len(inserts) == 5
    assert all(b"delete from" in q for q in inserts)
    assert history.statements.complete_sql not in sent  # complete_and_claim did it all


def _insert_attempt(conn: psycopg.Connection[Any], db: TestDatabase, age: timedelta) -> None:
    conn.execute(
        sql.SQL(
            "insert into {}.job_attempts (job_id, task_identifier, payload_bytes, attempt,"
            " max_attempts, pool_id, started_at, finished_at, outcome)"
            " values (1, 't', 0, 1, 25, 'pool-x', now() - %s, now() - %s, 'success')"
        ).format(_side(db)),
        (age, age),
    )


def test_retention_removes_old_rows_and_keeps_new_ones(db: TestDatabase) -> None:
    history = History.for_schemas(db.schema, side_schema_for(db.schema), payload_limit=0)
    with db.connect() as conn:
        for _ in range(7):
            _insert_attempt(conn, db, timedelta(days=8))
        for _ in range(3):
            _insert_attempt(conn, db, timedelta(days=6))
        # Batches of 2: four statements for seven rows.
        assert history.prune(conn, 7 * 86400, batch_size=2) == 7
        assert history.prune(conn, 7 * 86400, batch_size=2) == 0
    rows = _attempts(db)
    assert len(rows) == 3
    assert all(r["finished_at"].timestamp() > time.time() - 7 * 86400 for r in rows)


def test_the_pools_pruning_uses_the_retention_setting(db: TestDatabase) -> None:
    with db.connect() as conn:
        _insert_attempt(conn, db, timedelta(hours=2))
        _insert_attempt(conn, db, timedelta(minutes=30))
    options = WorkerOptions(schema=db.schema, history=True, history_retention=3600)
    with ConnectionPool(db.dsn, min_size=1, kwargs={"autocommit": True}) as connections:
        prune_history(options, connections)
        prune_history(WorkerOptions(schema=db.schema, history_retention=60), connections)
    (row,) = _attempts(db)
    assert row["finished_at"].timestamp() > time.time() - 3600


def test_a_run_once_pool_prunes_the_history_too(db: TestDatabase) -> None:
    """`worker --once` from cron may be the only worker there is: it prunes as well."""
    with db.connect() as conn:
        _insert_attempt(conn, db, timedelta(days=8))
    run_once(db, {"noop": lambda p, h: None}, history=True)
    assert _attempts(db) == []


def test_history_without_the_side_schema_refuses_to_start(db: TestDatabase) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(_side(db)))
    pool = make_pool(db, {"noop": lambda p, h: None}, history=True)
    with pytest.raises(ConfigurationError, match="graphile-py migrate"):
        pool.start()
    assert not pool.started or pool.connection_pool.closed
