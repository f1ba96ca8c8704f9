"""A crash or a database restart never loses a job and never runs a finished one twice.

1. A real ``graphile-py worker`` process is SIGKILLed in the middle of its jobs. They stay
   locked by its pool id (nothing can tell a dead pool from a slow one), and come back by
   ``force_unlock_workers``, by the 4-hour stale-lock sweep, or by ``graphile-py unlock``.
2. The PostgreSQL server under a running pool stops (fast or immediate shutdown) and comes
   back, or every backend of the database is terminated again and again during a drain:
   the pool keeps going, retries the writes it could not make, and every job runs exactly
   once per attempt.

Executions are recorded in a table (subprocess workers) or in memory (in-process pools
whose database is the thing going away: a task that wrote to it would fail for that
reason alone, which is not what is measured here).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from graphile_py import JobSpec, WorkerUtils, add_jobs, migrate
from graphile_py.extras.embedded.server import (
    EmbeddedPostgres,
    EmbeddedPostgresUnavailable,
    bin_dir,
)
from tests.reliability.helpers import (
    WorkerProcess,
    create_executions_table,
    executions,
    record_end,
    record_start,
    run_cli,
    set_lock_age,
)
from tests.support import TestDatabase, unavailable
from tests.support.workers import Recorder, jobs_rows, queue_rows, running_pool, wait_for

try:
    import psutil  # comes with the embedded extra
except ImportError:  # pragma: no cover - the embedded fixture skips (or fails in CI) first
    psutil = None

TASKS = """
import time

from graphile_py import TaskRegistry
from tests.reliability.helpers import record_end, record_start

registry = TaskRegistry()


@registry.task
def sleepy(payload, helpers):
    execution = record_start(helpers)
    if helpers.job.attempts == 1:
        time.sleep(600)  # the first attempt is the one that gets killed
    record_end(helpers, execution)
"""


# -- 1. a worker process killed with SIGKILL ------------------------------------------------


@dataclass(frozen=True)
class KilledPool:
    pool_id: str
    job_ids: list[int]


def _locks(db: TestDatabase) -> dict[int, tuple[str | None, int]]:
    return {row["id"]: (row["locked_by"], row["attempts"]) for row in jobs_rows(db)}


@pytest.fixture
def killed_pool(db: TestDatabase, tmp_path: Path) -> Iterator[KilledPool]:
    """Two jobs (one in a named queue) held by a worker process that was then SIGKILLed."""
    create_executions_table(db.dsn)
    (tmp_path / "crash_tasks.py").write_text(TASKS)
    with db.connect() as conn:
        jobs = add_jobs(
            conn,
            [JobSpec("sleepy", {"n": 1}, queue_name="crash-q"), JobSpec("sleepy", {"n": 2})],
            schema=db.schema,
        )
    job_ids = sorted(job.id for job in jobs)
    worker = WorkerProcess(
        dsn=db.dsn,
        schema=db.schema,
        tasks="crash_tasks:registry",
        cwd=tmp_path,
        jobs=2,
        extra_args=["--poll-interval", "0.2"],
    )
    try:
        try:
            wait_for(lambda: len(executions(db.dsn)) == 2, timeout=120, interval=0.1)
        except AssertionError:
            output = worker.output()
            raise AssertionError(f"the worker did not start both jobs:\n{output}") from None
        pool_ids = {row["pool_id"] for row in executions(db.dsn)}
        assert len(pool_ids) == 1, pool_ids
        pool_id = pool_ids.pop()
        assert pool_id.startswith("pool-"), pool_id
        assert worker.kill() == -signal.SIGKILL
    finally:
        worker.close()
    assert pool_id in worker.output()  # logged at start, so an operator can find it
    yield KilledPool(pool_id=pool_id, job_ids=job_ids)


def test_a_killed_worker_leaves_its_jobs_and_queue_locked_by_its_pool(
    db: TestDatabase, killed_pool: KilledPool
) -> None:
    assert _locks(db) == dict.fromkeys(killed_pool.job_ids, (killed_pool.pool_id, 1))
    [queue] = queue_rows(db)
    assert queue["locked_by"] == killed_pool.pool_id
    # Nothing ran to completion.
    assert [row["finished_at"] for row in executions(db.dsn)] == [None, None]


def _second_attempt(payload: object, helpers: Any) -> None:
    execution = record_start(helpers)
    if helpers.job.attempts < 2:
        raise AssertionError("a recovered job must be on its second attempt")
    record_end(helpers, execution)


def _assert_recovered_exactly_once(db: TestDatabase, killed: KilledPool) -> None:
    rows = executions(db.dsn)
    per_attempt = Counter((row["job_id"], row["attempt"]) for row in rows)
    assert per_attempt == {(job_id, n): 1 for job_id in killed.job_ids for n in (1, 2)}, rows
    for row in rows:
        if row["attempt"] == 1:
            assert (row["pool_id"], row["finished_at"]) == (killed.pool_id, None)
        else:
            assert row["pool_id"] != killed.pool_id
            assert row["outcome"] == "success"
    assert jobs_rows(db) == []
    assert all(queue["locked_by"] is None for queue in queue_rows(db))


def test_force_unlock_workers_recovers_the_jobs_of_a_killed_pool(
    db: TestDatabase, killed_pool: KilledPool
) -> None:
    before = {row["id"]: row["run_at"] for row in jobs_rows(db)}
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        utils.force_unlock_workers([killed_pool.pool_id])
    rows = jobs_rows(db)
    assert [(row["locked_by"], row["locked_at"], row["attempts"]) for row in rows] == [
        (None, None, 1)
    ] * 2
    assert {row["id"]: row["run_at"] for row in rows} == before  # runnable now, as it was
    assert queue_rows(db)[0]["locked_by"] is None

    with running_pool(db, {"sleepy": _second_attempt}, poll_interval=0.2, concurrency=2):
        wait_for(lambda: jobs_rows(db) == [], timeout=60, interval=0.1)
    _assert_recovered_exactly_once(db, killed_pool)


def test_the_stale_lock_sweep_recovers_the_jobs_of_a_killed_pool(
    db: TestDatabase, killed_pool: KilledPool
) -> None:
    with running_pool(
        db,
        {"sleepy": _second_attempt},
        poll_interval=0.2,
        concurrency=2,
        min_reset_locked_interval=0.05,
        max_reset_locked_interval=0.1,
    ):
        # Locks younger than 4 hours belong to pools presumed alive: several sweeps pass
        # and leave them alone.
        time.sleep(1.0)
        assert _locks(db) == dict.fromkeys(killed_pool.job_ids, (killed_pool.pool_id, 1))
        # Time passes (simulated): the locks are now over 4 hours old.
        set_lock_age(db, killed_pool.job_ids, "4 hours 1 minute")
        wait_for(lambda: jobs_rows(db) == [], timeout=60, interval=0.1)
    _assert_recovered_exactly_once(db, killed_pool)


def _unlock(db: TestDatabase, tmp_path: Path, *args: str) -> Any:
    return run_cli("unlock", "-c", db.dsn, "--schema", db.schema, *args, cwd=tmp_path)


def test_unlock_command_lists_the_killed_pool_and_unlocks_it(
    db: TestDatabase, killed_pool: KilledPool, tmp_path: Path
) -> None:
    pool_id = killed_pool.pool_id
    held = dict.fromkeys(killed_pool.job_ids, (pool_id, 1))

    listing = _unlock(db, tmp_path)
    assert listing.returncode == 0, listing.stderr
    [line] = [text for text in listing.stdout.splitlines() if pool_id in text]
    assert re.search(r"\b2\b", line), f"jobs held missing from {line!r}"
    assert _locks(db) == held  # listing changes nothing

    # Without --yes nothing is unlocked (there is no terminal to confirm on).
    _unlock(db, tmp_path, "--pool", pool_id)
    assert _locks(db) == held
    # The locks are seconds old, not an hour.
    result = _unlock(db, tmp_path, "--older-than", "3600", "--yes")
    assert result.returncode == 0, result.stderr
    assert _locks(db) == held

    result = _unlock(db, tmp_path, "--pool", pool_id, "--yes")
    assert result.returncode == 0, result.stderr
    assert pool_id in result.stdout
    assert _locks(db) == dict.fromkeys(killed_pool.job_ids, (None, 1))
    assert queue_rows(db)[0]["locked_by"] is None
    assert pool_id not in _unlock(db, tmp_path).stdout


def test_unlock_command_older_than_picks_pools_by_the_age_of_their_locks(
    db: TestDatabase, tmp_path: Path
) -> None:
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        old, recent = (
            job.id for job in add_jobs(conn, [JobSpec("a"), JobSpec("b")], schema=db.schema)
        )
        for job_id, pool, age in ((old, "pool-old", "2 hours"), (recent, "pool-new", "10 min")):
            conn.execute(
                sql.SQL(
                    "update {s}._private_jobs set locked_by = %s, attempts = 1,"
                    " locked_at = now() - %s::interval where id = %s"
                ).format(s=ident),
                (pool, age, job_id),
            )
    listing = _unlock(db, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "pool-old" in listing.stdout and "pool-new" in listing.stdout

    result = _unlock(db, tmp_path, "--older-than", "3600", "--yes")
    assert result.returncode == 0, result.stderr
    assert _locks(db) == {old: (None, 1), recent: ("pool-new", 1)}


# -- 2. the database goes away under a running pool ------------------------------------------


@pytest.fixture
def embedded() -> Iterator[EmbeddedPostgres]:
    """A private PostgreSQL server (never the shared one) that the test may stop."""
    try:
        bin_dir()
    except EmbeddedPostgresUnavailable as exc:
        unavailable(f"the embedded extra is not installed: {exc}")
    # Not under tmp_path: as root the server runs as another user, who must be able to
    # traverse the parents (see tests/integration/test_embedded.py).
    base = Path(tempfile.mkdtemp(prefix="gpy-restart-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = EmbeddedPostgres(base / "pg", port=port, database="gpy_restart")
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            pid = _postmaster_pid(server)
            if pid is not None and psutil is not None and psutil.pid_exists(pid):
                os.kill(pid, signal.SIGINT)  # fast shutdown
                psutil.Process(pid).wait(30)
            shutil.rmtree(base, ignore_errors=True)


def _postmaster_pid(server: EmbeddedPostgres) -> int | None:
    try:
        return int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _remaining(db: TestDatabase) -> int | None:
    """Jobs left in the queue, or None while the server cannot be reached."""
    try:
        with psycopg.connect(db.dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(db.schema))
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return int(row[0]) if row else None


def _specs(count: int, *, slow_every: int = 0) -> list[JobSpec]:
    """Jobs in three named queues and none; every tenth fails once; some are slow."""
    return [
        JobSpec(
            "work",
            {"n": n, "fail_first": n % 10 == 5, "slow": bool(slow_every) and n % slow_every == 7},
            queue_name=f"q{n % 3}" if n % 2 else None,
        )
        for n in range(count)
    ]


class _Runs:
    """In-memory record of task starts: (job id, attempt)."""

    def __init__(self) -> None:
        self.starts = Recorder()
        self.slow_running = threading.Event()

    def task(self, seconds: float) -> Any:
        def work(payload: dict[str, Any], helpers: Any) -> None:
            self.starts.add((helpers.job.id, helpers.job.attempts))
            if payload["slow"]:
                self.slow_running.set()
                time.sleep(1.5)
            else:
                time.sleep(seconds)
            if payload["fail_first"] and helpers.job.attempts == 1:
                raise RuntimeError("fails on its first attempt")

        return work

    def check_exactly_once(self, jobs: dict[int, dict[str, Any]]) -> None:
        counts = Counter(self.starts.items)
        doubled = {key: n for key, n in counts.items() if n > 1}
        assert not doubled, f"(job id, attempt) run more than once: {doubled}"
        expected = {
            (job_id, attempt)
            for job_id, payload in jobs.items()
            for attempt in ((1, 2) if payload["fail_first"] else (1,))
        }
        assert set(counts) == expected, (
            f"missing: {sorted(expected - set(counts))}, extra: {sorted(set(counts) - expected)}"
        )


def _outcome_write_retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Outcome writes that met the outage: retried, or re-done after a failed pipeline."""
    return [
        record.getMessage()
        for record in caplog.records
        if (
            record.name == "graphile_py.retry"
            and record.getMessage().startswith(("Completing", "Failing", "Recording the outcome"))
        )
        or (record.name == "graphile_py.worker" and "Pipelined write failed" in record.getMessage())
    ]


def _given_up_writes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors saying a job stays locked because its outcome could not be written."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR and "stays locked" in record.getMessage()
    ]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_workers_ride_out_a_server_restart(
    embedded: EmbeddedPostgres,
    worker_schema: str,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.DEBUG, logger="graphile_py.worker")
    dsn = embedded.dsn
    db = TestDatabase(name=embedded.database, dsn=dsn, schema=worker_schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema=worker_schema)
        added = add_jobs(conn, _specs(60, slow_every=15), schema=worker_schema)
    jobs = {job.id: job.payload for job in added}
    runs = _Runs()

    with running_pool(db, {"work": runs.task(0.2)}, concurrency=4, poll_interval=0.2) as pool:
        # Stop the server while a 1.5 s job is running: its completion (or failure) can
        # only be written after the server is back.
        assert runs.slow_running.wait(60)
        if mode == "fast":
            embedded.stop()  # pg_ctl stop -m fast: sessions are terminated
        else:
            pid = _postmaster_pid(embedded)
            assert pid is not None
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: crash recovery at restart
            wait_for(lambda: not psutil.pid_exists(pid), timeout=60, interval=0.05)
            embedded.stop()  # releases our hold on the (already stopped) server
        assert _remaining(db) is None
        time.sleep(2.0)  # the outage
        assert embedded.start() == dsn
        wait_for(lambda: _remaining(db) == 0, timeout=180, interval=0.2)
        assert not pool.stopping, "the pool gave up"
        wait_for(lambda: pool.listener_reconnects >= 1, timeout=60, interval=0.1)

    runs.check_exactly_once(jobs)
    assert jobs_rows(db) == []
    assert all(queue["locked_by"] is None for queue in queue_rows(db))
    assert _outcome_write_retries(caplog), "no outcome write met the outage"
    assert _given_up_writes(caplog) == []


# Often enough to hit many jobs in every phase (claiming, running, writing), seldom
# enough for a new connection to be used before the next round kills it.
KILL_INTERVAL = 0.75
KILL_ROUNDS = 6


def test_workers_ride_out_their_backends_being_terminated_again_and_again(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with db.connect() as conn:
        added = add_jobs(conn, _specs(600), schema=db.schema)
    jobs = {job.id: job.payload for job in added}
    runs = _Runs()
    rounds = Recorder()
    stop = threading.Event()

    def terminate_backends() -> None:
        # Only this test's own database, never another engineer's.
        with db.connect() as conn:
            while len(rounds) < KILL_ROUNDS and not stop.wait(KILL_INTERVAL):
                killed = conn.execute(
                    "select count(*) filter (where pg_terminate_backend(pid))"
                    " from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                ).fetchone()
                rounds.add((len(runs.starts), killed[0] if killed else 0))

    killer = threading.Thread(target=terminate_backends, daemon=True)
    with running_pool(db, {"work": runs.task(0.03)}, concurrency=4, poll_interval=0.2) as pool:
        killer.start()
        try:
            wait_for(lambda: _remaining(db) == 0, timeout=240, interval=0.2)
        finally:
            stop.set()
            killer.join(30)
        assert not pool.stopping, "the pool gave up"

    # (jobs started when the round ran, sessions killed) for each round
    during_drain = [killed for started, killed in rounds.items if 0 < started < len(jobs)]
    assert len(during_drain) >= 2 and sum(during_drain) > 0, rounds.items
    runs.check_exactly_once(jobs)
    assert jobs_rows(db) == []
    assert all(queue["locked_by"] is None for queue in queue_rows(db))
    assert _given_up_writes(caplog) == []


def test_a_connection_terminated_while_idle_is_not_handed_to_a_task(db: TestDatabase) -> None:
    entered = threading.Event()
    killed = threading.Event()

    def uses_the_database(payload: object, helpers: Any) -> None:
        entered.set()
        assert killed.wait(60)
        with helpers.connection() as conn:
            conn.execute("select 1")

    with running_pool(
        db, {"uses_the_database": uses_the_database}, concurrency=1, poll_interval=60.0
    ):
        with db.connect() as conn:
            add_jobs(conn, [JobSpec("uses_the_database", max_attempts=1)], schema=db.schema)
        assert entered.wait(60)
        # The claim's connection is back in the pool, idle. Terminate it, as a server
        # restart, a failover or idle_session_timeout would (this database only).
        with db.connect() as conn:
            conn.execute(
                "select pg_terminate_backend(pid, 10000) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
        killed.set()
        wait_for(
            lambda: all(row["attempts"] == 1 and row["locked_at"] is None for row in jobs_rows(db)),
            timeout=60,
        )
    rows = jobs_rows(db)
    assert rows == [], f"the job failed: {rows[0]['last_error']!r}"
