"""Latency from add_job to task start with a big backlog in the jobs table (issue 14, item 2).

Usage: .venv/bin/python bench/backlog.py [--sizes 0 10000 100000 1000000] [--samples 100]
                                          [--cases A B] [--dsn URL]

Two backlogs, at each size, for Node graphile-worker 0.18.0 and graphile-py:

  A  ``size`` jobs of the workers' own task ``noop``, due in a year (scheduled jobs),
     for graphile-py without and with the per-task index, and for Node;
  B  ``size`` due jobs of a task no worker serves (``other``: a Node backlog as a Python
     pool sees it), for graphile-py without and with graphile-py's opt-in per-task index
     (``graphile-py task-index install``), and for Node without and with it (Node's
     claim does not ask for it, but PostgreSQL's planner may pick it for Node too).

The latency is bench.py's own measurement (``Bench.latency``: an idle worker of
concurrency 1, the harness reads CLOCK_MONOTONIC and calls add_job, the task reads it as
its first line), on a fresh database cloned from a template holding the backlog (rows
written straight into ``_private_jobs`` with generate_series, then VACUUM ANALYZE). Then
"due on time": a job added with ``run_at`` 2 s ahead, and how late after that its task
started (at worst a poll interval, 2 s in both runtimes by default).

Writes bench/results/backlog.md and bench/results/backlog.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# Run as a script, this directory is on sys.path: bench.py's harness is imported, not copied.
from bench import RESULTS, SCHEMA, Bench, log, parse_args, percentile
from graphile_py import add_job, migrate
from graphile_py.db.task_index import install_task_index

#: (case, runtime, per-task index installed) in the order they run at each size.
VARIANTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "A": (("py", False), ("py", True), ("node", False)),
    "B": (("py", False), ("py", True), ("node", False), ("node", True)),
}
DUE_AHEAD = timedelta(seconds=2)
#: Both runtimes' default poll interval: a due job is found by then at worst.
POLL_INTERVAL_MS = 2000


@dataclass
class Row:
    """One measured scenario."""

    case: str
    size: int
    runtime: str
    index: bool
    p50_ms: float
    p95_ms: float
    #: How late after its run_at a job scheduled 2 s ahead started, per try (ms).
    due_late_ms: list[float]


def fill(dsn: str, case: str, size: int, index: bool) -> None:
    """Migrate, write the backlog straight into the table, analyse, maybe add the index."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema=SCHEMA)
        schema = sql.Identifier(SCHEMA)
        task = "noop" if case == "A" else "other"
        run_at = "now() + interval '365 days'" if case == "A" else "now() - interval '1 hour'"
        conn.execute(
            sql.SQL("insert into {}._private_tasks (identifier) values (%s)").format(schema),
            (task,),
        )
        if size:
            conn.execute(
                sql.SQL(
                    "insert into {s}._private_jobs (task_id, payload, run_at)"
                    " select (select id from {s}._private_tasks where identifier = %s),"
                    " json_build_object('i', i), " + run_at + " from generate_series(1, %s) as i"
                ).format(s=schema),
                (task, size),
            )
        conn.execute(sql.SQL("vacuum analyze {}._private_jobs").format(schema))
        if index:
            install_task_index(conn, SCHEMA)


def due_lateness(bench: Bench, runtime: str, key: int, tries: int) -> list[float]:
    """Milliseconds from run_at (2 s after add_job) to task start, ``tries`` times."""
    late: list[float] = []
    with bench.db.scenario(key) as dsn:
        worker = bench.spawn_worker(runtime, dsn, concurrency=1, batched=False)
        try:
            worker.wait_for("READY", 120)
            with psycopg.connect(dsn, autocommit=True) as conn:
                for index in range(tries):
                    before = time.monotonic_ns()
                    run_at = datetime.now(UTC) + DUE_AHEAD
                    job = add_job(conn, "latency", {"due": index}, run_at=run_at)
                    _, job_id, ran_at = worker.wait_for("RAN", 30).split()
                    if int(job_id) != job.id:
                        raise RuntimeError(f"due: ran job {job_id}, expected {job.id}")
                    due_ns = before + DUE_AHEAD.total_seconds() * 1e9
                    late.append((int(ran_at) - due_ns) / 1e6)
        except BaseException:
            worker.kill()
            raise
        bench.finish(worker)
    return late


def run(args: argparse.Namespace) -> list[Row]:
    bench_args = parse_args(["--dsn", args.dsn] if args.dsn else [])
    bench_args.latency_warmup = args.warmup
    bench = Bench(bench_args)
    rows: list[Row] = []
    try:
        for size in args.sizes:
            for case in args.cases:
                for runtime, index in VARIANTS[case]:
                    started = time.perf_counter()
                    name = bench.db.extra_template(
                        f"{case.lower()}{size}{'i' if index else ''}",
                        functools.partial(fill, case=case, size=size, index=index),
                    )
                    # Bench.latency clones the template it keeps for a "waiting" count:
                    # give it ours under a key of its own.
                    key = len(bench.db.waiting_templates) + 1_000_000_000
                    bench.db.waiting_templates[key] = name
                    log(
                        f"{case} {size:,} {runtime}{' +index' if index else ''}: template in"
                        f" {time.perf_counter() - started:.1f}s"
                    )
                    lats = bench.latency(runtime, samples=args.samples, waiting=key)
                    late = due_lateness(bench, runtime, key, args.due_tries)
                    row = Row(
                        case,
                        size,
                        runtime,
                        index,
                        percentile(lats, 50),
                        percentile(lats, 95),
                        late,
                    )
                    log(
                        f"  p50 {row.p50_ms:.2f} ms p95 {row.p95_ms:.2f} ms, due late"
                        f" {', '.join(f'{ms:.0f}' for ms in late)} ms"
                    )
                    rows.append(row)
                    bench.db.drop(name)
    finally:
        bench.close()
    return rows


def report(rows: Sequence[Row], args: argparse.Namespace, load: tuple[float, ...]) -> str:
    """The markdown table: each row's p50 also as a ratio of its variant's empty table."""
    empty = {(r.case, r.runtime, r.index): r.p50_ms for r in rows if r.size == 0}
    lines = [
        "# Latency with a backlog (bench/backlog.py)",
        "",
        f"{args.samples} latency jobs per scenario after {args.warmup} warm-up ones, idle"
        f" worker of concurrency 1; {args.due_tries} jobs scheduled 2 s ahead for the"
        " due-on-time column. Load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.2f}" for x in load)
        + f"; {os.cpu_count()} CPUs shared with PostgreSQL.",
        "",
        "A: jobs of the workers' own task, due in a year. B: due jobs of a task no worker"
        " serves. *index*: graphile-py's opt-in graphile_py_jobs_task_index"
        " (`graphile-py task-index install`).",
        "",
        "| case | backlog | runtime | p50 ms | p95 ms | p50 / empty | due late ms (max) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = {"py": "graphile-py", "node": "Node 0.18"}[r.runtime] + (
            " + index" if r.index else ""
        )
        base = empty.get((r.case, r.runtime, r.index))
        ratio = f"{r.p50_ms / base:.2f}x" if base else "n/a"
        lines.append(
            f"| {r.case} | {r.size:,} | {name} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {ratio}"
            f" | {max(r.due_late_ms):.0f} |"
        )
    worst = max((late for r in rows for late in r.due_late_ms), default=0.0)
    verdict = "on time" if worst <= POLL_INTERVAL_MS else "LATE (more than a poll interval)"
    lines += [
        "",
        f"Due on time: the latest scheduled job started {worst:.0f} ms after its run_at:"
        f" {verdict} (the poll interval is {POLL_INTERVAL_MS} ms in both runtimes).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000, 1_000_000])
    parser.add_argument("--cases", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--samples", type=int, default=100, help="latency jobs per scenario")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up latency jobs")
    parser.add_argument("--due-tries", type=int, default=3, help="jobs scheduled 2 s ahead")
    parser.add_argument("--dsn", default=None, help="as bench.py's --dsn")
    parser.add_argument("--out", type=Path, default=RESULTS / "backlog")
    args = parser.parse_args(argv)
    rows = run(args)
    load = os.getloadavg()
    text = report(rows, args, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text, "utf-8")
    data: dict[str, Any] = {
        "samples": args.samples,
        "load_average": load,
        "rows": [asdict(row) for row in rows],
    }
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
