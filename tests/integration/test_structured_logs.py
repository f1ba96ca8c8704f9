"""``graphile-py --log-format json``: every line on stderr is one JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from graphile_py import add_job
from tests.support import TestDatabase
from tests.support.workers import wait_for

TASKS = """
from graphile_py import TaskRegistry

registry = TaskRegistry()

@registry.task
def log_ok(payload, helpers):
    helpers.logger.info("working on %s", payload["n"])

@registry.task
def log_bad(payload, helpers):
    raise ValueError("bad \\"quoted\\" news")
"""


def _command(db: TestDatabase, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "graphile_py",
        "--log-format",
        "json",
        *args[:2],  # --log-level LEVEL
        "worker",
        "-c",
        db.dsn,
        "-s",
        db.schema,
        "--tasks",
        "json_log_tasks:registry",
        *args[2:],
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PGDATABASE"}}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _parse(stderr: str) -> list[dict[str, Any]]:
    lines = stderr.splitlines()
    assert lines, "the worker logged nothing"
    records = []
    for line in lines:
        record = json.loads(line)  # every line, not just most
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def _job_line(records: list[dict[str, Any]], job_id: int) -> dict[str, Any]:
    [line] = [
        r
        for r in records
        if r.get("job_id") == job_id and r["message"].startswith(("Completed task", "Failed task"))
    ]
    return line


def test_a_run_once_worker_logs_only_json_and_job_lines_carry_their_fields(
    db: TestDatabase, tmp_path: Path
) -> None:
    (tmp_path / "json_log_tasks.py").write_text(TASKS)
    with db.connect() as conn:
        ok = add_job(conn, "log_ok", {"n": 1}, queue_name="json-q", schema=db.schema)
        bad = add_job(conn, "log_bad", max_attempts=1, schema=db.schema)
        retried = add_job(conn, "log_bad", max_attempts=3, schema=db.schema)
    result = subprocess.run(
        _command(db, "--log-level", "debug", "--once", "--jobs", "2"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = _parse(result.stderr)
    assert any(r["level"] == "debug" for r in records)

    done = _job_line(records, ok.id)
    assert done["level"] == "info"
    assert done["logger"] == "graphile_py.worker"
    assert done["task"] == "log_ok"
    assert done["queue"] == "json-q"
    assert (done["attempt"], done["max_attempts"]) == (1, 25)
    assert isinstance(done["duration_ms"], float) and done["duration_ms"] >= 0
    assert done["worker_id"].startswith("worker-")
    assert "error" not in done

    failed = _job_line(records, bad.id)
    assert failed["level"] == "error"
    assert (failed["task"], failed["attempt"], failed["max_attempts"]) == ("log_bad", 1, 1)
    assert failed["error"] == 'bad "quoted" news'
    assert "queue" not in failed  # no named queue
    assert "ValueError" in failed["traceback"]
    assert "failed permanently" in failed["message"]

    will_retry = _job_line(records, retried.id)
    assert (will_retry["attempt"], will_retry["max_attempts"]) == (1, 3)
    assert "will retry" in will_retry["message"]

    # The task's own helpers.logger lines carry the job's identity too.
    [own] = [r for r in records if r["message"] == "working on 1"]
    assert (own["job_id"], own["task"]) == (ok.id, "log_ok")


def test_a_continuous_worker_with_metrics_logs_only_json_up_to_its_exit(
    db: TestDatabase, tmp_path: Path
) -> None:
    (tmp_path / "json_log_tasks.py").write_text(TASKS)
    process = subprocess.Popen(
        _command(db, "--log-level", "info", "--metrics-port", "0"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any("Serving metrics" in line for line in lines), timeout=60)
        with db.connect() as conn:
            job = add_job(conn, "log_ok", {"n": 2}, schema=db.schema)
        wait_for(lambda: any('"Completed task' in line for line in lines), timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        reader.join(10)
        process.stderr.close()
    assert code == 0, "".join(lines)
    records = _parse("".join(lines))
    assert _job_line(records, job.id)["task"] == "log_ok"
    assert records[-1]["message"].startswith("Worker pool")  # ... stopped
