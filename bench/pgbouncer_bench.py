"""``bash bench/run --pgbouncer``: graphile-py through PgBouncer in transaction mode.

Three routes for the same worker process (bench/py_worker.py, no-op tasks):

- ``direct``: the worker's connection string is the server's (the baseline), and the same
  with prepared statements off (what a pooler costs apart from the extra hop);
- ``pgbouncer + listen URL``: everything through a PgBouncer in transaction mode except
  LISTEN, which uses a direct listen URL (the recommended deployment);
- ``pgbouncer alone``: LISTEN through PgBouncer too, so the start-up check finds that
  notifications do not arrive and the worker polls every ``fallback_poll_interval``.

Drain: workers ready and idle, then N jobs committed at once; jobs/s until all are gone
(exactly-once checked from the workers' ids). The routes alternate within each repeat, so
that load from other processes on the machine falls on all of them alike; the report
gives medians and each PgBouncer route's ratio to the direct one from the same repeats.

Wake-up latency: an idle worker (concurrency 1), then add_job committed through the same
route the worker uses, time until the task's first line.

PgBouncer is Debian's package, started on a free loopback port (see
tests/pgbouncer/server.py), with a server pool (``default_pool_size``) larger than the
worker's connections, as docs/pgbouncer.md recommends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:
    from bench import Bench

ROUTES = ("direct", "direct, no prepared statements", "pgbouncer + listen URL", "pgbouncer alone")


class _Routes:
    """The worker's DSN, its listen DSN and the enqueuer's DSN for each route."""

    def __init__(self, bouncer: Any) -> None:
        self.bouncer = bouncer

    def worker(self, route: str, dsn: str) -> tuple[str, dict[str, Any]]:
        if route == "direct":
            return dsn, {}
        if route == "direct, no prepared statements":
            return dsn, {"prepared_statements": False}
        pooled = self.bouncer.dsn(str(conninfo_to_dict(dsn)["dbname"]))
        extra: dict[str, Any] = {"prepared_statements": False}
        if route == "pgbouncer + listen URL":
            extra["listen_dsn"] = dsn
        return pooled, extra

    def client(self, route: str, dsn: str) -> str:
        if route.startswith("direct"):
            return dsn
        return self.bouncer.dsn(str(conninfo_to_dict(dsn)["dbname"]))


def _drain(bench: Bench, routes: _Routes, route: str, n: int) -> tuple[float, bool]:
    from bench import _exactly_once, insert_jobs

    with bench.db.scenario() as dsn:
        worker_dsn, extra = routes.worker(route, dsn)
        worker = bench.spawn_worker(
            "py",
            worker_dsn,
            concurrency=bench.args.concurrency,
            batched=bench.args.pgbouncer_batched,
            extra=extra,
        )
        try:
            worker.wait_for("READY", 120)
            with psycopg.connect(dsn, autocommit=True) as conn:
                with conn.transaction():
                    low, high = insert_jobs(conn, n, chunk=max(n, 1))
                started = time.perf_counter()
                seconds = bench._wait_drained(conn, low, high, started, n)
        except BaseException:
            worker.kill()
            raise
        bench.finish(worker)
        assert worker.ids_file is not None
        counts: Counter[int] = Counter(int(x) for x in worker.ids_file.read_text().split())
    return n / seconds, bool(_exactly_once(counts, low, high)["exactly_once"])


def _latency(bench: Bench, routes: _Routes, route: str, samples: int) -> list[float]:
    from graphile_py import add_job

    with bench.db.scenario() as dsn:
        worker_dsn, extra = routes.worker(route, dsn)
        worker = bench.spawn_worker("py", worker_dsn, concurrency=1, batched=False, extra=extra)
        try:
            worker.wait_for("READY", 120)
            latencies: list[float] = []
            warmup = bench.args.latency_warmup
            client = routes.client(route, dsn)
            with psycopg.connect(client, autocommit=True, prepare_threshold=None) as conn:
                for index in range(samples + warmup):
                    time.sleep(bench.args.latency_gap_ms / 1000)
                    before = time.monotonic_ns()
                    job = add_job(conn, "latency", {"i": index})
                    _, job_id, ran_at = worker.wait_for("RAN", 30).split()
                    if int(job_id) != job.id:
                        raise RuntimeError(f"latency: ran job {job_id}, expected {job.id}")
                    if index >= warmup:
                        latencies.append((int(ran_at) - before) / 1e6)
        except BaseException:
            worker.kill()
            raise
        bench.finish(worker)
    return latencies


def _fmt(values: list[float], digits: int = 0) -> str:
    med = statistics.median(values)
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def run_pgbouncer(bench: Bench, args: argparse.Namespace) -> str:
    """Run the three routes' drains and latencies; the report's markdown body."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.pgbouncer.server import PgBouncer

    admin = conninfo_to_dict(args.dsn)
    bouncer = PgBouncer(
        server_port=int(str(admin.get("port") or 5432)),
        server_password=str(admin["password"]) if admin.get("password") else None,
        default_pool_size=args.max_pool_size + 10,
    ).start()
    routes = _Routes(bouncer)
    rates: dict[str, list[float]] = {route: [] for route in ROUTES}
    exact: dict[str, bool] = dict.fromkeys(ROUTES, True)
    try:
        for repeat in range(args.repeat):
            # A different order each repeat, so no route always runs first or last.
            shift = repeat % len(ROUTES)
            order = ROUTES[shift:] + ROUTES[:shift]
            for route in order:
                rate, once = _drain(bench, routes, route, args.n)
                rates[route].append(rate)
                exact[route] = exact[route] and once
                print(f"drain {route}: {rate:,.0f} jobs/s", flush=True)
        latencies = {
            route: _latency(bench, routes, route, args.latency_samples)
            for route in ROUTES
            if route != "direct, no prepared statements"
        }
    finally:
        bouncer.stop()
    direct = rates["direct"]
    lines = [
        f"Worker: 1 process, `--jobs {args.concurrency}`, `--max-pool-size"
        f" {args.max_pool_size}`, no-op tasks, "
        + (
            "batched settings (local queue 500, batched completions and failures)"
            if args.pgbouncer_batched
            else "default (unbatched) settings"
        )
        + ". PgBouncer"
        f" 1.18 (Debian), `pool_mode = transaction`, `default_pool_size ="
        f" {args.max_pool_size + 10}`. Drain of {args.n:,} jobs, {args.repeat} repeats with the"
        " routes alternating; latency: concurrency 1, a"
        f" {args.latency_gap_ms:g} ms pause before each of {args.latency_samples} add_job"
        f" calls ({args.latency_warmup} warm-up calls not counted).",
        "",
        "| route | drain (jobs/s) | vs direct, same repeats | exactly once |",
        "| --- | --- | --- | --- |",
    ]
    for route in ROUTES:
        ratios = [rate / base for rate, base in zip(rates[route], direct, strict=True)]
        lines.append(
            f"| {route} | {_fmt(rates[route])} | {statistics.median(ratios):.2f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f}) | {'yes' if exact[route] else 'NO'} |"
        )
    lines += [
        "",
        "| route | wake-up latency p50 (ms) | p95 (ms) | max (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for route, values in latencies.items():
        values.sort()
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        lines.append(
            f"| {route} | {statistics.median(values):.1f} | {p95:.1f} | {values[-1]:.1f} |"
        )
    return "\n".join(lines)
