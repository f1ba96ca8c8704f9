"""The admin commands (status, jobs, queues, cron) against a real database.

Most run in-process through click's CliRunner; one runs the real program in a
subprocess. ``--json`` output is parsed and compared with what the database holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import Inspector, WorkerUtils
from graphile_py.cli import main
from graphile_py.db import statements_for
from tests.support import TestDatabase
from tests.support.workers import claim_like_a_worker, jobs_rows

POOL = "pool-ops-cli-test"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, (self.stdout, self.stderr)
        return json.loads(self.stdout)


def _cli(db: TestDatabase, command: str, *args: str) -> Result:
    """Run ``graphile-py COMMAND -c DSN -s SCHEMA ARGS`` in-process."""
    result = CliRunner().invoke(main, [*command.split(), "-c", db.dsn, "-s", db.schema, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


def _claim(db: TestDatabase, task: str) -> int:
    return claim_like_a_worker(db, task, POOL)


@dataclass
class Jobs:
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int


@pytest.fixture
def jobs(db: TestDatabase, utils: WorkerUtils) -> Jobs:
    utils.add_job("held", {"who": "worker"}, queue_name="serial")
    running = _claim(db, "held")
    utils.add_job("flaky")
    retrying = _claim(db, "flaky")
    with db.connect() as conn:
        statements_for(db.schema).fail_jobs_with_message(conn, POOL, [retrying], "timeout")
    failed = utils.add_job("email", {"to": "x@example.com"}, max_attempts=2).id
    utils.permanently_fail_jobs([failed], "mailbox full\nsecond line")
    ready = utils.add_job("email", {"to": "y@example.com"}, job_key="welcome-y").id
    later = datetime.now(UTC) + timedelta(days=1)
    scheduled = utils.add_job("report", run_at=later, queue_name="serial").id
    return Jobs(ready, scheduled, running, retrying, failed)


def _row(db: TestDatabase, job_id: int) -> dict[str, Any] | None:
    found = [row for row in jobs_rows(db) if row["id"] == job_id]
    return found[0] if found else None


# -- status ---------------------------------------------------------------------------------


def test_status_json_matches_the_database(db: TestDatabase, utils: WorkerUtils, jobs: Jobs) -> None:
    data = _cli(db, "status", "--json").json()
    assert data["totals"] == {
        "ready": 1,
        "scheduled": 1,
        "running": 1,
        "retrying": 1,
        "failed": 1,
        "total": 5,
    }
    tasks = {task["task"]: task for task in data["tasks"]}
    assert sorted(tasks) == ["email", "flaky", "held", "report"]
    assert tasks["email"]["counts"]["failed"] == 1 and tasks["email"]["counts"]["ready"] == 1
    assert tasks["email"]["oldest_ready_age_seconds"] >= 0
    assert tasks["held"]["oldest_ready_age_seconds"] is None
    assert data["oldest_ready_age_seconds"] >= 0
    (queue,) = data["queues"]
    assert queue["name"] == "serial" and queue["locked_by"] == POOL
    assert queue["counts"]["running"] == 1 and queue["counts"]["scheduled"] == 1
    assert data["locked_queues"] == ["serial"]
    (pool,) = data["pools"]
    assert (pool["pool_id"], pool["jobs"], pool["queues"]) == (POOL, 1, 1)
    assert datetime.fromisoformat(data["taken_at"]).tzinfo is not None
    report = Inspector(utils).status()
    assert data["totals"]["total"] == report.totals.total


def test_status_table(db: TestDatabase, jobs: Jobs) -> None:
    result = _cli(db, "status")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("5 jobs at ")
    assert "1 ready, 1 scheduled, 1 running, 1 retrying, 1 failed" in lines[0]
    header = next(line for line in lines if line.startswith("task"))
    assert header.split() == [
        "task", "ready", "scheduled", "running", "retrying", "failed", "oldest", "ready",
        "served",
    ]  # fmt: skip
    email = next(line for line in lines if line.startswith("email"))
    assert email.split()[1:6] == ["1", "0", "0", "0", "1"]
    assert any(line.startswith("serial") and POOL in line for line in lines)
    assert any(line.startswith(POOL) for line in lines)


def test_status_of_an_empty_database(db: TestDatabase) -> None:
    result = _cli(db, "status")
    assert result.code == 0 and result.stdout.startswith("0 jobs at ")
    assert "No job is ready" in result.stdout and "No worker pool holds a lock." in result.stdout


def _schema_exists(db: TestDatabase) -> bool:
    with db.connect() as conn:
        row = conn.execute(
            "select exists (select 1 from pg_namespace where nspname = %s)", (db.schema,)
        ).fetchone()
    return bool(row and row[0])


def test_status_never_installs_the_schema(empty_db: TestDatabase) -> None:
    result = _cli(empty_db, "status")
    assert result.code == 1, (result.stdout, result.stderr)
    assert f"the worker schema {empty_db.schema!r} is not installed" in result.stderr
    assert "run 'graphile-py migrate'" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not _schema_exists(empty_db)


@pytest.mark.parametrize(
    "command", ["jobs list", "jobs show 1", "queues list", "cron list", "jobs retry 1"]
)
def test_the_other_queue_commands_never_install_it_either(
    empty_db: TestDatabase, command: str
) -> None:
    result = _cli(empty_db, command)
    assert result.code == 1 and "graphile-py migrate" in result.stderr, result.stderr
    assert not _schema_exists(empty_db)


def test_status_on_an_old_schema_asks_for_a_migration(empty_db: TestDatabase) -> None:
    from graphile_py import latest_known_migration, migrate

    older = latest_known_migration() - 1
    with empty_db.connect() as conn:
        migrate(conn, schema=empty_db.schema, target=older)
    result = _cli(empty_db, "status", "--json")
    assert result.code == 1 and result.stdout == ""
    assert f"is at revision {older}, older than" in result.stderr
    assert "run 'graphile-py migrate'" in result.stderr
    with empty_db.connect() as conn:
        latest = conn.execute(
            sql.SQL("select max(id) from {}.migrations").format(sql.Identifier(empty_db.schema))
        ).fetchone()
    assert latest == (older,)


# -- jobs list / show -----------------------------------------------------------------------


def test_jobs_list_json_and_filters(db: TestDatabase, jobs: Jobs) -> None:
    listed = _cli(db, "jobs list", "--json").json()
    assert [job["id"] for job in listed] == sorted(vars(jobs).values(), reverse=True)
    states = {job["id"]: job["state"] for job in listed}
    assert states == {
        jobs.ready: "ready",
        jobs.scheduled: "scheduled",
        jobs.running: "running",
        jobs.retrying: "retrying",
        jobs.failed: "failed",
    }

    def ids(*args: str) -> list[int]:
        return [job["id"] for job in _cli(db, "jobs list", "--json", *args).json()]

    assert ids("--state", "failed") == [jobs.failed]
    assert ids("--task", "email") == [jobs.ready, jobs.failed]
    assert ids("--queue", "serial") == [jobs.scheduled, jobs.running]
    assert ids("--queue", "serial", "--state", "running") == [jobs.running]
    assert ids("--key", "welcome-y") == [jobs.ready]
    first = ids("--limit", "2")
    second = ids("--limit", "2", "--before-id", str(first[-1]))
    third = ids("--limit", "2", "--before-id", str(second[-1]))
    assert first + second + third == [job["id"] for job in listed]


def test_jobs_list_table(db: TestDatabase, jobs: Jobs) -> None:
    result = _cli(db, "jobs list")
    assert result.code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["id", "state", "task", "queue", "attempts"]
    failed = next(row for row in rows if row.split()[0] == str(jobs.failed))
    assert "failed" in failed and "2/2" in failed and "mailbox full second line" in failed
    assert _cli(db, "jobs list", "--task", "nobody").stdout.strip() == "No jobs match."


def test_jobs_show(db: TestDatabase, jobs: Jobs) -> None:
    data = _cli(db, "jobs show", str(jobs.failed), "--json").json()
    row = _row(db, jobs.failed)
    assert row is not None
    assert data["id"] == jobs.failed and data["state"] == "failed"
    assert data["payload"] == {"to": "x@example.com"} == row["payload"]
    assert data["last_error"] == "mailbox full\nsecond line"
    assert (data["attempts"], data["max_attempts"]) == (2, 2)
    assert data["task_identifier"] == "email" and data["queue_name"] is None
    assert datetime.fromisoformat(data["run_at"]) == row["run_at"]
    running = _cli(db, "jobs show", str(jobs.running), "--json").json()
    assert running["locked_by"] == POOL and running["queue_name"] == "serial"

    text = _cli(db, "jobs show", str(jobs.failed))
    assert text.code == 0
    assert '"to": "x@example.com"' in text.stdout and "mailbox full\nsecond line" in text.stdout


# -- actions --------------------------------------------------------------------------------


def test_retry_reports_the_job_a_worker_holds(db: TestDatabase, jobs: Jobs) -> None:
    running_before = _row(db, jobs.running)
    data = _cli(
        db, "jobs retry", str(jobs.failed), str(jobs.retrying), str(jobs.running), "--json"
    ).json()
    assert sorted(data["retried"]) == sorted([jobs.failed, jobs.retrying])
    assert [skip["id"] for skip in data["skipped"]] == [jobs.running]
    assert data["skipped"][0]["locked_by"] == POOL and data["gone"] == []
    for job_id in (jobs.failed, jobs.retrying):
        row = _row(db, job_id)
        assert row is not None and row["attempts"] == 0
        assert row["run_at"] <= datetime.now(UTC) + timedelta(seconds=5)
    assert _row(db, jobs.running) == running_before


def test_retry_text_and_all_failed(db: TestDatabase, utils: WorkerUtils, jobs: Jobs) -> None:
    other = utils.add_job("other", max_attempts=1).id
    utils.permanently_fail_jobs([other])
    result = _cli(db, "jobs retry", "--all-failed", "--task", "email")
    assert result.code == 0 and result.stdout.strip() == f"Retried 1 job: {jobs.failed}"
    assert _row(db, other) is not None and _row(db, other)["attempts"] == 1  # type: ignore[index]
    result = _cli(db, "jobs retry", str(jobs.running))
    assert result.code == 0
    assert result.stdout.splitlines() == [
        "Retried 0 jobs.",
        f"Skipped job {jobs.running}: a worker holds it ({POOL},"
        f" since {result.stdout.split('since ')[1].split(')')[0]}).",
    ]


def test_remove_skips_held_jobs(db: TestDatabase, jobs: Jobs) -> None:
    data = _cli(db, "jobs remove", str(jobs.ready), str(jobs.running), "--json").json()
    assert data["removed"] == [jobs.ready]
    assert [skip["id"] for skip in data["skipped"]] == [jobs.running]
    assert _row(db, jobs.ready) is None and _row(db, jobs.running) is not None


def test_reschedule_run_at_and_in(db: TestDatabase, jobs: Jobs) -> None:
    data = _cli(
        db, "jobs reschedule", str(jobs.ready), "--run-at", "2031-05-06T07:08:09Z", "--json"
    ).json()
    assert data["rescheduled"] == [jobs.ready] and data["skipped"] == []
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert datetime.fromisoformat(data["run_at"]) == when
    row = _row(db, jobs.ready)
    assert row is not None and row["run_at"] == when

    before = datetime.now(UTC)
    result = _cli(db, "jobs reschedule", str(jobs.failed), str(jobs.running), "--in", "1h30m")
    after = datetime.now(UTC)
    assert result.code == 0 and f"Rescheduled 1 job: {jobs.failed}" in result.stdout
    assert f"Skipped job {jobs.running}" in result.stdout
    row = _row(db, jobs.failed)
    assert row is not None
    delay = timedelta(hours=1, minutes=30)
    assert before + delay <= row["run_at"] <= after + delay


# -- queues and cron ------------------------------------------------------------------------


def test_queues_list(db: TestDatabase, jobs: Jobs) -> None:
    (queue,) = _cli(db, "queues list", "--json").json()
    assert queue["name"] == "serial" and queue["locked_by"] == POOL
    assert queue["counts"] == {
        "ready": 0,
        "scheduled": 1,
        "running": 1,
        "retrying": 0,
        "failed": 0,
        "total": 2,
    }
    text = _cli(db, "queues list").stdout.splitlines()
    assert text[0].split()[0] == "queue" and text[1].startswith("serial") and POOL in text[1]


def _known_crontab(db: TestDatabase, identifier: str, last: datetime | None) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_known_crontabs (identifier, known_since, last_execution)"
                " values (%s, now(), %s)"
            ).format(sql.Identifier(db.schema)),
            (identifier, last),
        )


def test_cron_list(db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    last = datetime(2030, 3, 4, 5, 0, tzinfo=UTC)
    _known_crontab(db, "hourly", last)
    _known_crontab(db, "old", None)
    crontab = tmp_path / "my.crontab"
    crontab.write_text("0 * * * * poll_feeds ?id=hourly\n")

    listed = {c["identifier"]: c for c in _cli(db, "cron list", "--json").json()}
    assert listed["hourly"]["next_run"] is None and listed["hourly"]["in_crontab"] is None

    listed = {
        c["identifier"]: c
        for c in _cli(db, "cron list", "--crontab", str(crontab), "--json").json()
    }
    assert datetime.fromisoformat(listed["hourly"]["last_execution"]) == last
    assert listed["hourly"]["task"] == "poll_feeds" and listed["hourly"]["in_crontab"] is True
    next_run = datetime.fromisoformat(listed["hourly"]["next_run"])
    assert next_run.minute == 0 and next_run.second == 0
    assert listed["old"]["in_crontab"] is False and listed["old"]["next_run"] is None

    # Without --crontab, ./crontab is read, as the worker does.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crontab").write_text("30 * * * * poll_feeds ?id=hourly\n")
    listed = {c["identifier"]: c for c in _cli(db, "cron list", "--json").json()}
    assert datetime.fromisoformat(listed["hourly"]["next_run"]).minute == 30
    text = _cli(db, "cron list").stdout
    assert "hourly" in text and "poll_feeds" in text and "(not in the crontab)" in text


def test_cron_list_with_a_bad_or_missing_crontab(db: TestDatabase, tmp_path: Path) -> None:
    result = _cli(db, "cron list", "--crontab", str(tmp_path / "missing"))
    assert result.code == 1 and "does not exist" in result.stderr
    bad = tmp_path / "bad"
    bad.write_text("0 25 * * * task\n")
    result = _cli(db, "cron list", "--crontab", str(bad))
    assert result.code == 1 and "line 1" in result.stderr and "Traceback" not in result.stderr


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "code", "message"),
    [
        ("jobs list", ["--state", "stuck"], 2, "'stuck' is not one of"),
        ("jobs list", ["--limit", "0"], 2, "0 is not in the range"),
        ("jobs list", ["--limit", "10001"], 2, "10001 is not in the range"),
        ("jobs show", ["abc"], 2, "'abc' is not a valid integer"),
        ("jobs show", ["987654"], 1, "no job with id 987654"),
        ("jobs retry", ["12x"], 2, "'12x' is not a valid integer"),
        ("jobs retry", [], 2, "give job IDs or --all-failed"),
        ("jobs retry", ["--task", "t"], 2, "give job IDs or --all-failed"),
        ("jobs remove", ["987654"], 1, "no job with id 987654 (nothing was removed)"),
        ("jobs reschedule", ["1", "--in", "10 minutes"], 2, "is not a duration"),
        ("jobs reschedule", ["1", "--in", "10x"], 2, "is not a duration"),
        ("jobs reschedule", ["1", "--run-at", "2030-01-01T09:00:00"], 2, "with a UTC offset"),
        ("jobs reschedule", ["1", "--run-at", "tomorrow"], 2, "with a UTC offset"),
        ("jobs reschedule", ["1"], 2, "exactly one of --run-at and --in"),
    ],
)
def test_bad_input_is_explained(
    db: TestDatabase, command: str, args: list[str], code: int, message: str
) -> None:
    result = _cli(db, command, *args)
    assert result.code == code, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_id_among_known_ones_changes_nothing(db: TestDatabase, jobs: Jobs) -> None:
    before = jobs_rows(db)
    result = _cli(db, "jobs remove", str(jobs.ready), "987654")
    assert result.code == 1 and "no job with id 987654" in result.stderr
    assert jobs_rows(db) == before


# -- the real program -----------------------------------------------------------------------


def test_the_program_in_a_subprocess(db: TestDatabase, jobs: Jobs, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PGDATABASE"}}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "graphile_py", *args, "-c", db.dsn, "-s", db.schema],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totals"]["total"] == 5
    listed = run("jobs", "list", "--state", "failed", "--json")
    assert [job["id"] for job in json.loads(listed.stdout)] == [jobs.failed]
    missing = run("jobs", "show", "987654")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().endswith("Error: no job with id 987654")
