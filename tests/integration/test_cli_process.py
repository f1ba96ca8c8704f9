"""The real ``graphile-py`` program in a subprocess: migrate, --once, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from psycopg import sql

from graphile_py import add_job
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, wait_for

TASKS = """
import time
from pathlib import Path
from graphile_py import TaskRegistry

registry = TaskRegistry()
LOG = Path(__file__).with_name("ran.log")

@registry.task
def note(payload, helpers):
    with LOG.open("a") as log:
        log.write(f"{payload['n']}\\n")

@registry.task
def stuck(payload, helpers):
    with LOG.open("a") as log:
        log.write("stuck started\\n")
    time.sleep(120)
"""


def _cli(*args: str, cwd: Path, **popen: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PGDATABASE"}}
    return subprocess.Popen(
        [sys.executable, "-m", "graphile_py", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def _finish(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_migrate_then_run_once(empty_db: TestDatabase, tmp_path: Path) -> None:
    (tmp_path / "cli_tasks.py").write_text(TASKS)
    code, output = _finish(_cli("migrate", "-c", empty_db.dsn, "-s", empty_db.schema, cwd=tmp_path))
    assert code == 0, output
    assert "up to date" in output
    with empty_db.connect() as conn:
        for n in range(3):
            add_job(conn, "note", {"n": n}, schema=empty_db.schema)
    code, output = _finish(
        _cli(
            "worker",
            "-c",
            empty_db.dsn,
            "-s",
            empty_db.schema,
            "--tasks",
            "cli_tasks:registry",
            "--once",
            "--jobs",
            "2",
            cwd=tmp_path,
        )
    )
    assert code == 0, output
    assert sorted((tmp_path / "ran.log").read_text().split()) == ["0", "1", "2"]
    assert "Worker connected and looking for jobs" in output
    assert jobs_rows(empty_db) == []


def test_sigterm_stops_gracefully_and_twice_forcefully(db: TestDatabase, tmp_path: Path) -> None:
    (tmp_path / "cli_tasks.py").write_text(TASKS)
    process = _cli(
        "worker",
        "-c",
        db.dsn,
        "-s",
        db.schema,
        "--tasks",
        "cli_tasks:registry",
        "--poll-interval",
        "0.2",
        cwd=tmp_path,
    )
    try:
        with db.connect() as conn:
            add_job(conn, "note", {"n": 7}, schema=db.schema)
            job = add_job(conn, "stuck", schema=db.schema, queue_name="q")
        log = tmp_path / "ran.log"
        wait_for(lambda: log.exists() and "stuck started" in log.read_text(), timeout=20)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.poll() is None  # still waiting for the running job
        process.send_signal(signal.SIGTERM)
        code, output = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, output
    assert "attempting graceful shutdown" in output and "forceful shutdown" in output
    rows = jobs_rows(db)
    assert [row["id"] for row in rows] == [job.id]
    assert rows[0]["last_error"] == "Forced worker shutdown due to SIGTERM"
    assert rows[0]["locked_by"] is None
    with db.connect() as conn:
        queue = conn.execute(
            sql.SQL("select locked_by from {}._private_job_queues").format(
                sql.Identifier(db.schema)
            )
        ).fetchall()
    assert queue == [(None,)]


def test_breaking_migration_notification_exits_57(db: TestDatabase, tmp_path: Path) -> None:
    (tmp_path / "cli_tasks.py").write_text(TASKS)
    process = _cli(
        "worker", "-c", db.dsn, "-s", db.schema, "--tasks", "cli_tasks:registry", cwd=tmp_path
    )
    try:
        wait_for(lambda: _listening(db), timeout=20)
        with db.connect() as conn:
            conn.execute(
                "select pg_notify('worker:migrate', '{\"migrationNumber\":30,\"breaking\":true}')"
            )
        code, output = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 57, output
    assert "breaking migration" in output


def _listening(db: TestDatabase) -> bool:
    with db.connect() as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and query ilike 'LISTEN%'"
        ).fetchone()
    return bool(row and row[0])


def test_worker_schedules_a_crontab_and_refuses_a_bad_one(db: TestDatabase, tmp_path: Path) -> None:
    (tmp_path / "cli_tasks.py").write_text(TASKS)
    (tmp_path / "crontab").write_text(
        "# every minute, with 5 minutes of backfill\n* * * * * note ?fill=5m {n: 1}\n"
    )
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_known_crontabs (identifier, known_since, last_execution)"
                " values ('note', now() - interval '1 day', now() - interval '10 minutes')"
            ).format(sql.Identifier(db.schema))
        )
    process = _cli(
        "worker", "-c", db.dsn, "-s", db.schema, "--tasks", "cli_tasks:registry", cwd=tmp_path
    )
    try:
        log = tmp_path / "ran.log"
        wait_for(lambda: log.exists() and len(log.read_text().split()) >= 5, timeout=30)
        process.send_signal(signal.SIGTERM)
        code, output = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, output
    assert log.read_text().split()[:5] == ["1"] * 5  # the backfilled minutes ran

    (tmp_path / "crontab").write_text("* * * * note\n")
    code, output = _finish(
        _cli("worker", "-c", db.dsn, "-s", db.schema, "--tasks", "cli_tasks:registry", cwd=tmp_path)
    )
    assert code == 1
    assert "line" in output and "crontab" in output and "Traceback" not in output
