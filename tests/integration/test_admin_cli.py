"""Operator commands against a real database: add-job, cleanup, unlock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from psycopg import sql

from graphile_py import WorkerUtils
from graphile_py.cli import main
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, queue_rows


def _cli(db: TestDatabase, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, [args[0], "-c", db.dsn, "-s", db.schema, *args[1:]], input=input
    )
    return result.exit_code, result.output


def test_add_job_with_every_option(db: TestDatabase) -> None:
    code, output = _cli(
        db,
        "add-job",
        "send_report",
        "--payload",
        '{"user": 7}',
        "--queue",
        "reports",
        "--run-at",
        "2031-02-03T04:05:06+00:00",
        "--max-attempts",
        "3",
        "--job-key",
        "r7",
        "--priority",
        "-2",
        "--flag",
        "heavy",
        "--flag",
        "nightly",
    )
    assert code == 0, output
    # A task new to the database gets a warning on stderr (see test_unserved_tasks.py).
    warning, printed_line = output.splitlines()
    assert warning.startswith("warning: task 'send_report' is new to this database")
    printed = json.loads(printed_line)
    row = jobs_rows(db)[0]
    assert printed["id"] == row["id"] and printed["task_identifier"] == "send_report"
    assert row["payload"] == {"user": 7} and row["queue_name"] == "reports"
    assert row["run_at"] == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (row["max_attempts"], row["key"], row["priority"]) == (3, "r7", -2)
    assert row["flags"] == {"heavy": True, "nightly": True}


def test_add_job_refuses_bad_json_and_bad_jobs(db: TestDatabase) -> None:
    code, output = _cli(db, "add-job", "t", "--payload", "{nope")
    assert code == 1 and "--payload is not valid JSON" in output
    code, output = _cli(db, "add-job", "x" * 200)
    assert code == 1 and "longer than 128" in output and "Traceback" not in output
    assert jobs_rows(db) == []


def test_cleanup_command(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        job = utils.add_job("gone", queue_name="old-queue")
        utils.permanently_fail_jobs([job.id], "broken")
    code, output = _cli(db, "cleanup", "DELETE_PERMAFAILED_JOBS", "GC_JOB_QUEUES")
    assert code == 0, output
    assert jobs_rows(db) == [] and queue_rows(db) == []
    code, output = _cli(db, "cleanup", "EVERYTHING")
    assert code == 2 and "EVERYTHING" in output


def _lock(db: TestDatabase, pool: str, age: timedelta, queue: str | None = None) -> int:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        job = utils.add_job("held", queue_name=queue)
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {}._private_jobs set locked_by = %s, locked_at = now() - %s,"
                " attempts = 1 where id = %s"
            ).format(ident),
            (pool, age, job.id),
        )
        if queue:
            conn.execute(
                sql.SQL(
                    "update {}._private_job_queues set locked_by = %s, locked_at = now() - %s"
                    " where queue_name = %s"
                ).format(ident),
                (pool, age, queue),
            )
    return job.id


def test_unlock_lists_holders_and_unlocks_the_named_ones(db: TestDatabase) -> None:
    dead = _lock(db, "pool-dead", timedelta(hours=1), queue="q1")
    _lock(db, "pool-dead", timedelta(minutes=50))
    alive = _lock(db, "pool-alive", timedelta(seconds=5))

    code, output = _cli(db, "unlock", "--json")
    assert code == 0, output
    holders = {h["pool_id"]: h for h in json.loads(output)}
    assert holders["pool-dead"]["jobs"] == 2 and holders["pool-dead"]["queues"] == 1
    assert holders["pool-dead"]["age_seconds"] >= 3600 - 5
    assert holders["pool-alive"]["jobs"] == 1

    code, output = _cli(db, "unlock")
    assert code == 0 and "pool-dead" in output and "60m ago" in output

    code, output = _cli(db, "unlock", "--older-than", "1800", input="n\n")
    assert code == 1 and "nothing unlocked" in output
    code, output = _cli(db, "unlock", "--older-than", "1800", "--yes")
    assert code == 0 and "Unlocked: pool-dead" in output
    rows = {row["id"]: row for row in jobs_rows(db)}
    assert rows[dead]["locked_by"] is None and rows[dead]["attempts"] == 1
    assert rows[alive]["locked_by"] == "pool-alive"
    assert all(row["locked_by"] is None for row in queue_rows(db))

    code, output = _cli(db, "unlock", "--pool", "pool-alive", "--pool", "pool-ghost", "--yes")
    assert code == 0 and "No locks held by: pool-ghost" in output
    assert all(row["locked_by"] is None for row in jobs_rows(db))


def test_worker_utils_use_node_time_sets_run_at_from_this_clock(db: TestDatabase) -> None:
    from graphile_py import JobSpec

    before = datetime.now(UTC)
    with WorkerUtils(db.dsn, schema=db.schema, use_node_time=True) as utils:
        job = utils.add_job("t")
        later = datetime(2040, 1, 1, tzinfo=UTC)
        explicit = utils.add_job("t", run_at=later)
        many = utils.add_jobs([JobSpec("t"), JobSpec("t", run_at=later)])
    after = datetime.now(UTC)
    assert job.run_at is not None and before <= job.run_at <= after
    assert explicit.run_at == later
    assert many[0].run_at is not None and before <= many[0].run_at <= after
    assert many[1].run_at == later
