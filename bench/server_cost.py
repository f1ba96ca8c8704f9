"""The database's cost of a drain: PostgreSQL server CPU and WAL, read around the drain.

Server CPU is the time on CPU of the server processes that served the drain: the
scheduler's own count in nanoseconds (``/proc/<pid>/schedstat``, user and system time
together) where the kernel has it, else utime + stime from ``/proc/<pid>/stat`` (clock
ticks: 10 ms steps, coarse for a batched drain of a few thousand jobs). The processes
are the backends connected to the scenario's own database (``pg_stat_activity.datname``):
client backends and parallel workers. The harness's own backend (it adds the jobs and
polls) and backends whose ``application_name`` starts with :data:`EXCLUDED_APP_PREFIX`
(the peers' enqueue clients) are left out. A backend present at the first snapshot
counts from its value then; one that appears later counts from 0, so its connection
start-up is in. A backend that exits before the second snapshot is lost (none of the
measured workers disconnects mid-drain). Autovacuum, the WAL writer, the checkpointer and
the other auxiliary processes are not counted: on a shared server they also work for
other databases.

WAL is ``pg_current_wal_lsn()`` after the jobs are committed and again when the drain is
found complete: it includes WAL that other databases on the same server wrote meanwhile
(exact only on a quiet server).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import psycopg

#: application_name prefix of connections that are not the measured system's (excluded).
EXCLUDED_APP_PREFIX = "gpbench-harness"

_BACKENDS = (
    "select pid from pg_stat_activity where datname = current_database()"
    " and backend_type in ('client backend', 'parallel worker')"
    " and pid <> pg_backend_pid()"
    " and coalesce(application_name, '') not like %s"
)


def _cpu_ns(pid: int, hz: int) -> int | None:
    """Time on CPU of a local postgres process in ns, or None if it is not readable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name may hold spaces: the fields after it start past the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    if not fields or not text[text.index("(") + 1 :].startswith("postgres"):
        return None
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        # utime + stime: fields 14 and 15 of proc(5).
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // hz


@dataclass
class Cost:
    """What one drain cost the server."""

    cpu_seconds: float
    wal_bytes: float
    backends: int
    #: Backends present when the workers were ready but gone at the end (their CPU is lost).
    lost: int = 0

    def cpu_ms_per_1000(self, jobs: int) -> float:
        return self.cpu_seconds * 1000 / jobs * 1000 if jobs else math.nan

    def wal_per_job(self, jobs: int) -> float:
        return self.wal_bytes / jobs if jobs else math.nan


class ServerCost:
    """Snapshots of the scenario database's backends, taken on the harness's connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start: dict[int, int] = {}
        self.lsn: str | None = None
        # Backends that are not local processes (a remote server): CPU is not measured.
        self.local = True

    def _snapshot(self) -> dict[int, int]:
        pids = [
            int(row[0])
            for row in self.conn.execute(_BACKENDS, (EXCLUDED_APP_PREFIX + "%",)).fetchall()
        ]
        ticks: dict[int, int] = {}
        for pid in pids:
            value = _cpu_ns(pid, self.hz)
            if value is None:
                # Gone in between, or not a process of this machine.
                self.local = self.local and os.path.exists(f"/proc/{pid}")
                continue
            ticks[pid] = value
        return ticks

    def mark_ready(self) -> None:
        """The workers are ready: the backends' CPU counts from here."""
        self.start = self._snapshot()

    def mark_started(self) -> None:
        """The jobs are committed: WAL counts from here."""
        row = self.conn.execute("select pg_current_wal_lsn()::text").fetchone()
        self.lsn = str(row[0]) if row else None

    def finish(self) -> Cost:
        """The drain is complete (the workers have not stopped yet)."""
        end = self._snapshot()
        ticks = sum(value - self.start.get(pid, 0) for pid, value in end.items())
        wal = math.nan
        if self.lsn is not None:
            row = self.conn.execute(
                "select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (self.lsn,)
            ).fetchone()
            wal = float(row[0]) if row else math.nan
        cpu = ticks / 1e9 if self.local and end else math.nan
        lost = len(self.start.keys() - end.keys())
        return Cost(cpu_seconds=cpu, wal_bytes=wal, backends=len(end), lost=lost)
