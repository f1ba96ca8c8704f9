#!/usr/bin/env python
"""Load test: worker processes drain many jobs; no job is lost or run twice.

    python scripts/load_test.py                  # 100,000 jobs, 4 processes x concurrency 8
    python scripts/load_test.py --jobs 3000      # the size CI runs (tests/reliability)

It creates a scratch database on the server of ``--dsn`` (a role that may create
databases; default ``$TEST_DATABASE_URL``, ``$DATABASE_URL`` or the local server), starts
``--processes`` real ``graphile-py worker`` processes, enqueues the jobs while they run, waits
for the queue to drain and checks, from a table in which every task records each of its
executions (with ``clock_timestamp()`` at start and end, the pool id and the attempt):

* every attempt of every job ran exactly once (none lost, none doubled);
* jobs of one named queue never overlapped in time;
* the job table ends empty except for the permanent failures, and nothing stays locked.

The jobs: job ``n`` has task ``load_kind_{n % 5}``; odd ones go to one of 50 named queues,
even ones to none; one in 20 fails on its first attempt (then succeeds) and one in 500
always fails with ``max_attempts = 2`` (a permanent failure). Exit status 1 when a check
fails. ``tests/reliability/test_load.py`` runs the same code with a smaller N.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from graphile_py import JobSpec, add_jobs, migrate

KINDS = 5
QUEUES = 50
FAIL_ONCE_EVERY = 20  # n % 20 == 3: fails on its first attempt
PERMANENT_EVERY = 500  # n % 500 == 11: always fails, max_attempts 2
PERMANENT_MAX_ATTEMPTS = 2

TASKS_SOURCE = f'''
"""Tasks of the load test (written by scripts/load_test.py)."""

import asyncio
import os
import time

from graphile_py import TaskRegistry

registry = TaskRegistry()
PID = os.getpid()


def _start(helpers):
    job = helpers.job
    with helpers.connection() as conn:
        row = conn.execute(
            "insert into public.load_executions"
            " (job_id, n, attempt, pool_id, job_queue_id, task, os_pid)"
            " values (%s, %s, %s, %s, %s, %s, %s) returning id",
            (
                job.id,
                job.payload["n"],
                job.attempts,
                job.locked_by,
                job.job_queue_id,
                job.task_identifier,
                PID,
            ),
        ).fetchone()
    return row[0]


def _end(helpers, execution, outcome):
    with helpers.connection() as conn:
        conn.execute(
            "update public.load_executions set finished_at = clock_timestamp(), outcome = %s"
            " where id = %s",
            (outcome, execution),
        )


def _run(payload, helpers, work):
    execution = _start(helpers)
    n = payload["n"]
    fail = n % {PERMANENT_EVERY} == 11 or (
        n % {FAIL_ONCE_EVERY} == 3 and helpers.job.attempts == 1
    )
    work()
    _end(helpers, execution, "failure" if fail else "success")
    if fail:
        raise RuntimeError(f"injected failure of job {{n}} (attempt {{helpers.job.attempts}})")


@registry.task
def load_kind_0(payload, helpers):
    _run(payload, helpers, lambda: None)


@registry.task
def load_kind_1(payload, helpers):
    _run(payload, helpers, lambda: time.sleep(0.001))


@registry.task
def load_kind_2(payload, helpers):
    _run(payload, helpers, lambda: sum(range(1000)))


@registry.task
def load_kind_3(payload, helpers):
    _run(payload, helpers, lambda: helpers.get_queue_name())


@registry.task
async def load_kind_4(payload, helpers):
    await asyncio.sleep(0)
    await asyncio.to_thread(_run, payload, helpers, lambda: None)
'''

EXECUTIONS_DDL = """
drop table if exists public.load_executions;
create table public.load_executions (
    id bigserial primary key,
    job_id bigint not null,
    n int not null,
    attempt int not null,
    pool_id text,
    job_queue_id int,
    task text not null,
    os_pid int not null,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    outcome text
)
"""


def job_spec(n: int) -> JobSpec:
    """The job number ``n`` of a run."""
    return JobSpec(
        f"load_kind_{n % KINDS}",
        {"n": n},
        queue_name=None if n % 2 == 0 else f"load_q{(n // 2) % QUEUES}",
        max_attempts=PERMANENT_MAX_ATTEMPTS if n % PERMANENT_EVERY == 11 else None,
    )


def expected_attempts(n: int) -> dict[int, str]:
    """attempt -> outcome that job ``n`` must record."""
    if n % PERMANENT_EVERY == 11:
        return dict.fromkeys(range(1, PERMANENT_MAX_ATTEMPTS + 1), "failure")
    if n % FAIL_ONCE_EVERY == 3:
        return {1: "failure", 2: "success"}
    return {1: "success"}


@dataclass
class LoadConfig:
    jobs: int = 100_000
    processes: int = 4
    concurrency: int = 8
    batch_size: int = 1000
    poll_interval: float = 1.0
    #: Seconds to wait for the drain (default: generous for a loaded 2-core machine).
    timeout: float | None = None


@dataclass
class LoadReport:
    jobs: int
    processes: int
    concurrency: int
    faults_injected: int = 0
    executions: int = 0
    jobs_processed: int = 0
    jobs_lost: list[int] = field(default_factory=list)
    double_executions: list[tuple[int, int, int]] = field(default_factory=list)
    unexpected_executions: list[tuple[int, int]] = field(default_factory=list)
    wrong_outcomes: list[tuple[int, int, str | None]] = field(default_factory=list)
    unfinished_executions: int = 0
    queue_overlaps: int = 0
    named_queue_executions: int = 0
    leftover_jobs: int = 0
    permanent_failures_expected: int = 0
    permanent_failures_left: int = 0
    locked_jobs: int = 0
    locked_queues: int = 0
    pools_seen: int = 0
    exit_codes: list[int | None] = field(default_factory=list)
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    timed_out: bool = False

    def problems(self) -> list[str]:
        """Every check that failed, in words (empty when the run was clean)."""
        found = []
        if self.timed_out:
            found.append("the queue did not drain in time")
        if self.jobs_lost:
            found.append(f"{len(self.jobs_lost)} job(s) lost: {self.jobs_lost[:20]}")
        if self.double_executions:
            found.append(
                f"{len(self.double_executions)} (job, attempt) run more than once:"
                f" {self.double_executions[:20]}"
            )
        if self.unexpected_executions:
            found.append(f"unexpected attempts: {self.unexpected_executions[:20]}")
        if self.wrong_outcomes:
            found.append(f"wrong outcomes: {self.wrong_outcomes[:20]}")
        if self.unfinished_executions:
            found.append(f"{self.unfinished_executions} execution(s) never finished")
        if self.queue_overlaps:
            found.append(f"{self.queue_overlaps} overlapping execution(s) in named queues")
        if self.leftover_jobs != self.permanent_failures_expected:
            found.append(
                f"{self.leftover_jobs} job row(s) left, expected"
                f" {self.permanent_failures_expected} permanent failures"
            )
        if self.permanent_failures_left != self.permanent_failures_expected:
            found.append(
                f"{self.permanent_failures_left} permanent failures left, expected"
                f" {self.permanent_failures_expected}"
            )
        if self.locked_jobs or self.locked_queues:
            found.append(f"still locked: {self.locked_jobs} job(s), {self.locked_queues} queue(s)")
        if self.pools_seen != self.processes:
            found.append(f"{self.pools_seen} pools ran jobs, expected {self.processes}")
        if any(code != 0 for code in self.exit_codes):
            found.append(f"worker exit statuses {self.exit_codes}")
        return found

    def summary(self) -> str:
        rate = self.executions / self.drain_seconds if self.drain_seconds else 0.0
        return "\n".join(
            [
                f"jobs enqueued:          {self.jobs:,}",
                f"processes x concurrency: {self.processes} x {self.concurrency}",
                f"jobs processed:         {self.jobs_processed:,}",
                f"executions:             {self.executions:,}"
                f" ({self.named_queue_executions:,} in named queues)",
                f"faults injected:        {self.faults_injected:,}"
                f" (failed attempts; {self.permanent_failures_expected} permanent failures)",
                f"permanent failures left: {self.permanent_failures_left}",
                f"jobs lost:              {len(self.jobs_lost)}",
                f"double executions:      {len(self.double_executions)}",
                f"unexpected executions:  {len(self.unexpected_executions)}",
                f"named-queue overlaps:   {self.queue_overlaps}",
                f"still locked:           {self.locked_jobs} jobs, {self.locked_queues} queues",
                f"pools that ran jobs:    {self.pools_seen}",
                f"worker exit statuses:   {self.exit_codes}",
                f"enqueue time:           {self.enqueue_seconds:.1f}s",
                f"drain time:             {self.drain_seconds:.1f}s ({rate:,.0f} executions/s)",
                "result:                 " + ("; ".join(self.problems()) or "OK"),
            ]
        )


def _worker_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "PGDATABASE", "GRAPHILE_WORKER_SCHEMA"}
        and not key.startswith("GRAPHILE_PY_")
    }
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


def _start_workers(
    dsn: str, schema: str, workdir: Path, config: LoadConfig
) -> list[tuple[subprocess.Popen[bytes], Any]]:
    workers = []
    for index in range(config.processes):
        log = (workdir / f"worker{index}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "graphile_py",
                "--log-level",
                "warning",
                "worker",
                "-c",
                dsn,
                "-s",
                schema,
                "--tasks",
                "load_tasks:registry",
                "--jobs",
                str(config.concurrency),
                "--max-pool-size",
                str(config.concurrency + 1),
                "--poll-interval",
                str(config.poll_interval),
            ],
            cwd=workdir,
            env=_worker_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers.append((process, log))
    return workers


def _scalar(conn: psycopg.Connection[Any], query: sql.Composable | str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def _wait(
    predicate: Callable[[], bool], timeout: float, what: str, alive: Callable[[], None]
) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        alive()
        if time.monotonic() > deadline:
            print(f"timed out waiting for {what}", file=sys.stderr)
            return False
        time.sleep(0.25)
    return True


def run_load(
    dsn: str,
    *,
    schema: str = "graphile_worker",
    workdir: Path,
    config: LoadConfig,
    log: Callable[[str], None] = print,
) -> LoadReport:
    """Run the load test against the database ``dsn`` (migrated here if needed)."""
    report = LoadReport(
        jobs=config.jobs, processes=config.processes, concurrency=config.concurrency
    )
    timeout = config.timeout or max(300.0, config.jobs / 50)
    s = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema=schema)
        conn.execute(EXECUTIONS_DDL)
    (workdir / "load_tasks.py").write_text(TASKS_SOURCE)

    workers = _start_workers(dsn, schema, workdir, config)

    def check_alive() -> None:
        for process, _ in workers:
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {process.pid} exited with status {process.returncode}; see {workdir}"
                )

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            listening = sql.SQL(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and query ilike 'LISTEN%'"
            )
            if not _wait(
                lambda: _scalar(conn, listening) >= config.processes,
                120,
                "the workers to start",
                check_alive,
            ):
                raise RuntimeError(f"the workers did not start; see the logs in {workdir}")
            log(f"{config.processes} workers listening; enqueueing {config.jobs:,} jobs")

            started = time.monotonic()
            ids: dict[int, int] = {}
            for first in range(0, config.jobs, config.batch_size):
                numbers = range(first, min(first + config.batch_size, config.jobs))
                jobs = add_jobs(conn, [job_spec(n) for n in numbers], schema=schema)
                ids.update((job.id, job.payload["n"]) for job in jobs)
            report.enqueue_seconds = time.monotonic() - started
            assert len(ids) == config.jobs, "add_jobs returned fewer jobs than asked for"
            log(f"enqueued in {report.enqueue_seconds:.1f}s; waiting for the drain")

            pending = sql.SQL(
                "select count(*) from {s}._private_jobs"
                " where attempts < max_attempts or locked_at is not null"
            ).format(s=s)
            last_report = [time.monotonic()]

            def drained() -> bool:
                left = _scalar(conn, pending)
                if time.monotonic() - last_report[0] > 15:
                    last_report[0] = time.monotonic()
                    log(f"  {left:,} jobs pending after {time.monotonic() - started:.0f}s")
                return left == 0

            report.timed_out = not _wait(drained, timeout, "the drain", check_alive)
            report.drain_seconds = time.monotonic() - started
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, log_file in workers:
            try:
                report.exit_codes.append(process.wait(60))
            except subprocess.TimeoutExpired:
                process.kill()
                report.exit_codes.append(process.wait(30))
            log_file.close()

    _analyse(dsn, schema, ids, report)
    return report


def _analyse(dsn: str, schema: str, ids: dict[int, int], report: LoadReport) -> None:
    s = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select job_id, attempt, outcome, finished_at is not null,"
            " job_queue_id is not null from public.load_executions"
        ).fetchall()
        report.queue_overlaps = _scalar(
            conn,
            "select count(*) from (select started_at, max(finished_at) over ("
            "partition by job_queue_id order by started_at, id"
            " rows between unbounded preceding and 1 preceding) as previous_end"
            " from public.load_executions where job_queue_id is not null) as e"
            " where started_at < previous_end",
        )
        report.pools_seen = _scalar(
            conn, "select count(distinct pool_id) from public.load_executions"
        )
        left = conn.execute(
            sql.SQL(
                "select id, attempts, max_attempts, locked_at is not null, last_error"
                " from {s}._private_jobs"
            ).format(s=s)
        ).fetchall()
        report.locked_queues = _scalar(
            conn,
            sql.SQL(
                "select count(*) from {s}._private_job_queues where locked_at is not null"
            ).format(s=s),
        )

    report.executions = len(rows)
    seen: dict[int, Counter[int]] = defaultdict(Counter)
    outcomes: dict[tuple[int, int], str | None] = {}
    for job_id, attempt, outcome, finished, queued in rows:
        seen[job_id][attempt] += 1
        outcomes[(job_id, attempt)] = outcome
        report.unfinished_executions += not finished
        report.named_queue_executions += queued
    report.jobs_processed = len(seen)
    for job_id, n in ids.items():
        expected = expected_attempts(n)
        report.faults_injected += sum(1 for outcome in expected.values() if outcome == "failure")
        report.permanent_failures_expected += n % PERMANENT_EVERY == 11
        ran = seen.get(job_id, Counter())
        if set(expected) - set(ran):
            report.jobs_lost.append(job_id)
        for attempt, count in ran.items():
            if attempt not in expected:
                report.unexpected_executions.append((job_id, attempt))
            elif count > 1:
                report.double_executions.append((job_id, attempt, count))
            elif outcomes[(job_id, attempt)] != expected[attempt]:
                report.wrong_outcomes.append((job_id, attempt, outcomes[(job_id, attempt)]))
    report.unexpected_executions += [(job_id, 0) for job_id in seen if job_id not in ids]
    report.leftover_jobs = len(left)
    report.locked_jobs = sum(1 for row in left if row[3])
    report.permanent_failures_left = sum(
        1
        for job_id, attempts, max_attempts, locked, error in left
        if attempts == max_attempts == PERMANENT_MAX_ATTEMPTS
        and not locked
        and error
        and "injected failure" in error
        and ids.get(job_id, -1) % PERMANENT_EVERY == 11
    )


def _default_dsn() -> str:
    return (
        os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--schema", default="graphile_worker")
    parser.add_argument(
        "--dsn", default=_default_dsn(), help="a role that may create the scratch database"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the drain")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    from psycopg.conninfo import make_conninfo

    name = f"gpy_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = make_conninfo(args.dsn, dbname=name)
    config = LoadConfig(
        jobs=args.jobs,
        processes=args.processes,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="gpy-load-") as workdir:
            print(f"scratch database {name}; worker logs in {workdir}")
            report = run_load(dsn, schema=args.schema, workdir=Path(workdir), config=config)
            print(report.summary())
    finally:
        if args.keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
