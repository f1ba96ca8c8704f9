"""A real PgBouncer (Debian's package) in transaction mode, in front of a PostgreSQL server.

Its one database entry is the ``*`` fallback, so every database of the server (each
test's own) is reachable through it by name. Authentication is ``any``: the server is
reached as its ``postgres`` user, as the tests reach it directly (trust). PgBouncer
refuses to run as root, so as root it runs as the ``postgres`` user.

Server-side prepared statements are not supported in transaction mode by this PgBouncer
(1.18; later versions can track them with max_prepared_statements, which is 0 here too),
so a client that prepares them fails as soon as it lands on another server connection.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.support import unavailable

__all__ = ["PgBouncer", "free_port", "in_front_of_the_test_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One PgBouncer process; :meth:`start` it, :meth:`dsn` a database through it."""

    def __init__(
        self,
        *,
        server_port: int = 5432,
        server_password: str | None = None,
        pool_mode: str = "transaction",
        default_pool_size: int = 20,
        user: str = "postgres",
        ignore_startup_parameters: str = "options",
    ) -> None:
        binary = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
        )
        if binary is None:
            unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
        self.binary = str(binary)
        self.server_port = server_port
        self.user = user
        self.port = free_port()
        # Not under pytest's tmp_path: as root PgBouncer runs as another user, who must be
        # able to reach the directory.
        self.directory = Path(tempfile.mkdtemp(prefix="gpy-pgbouncer-"))
        self.config = self.directory / "pgbouncer.ini"
        self.log = self.directory / "pgbouncer.log"
        self.pidfile = self.directory / "pgbouncer.pid"
        self.config.touch(mode=0o600)  # it may hold the server's password
        self.config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port} user={user}"
            + (f" password={server_password}" if server_password else "")
            + "\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {default_pool_size}\n"
            "max_client_conn = 1000\n"
            f"logfile = {self.log}\n"
            f"pidfile = {self.pidfile}\n"
            # Fail fast (not after 15 s) when the server is back after a restart.
            "server_login_retry = 1\n"
            "query_wait_timeout = 60\n"
            # The metrics sampler bounds its statements with the startup parameter
            # "options", which PgBouncer refuses unless told to ignore it.
            f"ignore_startup_parameters = {ignore_startup_parameters}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        command = [self.binary, str(self.config)]
        if os.geteuid() == 0:
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            os.chown(self.config, account.pw_uid, account.pw_gid)
            command = ["runuser", "-u", self.user, "--", *command]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return self
            except psycopg.OperationalError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PgBouncer did not start ({exc}); its log:\n{self.log_text()}"
                    ) from exc
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        """A connection string for ``database`` through PgBouncer."""
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=database, user=self.user)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            pid = self._pid() or process.pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # immediate shutdown
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                process.wait(20)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None


def in_front_of_the_test_server(**settings: Any) -> PgBouncer:
    """A started PgBouncer in front of the tests' PostgreSQL (``settings``: PgBouncer's)."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.support import admin_dsn

    server = conninfo_to_dict(admin_dsn())
    return PgBouncer(
        server_port=int(str(server.get("port") or 5432)),
        server_password=str(server["password"]) if server.get("password") else None,
        **settings,
    ).start()
