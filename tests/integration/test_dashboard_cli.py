"""``graphile-py dashboard`` as a real program: serving, modes, auth, Ctrl-C, and errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import TestDatabase
from tests.support.workers import wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "PGDATABASE"} and not k.startswith("GRAPHILE_PY_DASHBOARD")
    }
    return {**env, **extra}


def _command(db: TestDatabase, *args: str) -> list[str]:
    return [sys.executable, "-m", "graphile_py", "dashboard", "-c", db.dsn, "-s", db.schema, *args]


@contextmanager
def dashboard(
    db: TestDatabase, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The dashboard command running on a free port, and its base URL (on 127.0.0.1)."""
    port = _free_port()
    process = subprocess.Popen(
        _command(db, "--port", str(port), *args),
        cwd=cwd,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url) or process.poll() is not None, timeout=30)
        assert process.poll() is None, process.communicate()[0]
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=1)
    except httpx.TransportError:
        return False
    return True


def _interrupt(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    return process.returncode, output


def test_serves_on_loopback_with_actions_and_stops_on_ctrl_c(
    db: TestDatabase, tmp_path: Path
) -> None:
    with dashboard(db, cwd=tmp_path) as (process, url):
        info = httpx.get(url + "/api/v1/info").json()
        assert info["allow_actions"] is True and info["schema_name"] == db.schema
        added = httpx.post(url + "/api/v1/jobs", json={"task": "from_cli"})
        assert added.status_code == 201
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        rebound = httpx.get(url + "/api/v1/info", headers={"Host": "evil.example"})
        assert rebound.status_code == 400  # loopback: other host names are refused
        code, output = _interrupt(process)
    assert code == 0, output
    assert f"dashboard on {url}/ (actions allowed)" in output
    assert "Traceback" not in output


def test_a_non_loopback_bind_is_read_only_unless_told(db: TestDatabase, tmp_path: Path) -> None:
    with dashboard(db, "--host", "0.0.0.0", cwd=tmp_path) as (process, url):
        assert httpx.get(url + "/api/v1/info").json()["allow_actions"] is False
        refused = httpx.post(url + "/api/v1/jobs", json={"task": "t"})
        assert refused.status_code == 403 and refused.json()["error"] == "read_only"
        code, output = _interrupt(process)
    assert code == 0 and "(read-only)" in output

    with dashboard(db, "--host", "0.0.0.0", "--allow-actions", cwd=tmp_path) as (process, url):
        assert httpx.post(url + "/api/v1/jobs", json={"task": "t"}).status_code == 201
        code, output = _interrupt(process)
    assert "without --token or --basic-auth" in output


def test_token_and_basic_auth_from_the_environment(db: TestDatabase, tmp_path: Path) -> None:
    env = _env(
        GRAPHILE_PY_DASHBOARD_TOKEN="env-token",
        GRAPHILE_PY_DASHBOARD_BASIC_AUTH="ops:secret",
    )
    with dashboard(db, cwd=tmp_path, env=env) as (process, url):
        assert httpx.get(url + "/api/v1/stats").status_code == 401
        bearer = {"Authorization": "Bearer env-token"}
        assert httpx.get(url + "/api/v1/stats", headers=bearer).status_code == 200
        assert httpx.get(url + "/api/v1/stats", auth=("ops", "secret")).status_code == 200
        _interrupt(process)


def test_a_database_without_the_schema(empty_db: TestDatabase, tmp_path: Path) -> None:
    result = subprocess.run(
        _command(empty_db, "--port", str(_free_port())),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result
    assert "is not installed in this database" in result.stderr
    assert "graphile-py migrate" in result.stderr


def test_bad_options_fail_with_a_message(db: TestDatabase, tmp_path: Path) -> None:
    for args, message in [
        (["--basic-auth", "no-colon"], "USER:PASSWORD"),
        (["--token", ""], "token must not be empty"),
    ]:
        result = subprocess.run(
            _command(db, "--port", str(_free_port()), *args),
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result
        assert message in result.stderr and "Traceback" not in result.stderr


WITHOUT_EXTRA = """
import sys
sys.modules["fastapi"] = None  # as if the 'dashboard' extra were not installed
sys.modules["uvicorn"] = None
import graphile_py
import graphile_py.cli
from graphile_py.cli import main
main(["dashboard", "-c", "postgresql://nowhere.invalid/db"])
"""


def test_without_the_extra_it_says_which_extra_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result
    assert "pip install 'graphile-py[dashboard]'" in result.stderr
    assert "Traceback" not in result.stderr
