"""Crash recovery in seconds: real worker processes killed, frozen and cut off.

Every worker here is a ``graphile-py worker`` process with short heartbeats (interval
0.5 s, timeout 2 s), so a dead pool is noticed within seconds:

1. A worker SIGKILLed in the middle of long jobs (plain and named-queue; unbatched, and
   with a local queue and batched writes): a live Python pool runs them again by itself,
   and none ran twice while the first pool was alive. Ten kills measure the seconds from
   kill to re-run (printed; run with ``-s`` to see them).
2. A pool whose heartbeat connection is terminated again and again, reconnecting within
   the timeout, is not declared lost. A pool frozen with SIGSTOP past the timeout loses
   its job to a live pool, and after SIGCONT it fences itself (exit status 75) without
   completing the job the other pool now holds.
3. A worker killed and restarted every few seconds while 5,000 jobs drain: every job
   succeeds, none is lost, and only jobs running at a kill ran twice.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from graphile_py import EXIT_FENCED, JobSpec, add_jobs
from graphile_py.db.side_schema import side_schema_for
from tests.reliability.helpers import WorkerProcess, create_executions_table, executions
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, wait_for

INTERVAL, TIMEOUT = 0.5, 2.0
FAST = ["--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", str(TIMEOUT)]
BATCHED = ["--local-queue-size", "4", "--complete-job-batch-delay", "0.05"]

TASKS = """
import time

from graphile_py import TaskRegistry
from tests.reliability.helpers import record_end, record_start

registry = TaskRegistry()


@registry.task
def long(payload, helpers):
    # The first attempt runs until it is killed; a later one finishes at once.
    execution = record_start(helpers)
    if helpers.job.attempts == 1:
        time.sleep(payload.get("first", 600))
    else:
        time.sleep(payload.get("again", 0))
    record_end(helpers, execution)


@registry.task
def quick(payload, helpers):
    execution = record_start(helpers)
    time.sleep(payload.get("sleep", 0.02))
    record_end(helpers, execution)
"""


@pytest.fixture
def tasks_dir(db: TestDatabase, tmp_path: Path) -> Path:
    create_executions_table(db.dsn)
    (tmp_path / "hb_tasks.py").write_text(TASKS)
    return tmp_path


@contextmanager
def worker(
    db: TestDatabase, cwd: Path, *, jobs: int = 4, extra: Sequence[str] = (), name: str = "w"
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        dsn=db.dsn,
        schema=db.schema,
        tasks="hb_tasks:registry",
        cwd=cwd,
        jobs=jobs,
        extra_args=[*FAST, "--poll-interval", "0.5", *extra],
        name=name,
    )
    try:
        yield process
    finally:
        process.close()


def _add(db: TestDatabase, specs: list[JobSpec]) -> list[int]:
    with db.connect() as conn:
        return [job.id for job in add_jobs(conn, specs, schema=db.schema)]


def _db_now(db: TestDatabase) -> Any:
    with db.connect() as conn:
        row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def _pool_of(process: WorkerProcess, db: TestDatabase, job_ids: Sequence[int]) -> str:
    """The pool that ran the first attempt of ``job_ids``: ``process``'s, checked."""
    pools = {
        row["pool_id"]
        for row in executions(db.dsn)
        if row["job_id"] in job_ids and row["attempt"] == 1
    }
    assert pools == {pool_id(process)}, (pools, process.output()[-2000:])
    return pools.pop()


def pool_id(process: WorkerProcess, timeout: float = 60) -> str:
    """The pool id ``process`` logged when it started looking for jobs."""
    found: list[str] = []

    def logged() -> bool:
        match = re.search(r"\(pool ((?:ot)?pool-[0-9a-f]+),", process.output())
        if match:
            found.append(match.group(1))
        return bool(match)

    _wait(logged, timeout, process)
    return found[0]


def _started(db: TestDatabase, job_ids: Sequence[int], attempt: int) -> dict[int, dict[str, Any]]:
    return {
        row["job_id"]: row
        for row in executions(db.dsn)
        if row["job_id"] in job_ids and row["attempt"] == attempt
    }


def _wait(condition: Any, timeout: float, *processes: WorkerProcess) -> None:
    try:
        wait_for(condition, timeout=timeout, interval=0.05)
    except AssertionError:
        logs = "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in processes)
        raise AssertionError(f"condition not met within {timeout}s\n{logs}") from None


def _jobs_left(db: TestDatabase) -> int:
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(db.schema))
        ).fetchone()
    return int(row[0]) if row else 0


def _registry(db: TestDatabase) -> dict[str, dict[str, Any]]:
    from psycopg.rows import dict_row

    side = sql.Identifier(side_schema_for(db.schema))
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("select * from {}.pools").format(side))
        return {row["id"]: row for row in cur.fetchall()}


def _kill_and_measure(
    db: TestDatabase, victim: WorkerProcess, job_ids: Sequence[int], rescuer: WorkerProcess
) -> list[float]:
    """SIGKILL ``victim``; wait for every job's second attempt; seconds from kill to each."""
    assert victim.kill() == -signal.SIGKILL
    killed_at = _db_now(db)
    _wait(lambda: len(_started(db, job_ids, 2)) == len(job_ids), 30, victim, rescuer)
    return [
        (row["started_at"] - killed_at).total_seconds() for row in _started(db, job_ids, 2).values()
    ]


# -- 1. SIGKILL ------------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_a_killed_workers_jobs_run_again_in_a_live_pool_within_the_timeout(
    db: TestDatabase, tasks_dir: Path, batched: bool
) -> None:
    job_ids = _add(
        db,
        [
            JobSpec("long", {"n": 1}),
            JobSpec("long", {"n": 2}),
            JobSpec("long", {"n": 3}, queue_name="hb-q1"),
            JobSpec("long", {"n": 4}, queue_name="hb-q2"),
        ],
    )
    extra = BATCHED if batched else []
    with worker(db, tasks_dir, extra=extra, name="victim") as victim:
        _wait(lambda: len(_started(db, job_ids, 1)) == 4, 60, victim)
        victim_pool = _pool_of(victim, db, job_ids)
        with worker(db, tasks_dir, extra=extra, name="rescuer") as rescuer:
            rescuer_pool = pool_id(rescuer)
            # Both alive for twice the timeout: nothing is taken from the first pool.
            time.sleep(2 * TIMEOUT)
            assert len(executions(db.dsn)) == 4
            assert {row["locked_by"] for row in jobs_rows(db)} == {victim_pool}
            delays = _kill_and_measure(db, victim, job_ids, rescuer)
            _wait(lambda: jobs_rows(db) == [], 30, rescuer)
            assert rescuer.alive()
            rescuer_output = rescuer.output()
    assert max(delays) < TIMEOUT + 4 * INTERVAL + 3, delays
    runs = Counter((row["job_id"], row["attempt"]) for row in executions(db.dsn))
    assert runs == {(job_id, n): 1 for job_id in job_ids for n in (1, 2)}
    second = _started(db, job_ids, 2)
    assert {row["pool_id"] for row in second.values()} == {rescuer_pool}
    assert all(row["finished_at"] is not None for row in second.values())
    assert f"Declared worker pool {victim_pool}" in rescuer_output
    lost = _registry(db)[victim_pool]
    assert lost["lost_at"] is not None and lost["jobs_rescued"] == 4


def test_seconds_from_kill_to_rerun_over_ten_kills(db: TestDatabase, tasks_dir: Path) -> None:
    # Two workers; each round, whichever claims the new job is killed, the other runs it
    # again, and the killed one is restarted (alternately with batched options).
    delays: list[float] = []
    workers: dict[str, WorkerProcess] = {}
    everyone: list[WorkerProcess] = []

    def start(number: int) -> None:
        extra = BATCHED if number % 2 else []
        process = WorkerProcess(
            dsn=db.dsn,
            schema=db.schema,
            tasks="hb_tasks:registry",
            cwd=tasks_dir,
            jobs=1,
            extra_args=[*FAST, "--poll-interval", "0.5", *extra],
            name=f"worker{number}",
        )
        everyone.append(process)
        workers[pool_id(process)] = process

    try:
        start(0)
        start(1)
        for kill in range(10):
            queue = f"q{kill}" if kill % 2 else None
            [job_id] = _add(db, [JobSpec("long", {"kill": kill}, queue_name=queue)])
            _wait(lambda job_id=job_id: _started(db, [job_id], 1), 60, *everyone)
            holder = _started(db, [job_id], 1)[job_id]["pool_id"]
            victim = workers.pop(holder)
            [other] = workers.values()
            delays += _kill_and_measure(db, victim, [job_id], other)
            assert _started(db, [job_id], 2)[job_id]["pool_id"] == pool_id(other)
            start(kill + 2)
        assert all(process.alive() for process in workers.values())
    finally:
        for process in everyone:
            process.close()
    runs = Counter((row["job_id"], row["attempt"]) for row in executions(db.dsn))
    assert set(runs.values()) == {1}
    median, worst = statistics.median(delays), max(delays)
    print(
        f"\nSIGKILL to re-run, 10 kills (heartbeat {INTERVAL}s, timeout {TIMEOUT}s):"
        f" median {median:.2f}s, max {worst:.2f}s; each: " + ", ".join(f"{d:.2f}" for d in delays)
    )
    assert worst < TIMEOUT + 4 * INTERVAL + 3, delays


# -- 2. a cut connection, a frozen process --------------------------------------------------


def test_a_pool_whose_heartbeat_connection_is_cut_again_and_again_is_not_lost(
    db: TestDatabase, tasks_dir: Path
) -> None:
    [job_id] = _add(db, [JobSpec("long", {"first": 9})])
    with worker(db, tasks_dir, jobs=1, name="cut") as cut:
        _wait(lambda: _started(db, [job_id], 1), 60, cut)
        cut_pool = _pool_of(cut, db, [job_id])
        # A live pool that would rescue the job if the cut one were declared lost.
        with worker(db, tasks_dir, jobs=1, name="watcher") as watcher:
            pool_id(watcher)
            terminated = 0
            deadline = time.monotonic() + 6
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    row = conn.execute(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                        " where application_name = %s",
                        (f"graphile-py heartbeat {cut_pool}"[:63],),
                    ).fetchone()
                    terminated += row[0] if row else 0
                    time.sleep(0.7)
            assert terminated >= 5
            _wait(lambda: jobs_rows(db) == [], 30, cut, watcher)
            assert cut.alive() and watcher.alive()
            assert "heartbeat connection re-established" in cut.output()
        assert cut.terminate() == 0
    row = _registry(db)[cut_pool]
    assert row["lost_at"] is None and row["stopped_at"] is not None
    assert [(r["attempt"], r["pool_id"]) for r in executions(db.dsn)] == [(1, cut_pool)]


def test_a_frozen_pool_loses_its_job_and_does_not_complete_it_after_sigcont(
    db: TestDatabase, tasks_dir: Path
) -> None:
    # The first attempt ends 3 s in; the rescuer's attempt takes 10 s, so when the frozen
    # pool wakes up its task returns while the rescuer holds the job.
    [job_id] = _add(db, [JobSpec("long", {"first": 3, "again": 10})])
    with worker(db, tasks_dir, jobs=1, name="frozen") as frozen:
        _wait(lambda: _started(db, [job_id], 1), 60, frozen)
        frozen_pool = _pool_of(frozen, db, [job_id])
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            with worker(db, tasks_dir, jobs=1, name="rescuer") as rescuer:
                _wait(lambda: _started(db, [job_id], 2), 30, rescuer)
                rescuer_pool = _started(db, [job_id], 2)[job_id]["pool_id"]
                assert rescuer_pool == pool_id(rescuer)
                time.sleep(1.5)  # the first attempt's 3 s are over
                os.kill(frozen.pid, signal.SIGCONT)
                status = frozen.process.wait(30)
                output = frozen.output()
                # Gone (fenced) while the rescuer still runs the job, which it still holds.
                assert status == EXIT_FENCED, output[-3000:]
                assert [(r["id"], r["locked_by"]) for r in jobs_rows(db)] == [
                    (job_id, rescuer_pool)
                ]
                _wait(lambda: jobs_rows(db) == [], 30, rescuer)
        finally:
            if frozen.alive():
                os.kill(frozen.pid, signal.SIGCONT)
    assert "fenced itself" in output
    assert _registry(db)[frozen_pool]["lost_by"] == rescuer_pool
    second = _started(db, [job_id], 2)[job_id]
    assert second["finished_at"] is not None


# -- 3. repeated kills during a drain ----------------------------------------------------


def test_repeated_kills_during_a_drain_lose_nothing(db: TestDatabase, tasks_dir: Path) -> None:
    total = 5000
    specs = [
        JobSpec("quick", {"sleep": 0.05}, queue_name=f"drain-q{n % 5}" if n % 10 == 0 else None)
        for n in range(total)
    ]
    job_ids = set(_add(db, specs))
    killed: set[str] = set()
    with worker(db, tasks_dir, jobs=4, name="steady") as steady:
        pool_id(steady)
        started = time.monotonic()
        while _jobs_left(db) and time.monotonic() - started < 75:
            extra = BATCHED if len(killed) % 2 else []
            with worker(db, tasks_dir, jobs=4, extra=extra, name=f"victim{len(killed)}") as victim:
                killed.add(pool_id(victim))
                time.sleep(2.5)
                victim.kill()
        _wait(lambda: jobs_rows(db) == [], 60, steady)
        elapsed = time.monotonic() - started
        assert steady.alive(), steady.output()[-3000:]
    by_job: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in executions(db.dsn):
        by_job[row["job_id"]].append(row)
    assert set(by_job) == job_ids  # every job ran, and none is left
    doubles = {job: runs for job, runs in by_job.items() if len(runs) > 1}
    for runs in doubles.values():
        # Only a job that was running in a killed pool may run again.
        assert all(run["pool_id"] in killed for run in runs[:-1]), runs
    assert all(runs[-1]["finished_at"] is not None for runs in by_job.values())
    print(
        f"\nRepeated kills: {len(killed)} kills while {total} jobs drained in {elapsed:.0f}s;"
        f" double executions: {len(doubles)}"
    )
    assert len(killed) >= 5
