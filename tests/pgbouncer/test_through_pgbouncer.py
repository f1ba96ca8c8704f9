"""Every path of graphile-py through PgBouncer in transaction mode.

Enqueueing in the caller's transaction, a worker (with and without a direct listen URL),
cron, the admin commands and the dashboard's JSON API, each against the test's own
database reached through the session's PgBouncer. The first test proves the pooler is
the hostile kind: prepared statements break on it and LISTEN hears nothing through it,
so the others would fail if graphile-py relied on either.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from graphile_py import JobSpec, WorkerUtils, add_job, add_jobs
from graphile_py.cron.crontab import parse_crontab
from graphile_py.cron.scheduler import CronScheduler
from graphile_py.db.migrate import latest_known_migration
from graphile_py.db.pooler import notifications_arrive, prepared_statements_work
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.pgbouncer.server import PgBouncer, in_front_of_the_test_server
from tests.reliability.helpers import cli_env, run_cli
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, running_pool, wait_for

_NOT_ARRIVING = "Notifications do not arrive"


class _Starts:
    """When each job's task started (monotonic), by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.at: dict[int, float] = {}
        self.payloads: list[Any] = []

    def task(self, payload: Any, helpers: Any) -> None:
        with self._lock:
            self.at.setdefault(helpers.job.id, time.monotonic())
            self.payloads.append(payload)
        with helpers.connection() as conn:  # a task's own statements, through the pooler
            conn.execute("select 1")

    def __len__(self) -> int:
        with self._lock:
            return len(self.at)


def _wake_latency(pooled: TestDatabase, starts: _Starts, samples: int) -> list[float]:
    """add_job (committed through PgBouncer) to task start, ``samples`` times, one by one."""
    latencies = []
    with psycopg.connect(pooled.dsn, autocommit=True, prepare_threshold=None) as conn:
        for n in range(samples):
            time.sleep(0.05)  # idle workers: asleep until woken or their poll comes
            added = time.monotonic()
            job = add_job(conn, "noted", {"sample": n}, schema=pooled.schema)
            wait_for(lambda job_id=job.id: job_id in starts.at, timeout=30, interval=0.002)
            latencies.append(starts.at[job.id] - added)
    return latencies


def test_the_pooler_is_in_transaction_mode(pooled: TestDatabase, db: TestDatabase) -> None:
    # Server-side prepared statements break: a second client's statement lands on the
    # server connection where the first one's name is already taken.
    with (
        pytest.raises(psycopg.errors.DuplicatePreparedStatement),
        psycopg.connect(pooled.dsn, autocommit=True, prepare_threshold=0) as one,
        psycopg.connect(pooled.dsn, autocommit=True, prepare_threshold=0) as two,
    ):
        for n in range(5):
            one.execute("select %s::int", (n,))
            two.execute("select %s::text", (str(n),))
    assert not prepared_statements_work(pooled.dsn)
    assert prepared_statements_work(db.dsn)
    assert not notifications_arrive(pooled.dsn, pooled.dsn, timeout=1.0)
    assert notifications_arrive(db.dsn, pooled.dsn)  # a direct LISTEN hears pooled NOTIFYs


def test_migrate_through_the_pooler(
    empty_db: TestDatabase, pgbouncer: PgBouncer, tmp_path: Any
) -> None:
    result = run_cli(
        "migrate", "-c", pgbouncer.dsn(empty_db.name), "-s", empty_db.schema, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with empty_db.connect() as conn:
        latest = conn.execute(
            sql.SQL("select max(id) from {}.migrations").format(sql.Identifier(empty_db.schema))
        ).fetchone()
    assert latest is not None and latest[0] == latest_known_migration()


def test_add_job_joins_the_callers_transaction_through_the_pooler(
    pooled: TestDatabase, db: TestDatabase
) -> None:
    # The caller's connection must not prepare (their setting); ours assume no session.
    with psycopg.connect(pooled.dsn, prepare_threshold=None) as conn:
        for n in range(12):
            add_job(conn, "t", {"n": n}, schema=pooled.schema, queue_name="q")
        conn.rollback()
        assert jobs_rows(db) == []
        with conn.transaction():
            conn.execute("create table public.orders (id int)")
            conn.execute("insert into public.orders values (1)")
            for n in range(12):
                add_job(conn, "t", {"n": n}, schema=pooled.schema, job_key=f"k{n % 6}")
            add_jobs(conn, [JobSpec("u", {"m": m}) for m in range(5)], schema=pooled.schema)
    with db.connect() as direct:
        assert direct.execute("select count(*) from public.orders").fetchone() == (1,)
    rows = jobs_rows(db)
    assert len(rows) == 6 + 5  # twelve adds over six keys replace each other
    # WorkerUtils through the pooler: many adds on few connections, never prepared.
    with WorkerUtils(
        pooled.dsn, schema=pooled.schema, max_pool_size=2, prepared_statements=False
    ) as utils:
        for n in range(20):
            utils.add_job("v", {"n": n})
        assert utils.complete_jobs([row["id"] for row in rows[:3]])
    assert len(jobs_rows(db)) == 6 + 5 + 20 - 3


def test_a_worker_through_the_pooler_warns_and_polls(
    pooled: TestDatabase, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="graphile_py.worker")
    with db.connect() as conn:
        add_jobs(
            conn,
            [JobSpec("noted", {"n": n}, queue_name="serial" if n % 3 else None) for n in range(40)],
            schema=db.schema,
        )
    starts = _Starts()
    # poll_interval 30: a job found within a second was found by the short fallback poll.
    with running_pool(pooled, {"noted": starts.task}, concurrency=3, poll_interval=30) as pool:
        warnings = [r.getMessage() for r in caplog.records if _NOT_ARRIVING in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert "--listen-url" in warnings[0] and "transaction-mode pooler" in warnings[0]
        assert pool.options.poll_interval == 0.5
        assert pool.options.prepared_statements is False  # detected, not told
        wait_for(lambda: len(starts) == 40, timeout=60)
        latencies = _wake_latency(pooled, starts, samples=5)
    assert max(latencies) < 0.5 + 0.5, latencies
    assert jobs_rows(db) == []


def test_a_worker_with_a_direct_listen_url_is_woken_at_once(
    pooled: TestDatabase, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="graphile_py.worker")
    starts = _Starts()
    with running_pool(
        pooled, {"noted": starts.task}, concurrency=2, poll_interval=30, listen_conninfo=db.dsn
    ) as pool:
        assert _NOT_ARRIVING not in caplog.text
        assert "prepared statements are turned off" in caplog.text  # the pooler, detected
        assert pool.options.poll_interval == 30
        latencies = _wake_latency(pooled, starts, samples=7)
    # Woken by LISTEN: far sooner than the 0.5 s fallback poll, let alone the 30 s one.
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 0.5, latencies


def test_cron_through_the_pooler(pooled: TestDatabase, db: TestDatabase) -> None:
    # Known for a day, last run five minutes ago: starting backfills the missed minutes.
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_known_crontabs (identifier, known_since, last_execution)"
                " values ('tick', now() - interval '1 day', now() - interval '5 minutes')"
            ).format(sql.Identifier(db.schema))
        )
    starts = _Starts()
    with running_pool(
        pooled, {"tick": starts.task}, concurrency=2, poll_interval=0.2, listen_conninfo=db.dsn
    ) as pool:
        cron = CronScheduler(
            parse_crontab("* * * * * tick ?fill=10m"), pool=pool.connections, schema=db.schema
        )
        cron.start()
        try:
            wait_for(lambda: len(starts) >= 4, timeout=30)
        finally:
            assert cron.stop(10)
    backfilled = [p["_cron"] for p in starts.payloads if p["_cron"]["backfilled"]]
    assert len(backfilled) >= 4, starts.payloads
    assert len({entry["ts"] for entry in backfilled}) == len(backfilled)


def test_the_admin_commands_through_the_pooler(
    pooled: TestDatabase, db: TestDatabase, tmp_path: Any
) -> None:
    env = cli_env(GRAPHILE_PY_PREPARED_STATEMENTS="false")
    where = ["-c", pooled.dsn, "-s", pooled.schema]

    def cli(*args: str) -> str:
        result = run_cli(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    added = [json.loads(cli("add-job", "mail", "-p", f'{{"n": {n}}}', *where)) for n in range(3)]
    listed = json.loads(cli("jobs", "list", "--json", *where))
    assert sorted(job["id"] for job in listed) == sorted(job["id"] for job in added)
    status = json.loads(cli("status", "--json", *where))
    assert "mail" in json.dumps(status)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cli("jobs", "reschedule", str(added[0]["id"]), "--run-at", later, *where)
    (tmp_path / "tasks_mod.py").write_text(
        "def mail(payload, helpers):\n    pass\n\ntasks = {'mail': mail}\n"
    )
    cli("worker", "--once", "--tasks", "tasks_mod:tasks", "--no-prepared-statements", *where)
    assert [row["id"] for row in jobs_rows(db)] == [added[0]["id"]]  # the rescheduled one
    cli("cleanup", "GC_TASK_IDENTIFIERS", *where)
    cli("unlock", *where)


@contextmanager
def _metrics_through(pooled: TestDatabase, db: TestDatabase) -> Iterator[Any]:
    """A listening pool through ``pooled`` (LISTEN on ``db``), serving metrics and probes."""
    from graphile_py.extras.metrics.collectors import WorkerMetrics
    from graphile_py.extras.metrics.server import MetricsServer

    metrics = WorkerMetrics()
    with (
        running_pool(
            pooled, {"later": _Starts().task}, listen_conninfo=db.dsn, events=metrics
        ) as pool,
        MetricsServer(pool, metrics=metrics, port=0, sample_interval=0.1) as server,
    ):
        yield server


def test_metrics_and_probes_through_the_pooler(pooled: TestDatabase, db: TestDatabase) -> None:
    with db.connect() as conn:
        add_job(conn, "later", None, schema=db.schema, run_at=datetime.now(UTC) + timedelta(1))
    with _metrics_through(pooled, db) as server:
        for _ in range(8):
            ready = httpx.get(server.url + "/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
        time.sleep(1.0)  # about ten samples, each through the pooler
        text = httpx.get(server.url + "/metrics", timeout=10).text
        assert server.sampler.last_error is None, server.sampler.last_error
    assert 'task="later"' in text
    assert "graphile_py_queue_sample_errors_total 0.0" in text, text


def test_a_pooler_that_refuses_options_still_reports_ready_and_names_the_fix(
    db: TestDatabase,
) -> None:
    # A PgBouncer as installed, without `ignore_startup_parameters = options`: /readyz
    # must not depend on it, and the sampler, which does, must say what to add.
    bouncer = in_front_of_the_test_server(ignore_startup_parameters="")
    try:
        strict = TestDatabase(name=db.name, dsn=bouncer.dsn(db.name), schema=db.schema)
        with _metrics_through(strict, db) as server:
            ready = httpx.get(server.url + "/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            wait_for(lambda: server.sampler.last_error is not None, timeout=10)
        error = str(server.sampler.last_error)
        assert "unsupported startup parameter" in error, error
        assert "ignore_startup_parameters = options" in error, error
    finally:
        bouncer.stop()


@contextmanager
def _dashboard(pooled: TestDatabase) -> Iterator[httpx.Client]:
    with (
        WorkerUtils(
            pooled.dsn, schema=pooled.schema, run_migrations=False, prepared_statements=False
        ) as utils,
        BackgroundServer(create_app(utils, allow_actions=True)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def test_the_dashboard_api_through_the_pooler(pooled: TestDatabase, db: TestDatabase) -> None:
    with db.connect() as conn:
        ready = add_job(conn, "greet", {"n": 1}, schema=db.schema)
        failed = add_job(conn, "boom", None, schema=db.schema, max_attempts=1)
        conn.execute(
            sql.SQL(
                "update {}._private_jobs set attempts = 1, last_error = 'boom' where id = %s"
            ).format(sql.Identifier(db.schema)),
            (failed.id,),
        )
    with _dashboard(pooled) as client:
        for _ in range(8):  # more than psycopg's prepare threshold (5) on the same query
            stats = client.get("/api/v1/stats")
            assert stats.status_code == 200, stats.text
            listing = client.get("/api/v1/jobs")
            assert listing.status_code == 200, listing.text
        assert {job["id"] for job in listing.json()["jobs"]} == {ready.id, failed.id}
        assert client.get(f"/api/v1/jobs/{failed.id}").json()["last_error"] == "boom"
        retried = client.post(
            f"/api/v1/jobs/{failed.id}/retry", headers={"Content-Type": "application/json"}
        )
        assert retried.status_code == 200, retried.text
    [row] = [row for row in jobs_rows(db) if row["id"] == failed.id]
    assert row["attempts"] == 0


def test_no_session_setting_leaks_to_the_poolers_other_clients(db: TestDatabase) -> None:
    # One server connection for every client: whatever a session sets, the next sees.
    bouncer = PgBouncer(default_pool_size=1).start()
    try:
        pooled = TestDatabase(name=db.name, dsn=bouncer.dsn(db.name), schema=db.schema)
        with running_pool(
            pooled, {"noted": _Starts().task}, max_pool_size=2, listen_conninfo=db.dsn
        ) as pool:
            assert pool.started  # registered: the heartbeat's connection is open
            with psycopg.connect(pooled.dsn, autocommit=True, prepare_threshold=None) as conn:
                row = conn.execute("show statement_timeout").fetchone()
        assert row == ("0",), row
    finally:
        bouncer.stop()
