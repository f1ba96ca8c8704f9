"""The image's command line, run outside a container (no container engine runs in CI).

The Dockerfile's final stage is read (ENTRYPOINT + CMD, ENV, WORKDIR and the COPY of
deploy/app/ to it) and the same command runs with the same environment against a
throwaway database, from deploy/app/ standing in for /app: it must start, serve /healthz
and /readyz on the metrics port, run a job of the image's task map, log JSON, and exit 0
on SIGTERM within the shutdown timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from psycopg import sql

from graphile_py import add_job
from tests.deployment.deploy_files import REPO_ROOT, final_stage
from tests.reliability.helpers import cli_env
from tests.support import TestDatabase


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_image_command_starts_serves_probes_runs_jobs_and_stops_on_sigterm(
    db: TestDatabase, tmp_path: Path
) -> None:
    stage = final_stage()
    sources = {dest.rstrip("/"): src for src, dest in stage.copies}
    assert sources.get(stage.workdir) == "deploy/app/", stage.copies
    app_dir = REPO_ROOT / "deploy" / "app"

    env = cli_env(**stage.env)
    # /app inside the image is deploy/app/ here; graphile-py itself is this checkout.
    env["PYTHONPATH"] = (
        os.pathsep.join(
            str(app_dir) if part == stage.workdir else part
            for part in stage.env["PYTHONPATH"].split(os.pathsep)
        )
        + os.pathsep
        + str(REPO_ROOT)
    )
    env["DATABASE_URL"] = db.dsn
    env["GRAPHILE_WORKER_SCHEMA"] = db.schema
    # The same settings but loopback and a free port: tests share this machine.
    port = _free_port()
    env["GRAPHILE_PY_METRICS_PORT"] = str(port)
    env["GRAPHILE_PY_METRICS_HOST"] = "127.0.0.1"
    command = [*stage.entrypoint, *stage.cmd]
    assert command[0] == "graphile-py"
    command[0] = str(Path(sys.executable).parent / "graphile-py")

    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _get(base + "/healthz") == 200 and _get(base + "/readyz") == 200:
                break
            time.sleep(0.2)
        assert proc.poll() is None, log_path.read_text()
        assert _get(base + "/healthz") == 200, log_path.read_text()
        assert _get(base + "/readyz") == 200, log_path.read_text()

        with psycopg.connect(db.dsn, autocommit=True) as conn:
            job = add_job(conn, "hello", {"name": "entrypoint"}, schema=db.schema)
            remaining = sql.SQL("select count(*) from {}._private_jobs where id = %s").format(
                sql.Identifier(db.schema)
            )
            deadline = time.monotonic() + 20
            while conn.execute(remaining, (job.id,)).fetchone() != (0,):
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(float(stage.env["GRAPHILE_PY_SHUTDOWN_TIMEOUT"]) + 15)
        assert code == 0, log_path.read_text()
        assert time.monotonic() - started < 10  # idle: no job to wait for
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # GRAPHILE_PY_LOG_FORMAT=json: every line
    assert any("Hello, entrypoint" in json.dumps(r) for r in records), lines
