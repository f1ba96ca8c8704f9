"""One timed drain, whatever the system: workers ready, N jobs committed, time until none
is left, the server's cost meanwhile, then the exactly-once check of the ids the workers
wrote at exit. bench.py (graphile-py, Node, their CLIs) and peers/ (PgQueuer,
procrastinate) call :func:`timed_drain` with their own ways to add and to count jobs."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from server_cost import EXCLUDED_APP_PREFIX, ServerCost


class Worker(Protocol):
    """What a drain needs of a worker process (bench.Proc)."""

    ids_file: Path | None

    def vm_hwm_mb(self) -> float: ...

    def kill(self) -> None: ...


@dataclasses.dataclass
class DrainResult:
    seconds: float
    rate: float
    rss_mb: float
    ran: int
    exactly_once: bool
    problem: str = ""
    #: PostgreSQL server CPU per 1,000 jobs (ms) and WAL per job (bytes): see server_cost.
    cpu_ms_per_1000: float = math.nan
    wal_per_job: float = math.nan
    #: Jobs/s of the bulk enqueue call itself, where a client made it (the peers).
    enqueue_rate: float = math.nan
    #: Server backends that exited during the drain (their CPU is not in cpu_ms_per_1000).
    lost_backends: int = 0


@dataclasses.dataclass
class Started:
    """The N jobs are visible: their id range and the perf_counter() of the commit."""

    low: int
    high: int
    at: float
    enqueue_seconds: float = math.nan


def wait_gone(
    conn: psycopg.Connection[Any],
    left: sql.Composable | str,
    params: Sequence[Any],
    *,
    started: float,
    n: int,
    poll_s: float,
) -> float:
    """Seconds from ``started`` until ``left`` (a query of one boolean) says none is left."""
    timeout = max(300.0, n / 100)
    query: Any = left
    while True:
        row = conn.execute(query, params).fetchone()
        now = time.perf_counter()
        if row is not None and not row[0]:
            return now - started
        if now - started > timeout:
            raise RuntimeError(f"drain did not finish in {timeout:.0f}s")
        time.sleep(poll_s)


def timed_drain(
    dsn: str,
    workers: Sequence[Worker],
    *,
    wait_ready: Callable[[psycopg.Connection[Any]], None],
    add_jobs: Callable[[psycopg.Connection[Any]], Started],
    left: sql.Composable | str,
    stop: Callable[[Worker], None],
    n: int,
    poll_s: float,
) -> DrainResult:
    """Run one drain on workers already spawned; ``left`` takes (low, high) parameters."""
    # The harness's connection adds the jobs (graphile-py, Node) and polls: its backend is
    # not part of the drain's server cost.
    with psycopg.connect(dsn, autocommit=True, application_name=EXCLUDED_APP_PREFIX) as conn:
        try:
            wait_ready(conn)
            cost = ServerCost(conn)
            cost.mark_ready()
            started = add_jobs(conn)
            cost.mark_started()
            seconds = wait_gone(
                conn, left, (started.low, started.high), started=started.at, n=n, poll_s=poll_s
            )
            spent = cost.finish()
            rss = max(worker.vm_hwm_mb() for worker in workers)
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
    for worker in workers:
        stop(worker)
    counts: Counter[int] = Counter()
    for worker in workers:
        assert worker.ids_file is not None
        text = worker.ids_file.read_text().strip() if worker.ids_file.exists() else ""
        if text:
            counts.update(int(x) for x in text.split())
    return DrainResult(
        seconds=seconds,
        rate=n / seconds,
        rss_mb=rss,
        ran=sum(counts.values()),
        cpu_ms_per_1000=spent.cpu_ms_per_1000(n),
        wal_per_job=spent.wal_per_job(n),
        enqueue_rate=n / started.enqueue_seconds,
        lost_backends=spent.lost,
        **exactly_once(counts, started.low, started.high),
    )


def exactly_once(counts: Counter[int], low: int, high: int) -> dict[str, Any]:
    expected = high - low + 1
    doubles = sorted(job for job, count in counts.items() if count > 1)
    foreign = sorted(job for job in counts if not low <= job <= high)
    missing = expected - len([job for job in counts if low <= job <= high])
    ok = not doubles and not foreign and missing == 0
    problem = ""
    if not ok:
        problem = (
            f"{len(doubles)} ran more than once (e.g. {doubles[:5]}), {missing} never"
            f" ran, {len(foreign)} unexpected ids"
        )
    return {"exactly_once": ok, "problem": problem}
