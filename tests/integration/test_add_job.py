"""add_job / add_jobs / WorkerUtils against the real schema functions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from graphile_py import (
    DatabaseError,
    InvalidJobKeyMode,
    JobRejected,
    JobSpec,
    PayloadError,
    WorkerUtils,
    add_job,
    add_job_async,
    add_jobs,
    add_jobs_async,
)
from graphile_py.db.enqueue import enqueue_statements_for
from tests.support import TestDatabase
from tests.support.workers import jobs_rows


def test_defaults(db: TestDatabase) -> None:
    with db.connect() as conn:
        before = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
        job = add_job(conn, "send_email", schema=db.schema)
    assert job.task_identifier == "send_email"
    assert job.payload == {}
    assert (job.queue_name, job.job_queue_id, job.key, job.flags, job.last_error) == (None,) * 5
    assert (job.priority, job.attempts, job.max_attempts, job.revision) == (0, 0, 25, 0)
    assert job.run_at is not None and job.run_at >= before
    assert job.is_available is True and job.locked_at is None
    row = jobs_rows(db)[0]
    assert row["id"] == job.id and row["payload"] == {}


def test_every_option(db: TestDatabase) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=timezone(timedelta(hours=2)))
    with db.connect() as conn:
        job = add_job(
            conn,
            "report",
            {"user": 7, "tags": ["a", "é"], "nested": {"x": None}},
            queue_name="reports",
            run_at=run_at,
            max_attempts=3,
            job_key="report:7",
            job_key_mode="replace",
            priority=-5,
            flags=["heavy", "nightly", "heavy"],
            schema=db.schema,
        )
    row = jobs_rows(db)[0]
    assert row["queue_name"] == job.queue_name == "reports"
    assert row["run_at"] == job.run_at == run_at
    assert (row["max_attempts"], row["key"], row["priority"]) == (3, "report:7", -5)
    assert row["flags"] == {"heavy": True, "nightly": True}
    assert row["payload"] == {"user": 7, "tags": ["a", "é"], "nested": {"x": None}}


def test_payload_is_stored_as_compact_json_text(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_job(conn, "t", {"b": 1, "a": [1, 2]}, schema=db.schema)
        text = conn.execute(
            sql.SQL("select payload::text from {}._private_jobs").format(sql.Identifier(db.schema))
        ).fetchone()
    assert text == ('{"b":1,"a":[1,2]}',)


def test_job_is_part_of_the_callers_transaction(db: TestDatabase) -> None:
    with psycopg.connect(db.dsn) as conn:
        with conn.cursor() as cur:
            add_job(cur, "rolled_back", schema=db.schema)
        conn.rollback()
        add_job(conn, "committed", schema=db.schema)
        assert jobs_rows(db) == []  # not visible before commit
        conn.commit()
    assert [row["task_id"] is not None for row in jobs_rows(db)] == [True]


def test_add_job_notifies_workers(db: TestDatabase) -> None:
    with db.connect() as listener, db.connect() as conn:
        listener.execute('LISTEN "jobs:insert"')
        add_job(conn, "a", schema=db.schema)
        add_jobs(conn, [JobSpec("b"), JobSpec("c")], schema=db.schema)
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    assert [note["count"] for note in notes] == [1, 2]
    assert all("r" in note for note in notes)


def test_add_jobs_returns_jobs_in_spec_order(db: TestDatabase) -> None:
    specs = [JobSpec(f"task_{n}", {"n": n}, queue_name="q" if n % 2 else None) for n in range(6)]
    with db.connect() as conn:
        jobs = add_jobs(conn, specs, schema=db.schema)
    assert [job.task_identifier for job in jobs] == [spec.identifier for spec in specs]
    assert [job.payload for job in jobs] == [{"n": n} for n in range(6)]
    assert len(jobs_rows(db)) == 6


def test_add_jobs_labels_every_job_with_its_own_task_and_queue(db: TestDatabase) -> None:
    # The database returns add_jobs rows in join order, not spec order.
    specs = [
        JobSpec("resize_image", {"n": 1}, queue_name="doc-images"),
        JobSpec("send_report", {"n": 2}),
        JobSpec("resize_image", {"n": 3}, queue_name="doc-images"),
        JobSpec("send_report", {"n": 4}, job_key="weekly"),
        JobSpec("audit", {"n": 5}, queue_name="audit-q"),
    ]
    with db.connect() as conn:
        jobs = add_jobs(conn, specs, schema=db.schema)
    assert [(j.task_identifier, j.queue_name, j.key) for j in jobs] == [
        (s.identifier, s.queue_name, s.job_key) for s in specs
    ]
    stored = {row["id"]: row for row in jobs_rows(db)}
    for job in jobs:
        assert stored[job.id]["payload"] == job.payload
        assert stored[job.id]["queue_name"] == job.queue_name


def test_job_key_replace_and_preserve_run_at(db: TestDatabase) -> None:
    first = datetime.now(UTC) + timedelta(hours=1)
    second = first + timedelta(hours=1)
    with db.connect() as conn:
        a = add_job(conn, "t", {"v": 1}, job_key="k", run_at=first, schema=db.schema)
        b = add_job(
            conn,
            "t",
            {"v": 2},
            job_key="k",
            run_at=second,
            job_key_mode="preserve_run_at",
            schema=db.schema,
        )
        c = add_job(
            conn, "t", {"v": 3}, job_key="k", job_key_mode="unsafe_dedupe", schema=db.schema
        )
        d = add_job(conn, "t", {"v": 4}, job_key="k", run_at=second, schema=db.schema)
    assert a.id == b.id == c.id == d.id
    assert (b.run_at, b.payload, b.revision) == (first, {"v": 2}, 1)
    assert (c.payload, c.revision) == ({"v": 2}, 2)
    assert (d.run_at, d.payload, d.revision) == (second, {"v": 4}, 3)


def test_batch_payloads_merge_under_a_job_key(db: TestDatabase) -> None:
    with db.connect() as conn:
        for n in (1, 2, 3):
            job = add_job(conn, "batch", [{"a": n}], job_key="mykey", schema=db.schema)
    assert job.payload == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert len(jobs_rows(db)) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"identifier": "x" * 129}, JobRejected, "longer than 128"),
        ({"identifier": ""}, JobRejected, "non-empty"),
        ({"queue_name": "q" * 129}, JobRejected, "queue name"),
        ({"job_key": "k" * 513}, JobRejected, "1 to 512"),
        ({"max_attempts": 0}, JobRejected, "at least 1"),
        ({"max_attempts": 40000}, JobRejected, "32767"),
        ({"priority": 2**15}, JobRejected, "priority"),
        ({"flags": "abc"}, JobRejected, "list of strings"),
        ({"payload": {"when": datetime.now()}}, PayloadError, "datetime"),
        ({"payload": {1, 2}}, PayloadError, "set"),
        ({"payload": float("nan")}, PayloadError, "JSON"),
        ({"job_key": "k", "job_key_mode": "sometimes"}, InvalidJobKeyMode, "sometimes"),
        ({"run_at": datetime(2030, 1, 1)}, JobRejected, "timezone-aware"),
    ],
)
def test_bad_jobs_are_refused_before_anything_is_sent(
    db: TestDatabase, kwargs: dict[str, object], error: type[Exception], text: str
) -> None:
    arguments: dict[str, object] = {"identifier": "task", "payload": None} | kwargs
    identifier, payload = arguments.pop("identifier"), arguments.pop("payload")
    with psycopg.connect(db.dsn) as conn:
        with pytest.raises(error, match=text):
            add_job(conn, identifier, payload, schema=db.schema, **arguments)  # type: ignore[arg-type]
        # Nothing was sent, so the caller's transaction is still usable.
        assert conn.execute("select 1").fetchone() == (1,)
        conn.commit()
    assert jobs_rows(db) == []


def test_payload_size_limit(db: TestDatabase) -> None:
    with db.connect() as conn, pytest.raises(PayloadError, match="over the limit of 10"):
        add_job(conn, "t", {"text": "x" * 20}, max_payload_bytes=10, schema=db.schema)


def test_database_errors_are_translated_with_the_cause_chained(db: TestDatabase) -> None:
    statements = enqueue_statements_for(db.schema)
    with db.connect() as conn:
        # Bypass the client-side checks to see the database's own refusals.
        with pytest.raises(JobRejected, match="longer than 128") as raised:
            statements.add_job(conn, ("x" * 200, "{}", None, None, None, None, None, None, None))
        assert raised.value.sqlstate == "23514"
        assert raised.value.constraint == "tasks_identifier_check"
        assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)

        with pytest.raises(InvalidJobKeyMode) as raised_mode:
            statements.add_job(conn, ("t", "{}", None, None, None, "k", None, None, "bogus"))
        assert raised_mode.value.sqlstate == "GWBKM"

    missing = enqueue_statements_for("no_such_schema")
    with db.connect() as conn, pytest.raises(DatabaseError, match=r"42P01|does not exist"):
        missing.add_job(conn, ("t", "{}", None, None, None, None, None, None, None))


def test_async_variants(db: TestDatabase) -> None:
    async def scenario() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            job = await add_job_async(conn, "async_added", {"x": 1}, schema=db.schema)
            async with conn.cursor() as cur:
                jobs = await add_jobs_async(
                    cur, [JobSpec("async_many", n) for n in range(3)], schema=db.schema
                )
            return job.id, len(jobs)

    job_id, count = asyncio.run(scenario())
    assert count == 3
    assert len(jobs_rows(db)) == 4
    assert jobs_rows(db)[0]["id"] == job_id


def test_worker_utils_add_and_administer(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        a = utils.add_job("admin", {"n": 1})
        b, c = utils.add_jobs([JobSpec("admin", {"n": 2}), JobSpec("admin", {"n": 3}, job_key="k")])
        failed = utils.permanently_fail_jobs([a.id], "given up")
        assert [(job.id, job.last_error, job.task_identifier) for job in failed] == [
            (a.id, "given up", "admin")
        ]
        later = datetime.now(UTC) + timedelta(days=1)
        rescheduled = utils.reschedule_jobs([b.id], run_at=later, priority=9)
        assert (rescheduled[0].run_at, rescheduled[0].priority) == (later, 9)
        assert [job.id for job in utils.complete_jobs([b.id])] == [b.id]
        removed = utils.remove_job("k")
        assert removed is not None and removed.id == c.id
        assert utils.remove_job("k") is None
        utils.cleanup(["DELETE_PERMAFAILED_JOBS", "GC_JOB_QUEUES"])
    assert jobs_rows(db) == []


def test_worker_utils_force_unlock_and_cleanup_validation(db: TestDatabase) -> None:
    from graphile_py import ConfigurationError

    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        job = utils.add_job("locked", queue_name="q")
        with utils.connection() as conn:
            ident = sql.Identifier(db.schema)
            conn.execute(
                sql.SQL(
                    "update {}._private_jobs set locked_at = now(), locked_by = 'pool-dead'"
                ).format(ident)
            )
            conn.execute(
                sql.SQL(
                    "update {}._private_job_queues set locked_at = now(), locked_by = 'pool-dead'"
                ).format(ident)
            )
        assert utils.complete_jobs([job.id]) == []  # locked: left alone
        utils.force_unlock_workers(["pool-dead"])
        assert [j.id for j in utils.complete_jobs([job.id])] == [job.id]
        with pytest.raises(ConfigurationError, match="Invalid cleanup tasks"):
            utils.cleanup(["EVERYTHING"])  # type: ignore[list-item]
