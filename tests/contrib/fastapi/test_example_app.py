"""examples/fastapi_app under a real uvicorn, against the real PostgreSQL.

Enqueue over HTTP in the request's SQLAlchemy transaction; the job runs on the worker
pool inside the app; a request that fails after enqueueing leaves neither its row nor
its job; SIGTERM stops the app cleanly: a short job finishes, a long one is failed (to
be retried) at the shutdown timeout rather than left locked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support import TestDatabase

ROOT = Path(__file__).resolve().parents[3]


def url_of(db: TestDatabase) -> str:
    """``db`` as a postgresql:// URL (the app hands it to SQLAlchemy as well)."""
    params = conninfo_to_dict(db.dsn)
    user = quote(str(params.get("user") or "postgres"))
    password = f":{quote(str(params['password']))}" if params.get("password") else ""
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{params['dbname']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class App:
    def __init__(self, process: subprocess.Popen[str], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log
        self.http = httpx.Client(base_url=base, timeout=10)

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def app(empty_db: TestDatabase, tmp_path: Path) -> Iterator[App]:
    """The example app on a free port, on a database with nothing in it (it migrates)."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": url_of(empty_db),
        "GRAPHILE_WORKER_SCHEMA": empty_db.schema,
        "SHUTDOWN_TIMEOUT": "3",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_app.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = App(process, f"http://127.0.0.1:{port}", log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the app exited at start-up:\n{running.output()}")
        try:
            return running.http.get("/health").json() == {"worker_running": True}
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 30, "the app to start")
        yield running
    finally:
        running.http.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def job_rows(db: TestDatabase) -> list[tuple[Any, ...]]:
    query = sql.SQL(
        "select tasks.identifier, jobs.payload, jobs.attempts, jobs.locked_at, jobs.last_error"
        " from {s}._private_jobs as jobs join {s}._private_tasks as tasks"
        " on tasks.id = jobs.task_id order by jobs.id"
    ).format(s=sql.Identifier(db.schema))
    with db.connect() as conn:
        return conn.execute(query).fetchall()


def test_enqueue_over_http_runs_in_the_app_and_a_failed_request_leaves_nothing(
    app: App, empty_db: TestDatabase
) -> None:
    created = app.http.post("/signups", json={"email": "ada@example.com"})
    assert created.status_code == 201, created.text
    assert isinstance(created.json()["job_id"], int)
    wait_for(
        lambda: app.http.get("/signups/ada@example.com").json()["welcomed"],
        15,
        "the in-app worker to run send_welcome",
    )
    # The job is done and gone.
    assert job_rows(empty_db) == []

    failed = app.http.post(
        "/signups", json={"email": "bob@example.com", "fail_after_enqueue": True}
    )
    assert failed.status_code == 500
    assert app.http.get("/signups/bob@example.com").status_code == 404
    time.sleep(0.3)  # had the job been committed, the worker would have it by now
    assert job_rows(empty_db) == []
    assert "Worker connected and looking for jobs" in app.output()


def test_sigterm_finishes_short_jobs_and_releases_long_ones(
    app: App, empty_db: TestDatabase
) -> None:
    for label, seconds in (("short", 1.0), ("long", 60.0)):
        response = app.http.post("/reports", json={"label": label, "seconds": seconds})
        assert response.status_code == 202, response.text
    wait_for(
        lambda: sum(row[3] is not None for row in job_rows(empty_db)) == 2,
        15,
        "both jobs to be running",
    )
    started = time.monotonic()
    app.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once its graceful shutdown is done (older ones exit 0).
    assert app.process.wait(timeout=20) in (0, -signal.SIGTERM), app.output()
    took = time.monotonic() - started
    # shutdown_timeout is 3 s: the long job is failed then, not waited for.
    assert took < 12, f"shutdown took {took:.1f}s:\n{app.output()}"
    with empty_db.connect() as conn:
        assert conn.execute("select label from reports").fetchall() == [("short",)]
    ((identifier, payload, attempts, locked_at, last_error),) = job_rows(empty_db)
    assert (identifier, payload["label"], attempts, locked_at) == ("slow_report", "long", 1, None)
    assert last_error
    output = app.output()
    assert "Failing 1 job still running at shutdown" in output
    assert output.index("Worker pool") < output.index("Application shutdown complete")
    assert "stopped by itself" not in output and "Traceback" not in output
