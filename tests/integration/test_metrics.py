"""Prometheus metrics and health probes of real worker pools, scraped over HTTP."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from graphile_py import ConfigurationError, WorkerEvents, WorkerUtils, add_job
from graphile_py.db.migrate import latest_known_migration
from graphile_py.events import combine_events
from graphile_py.extras.metrics.collectors import WorkerMetrics
from graphile_py.extras.metrics.server import MetricsServer, serve_metrics
from graphile_py.jobs import Job
from tests.support import TestDatabase
from tests.support.workers import running_pool, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET; 4xx/5xx are answers, not errors."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base_url: str) -> Samples:
    status, text = get(base_url + "/metrics")
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def job_counts(samples: Samples, task: str) -> dict[str, float | None]:
    return {
        kind: value(samples, f"graphile_py_jobs_{kind}_total", task=task)
        for kind in ("started", "succeeded", "failed", "permanently_failed")
    }


class Counting(WorkerEvents):
    """The user's own hooks, installed next to the metrics."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed: list[int] = []

    def job_complete(self, worker_id: str, job: Job, error: BaseException | None) -> None:
        with self.lock:
            self.completed.append(job.id)


class Exploding(WorkerEvents):
    """A broken hook must not cost the metrics (or the worker) anything."""

    def job_start(self, worker_id: str, job: Job) -> None:
        raise RuntimeError("broken hook")


def _tasks(flaky_seen: set[str]) -> dict[str, Any]:
    def ok(payload: Any, helpers: Any) -> None:
        pass

    def bad(payload: Any, helpers: Any) -> None:
        raise ValueError("always fails")

    def flaky(payload: Any, helpers: Any) -> None:
        # Fails its first attempt only.
        if payload["name"] not in flaky_seen:
            flaky_seen.add(payload["name"])
            raise ValueError("first attempt fails")

    return {"ok": ok, "bad": bad, "flaky": flaky}


@pytest.fixture
def served(db: TestDatabase) -> Iterator[tuple[MetricsServer, Counting, TestDatabase]]:
    """A continuous pool with metrics (and the user's hooks) served on a free port."""
    metrics, mine = WorkerMetrics(), Counting()
    events = combine_events(mine, Exploding(), metrics)
    with (
        running_pool(db, _tasks(set()), concurrency=2, poll_interval=0.5, events=events) as pool,
        serve_metrics(pool, port=0, sample_interval=0.2) as server,
    ):
        yield server, mine, db


def test_job_counters_histogram_and_hooks_of_a_pool(
    served: tuple[MetricsServer, Counting, TestDatabase],
) -> None:
    server, mine, db = served
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        for _ in range(3):
            utils.add_job("ok")
        utils.add_job("bad", max_attempts=1)
        # Retried after about e seconds, then succeeds.
        utils.add_job("flaky", {"name": "f"}, max_attempts=2)

    # 3 ok + 1 bad + 2 flaky attempts, each seen by the user's hooks too.
    wait_for(lambda: len(mine.completed) == 6, timeout=60)
    samples = scrape(server.url)
    assert job_counts(samples, "ok") == {
        "started": 3,
        "succeeded": 3,
        "failed": 0,
        "permanently_failed": 0,
    }
    assert job_counts(samples, "bad") == {
        "started": 1,
        "succeeded": 0,
        "failed": 1,
        "permanently_failed": 1,
    }
    assert job_counts(samples, "flaky") == {
        "started": 2,
        "succeeded": 1,
        "failed": 1,
        "permanently_failed": 0,
    }
    for task, count in (("ok", 3), ("bad", 1), ("flaky", 2)):
        assert value(samples, "graphile_py_job_duration_seconds_count", task=task) == count
        assert value(samples, "graphile_py_job_duration_seconds_bucket", task=task, le="+Inf") == (
            count
        )
    assert value(samples, "graphile_py_db_pool_max_connections") == 10
    connections = value(samples, "graphile_py_db_pool_connections")
    in_use = value(samples, "graphile_py_db_pool_connections_in_use")
    assert connections is not None and in_use is not None and 0 <= in_use <= connections
    assert value(samples, "graphile_py_listen_reconnects_total") == 0

    # The permanently failed job is what remains, seen by the sampler.
    wait_for(
        lambda: (
            value(scrape(server.url), "graphile_py_queue_jobs", task="bad", state="failed") == 1
        ),
        timeout=30,
    )
    assert get(server.url + "/healthz")[0] == 200
    status, body = get(server.url + "/readyz")
    assert status == 200, body
    assert json.loads(body)["schema_version"] == latest_known_migration()


def test_queue_depth_gauges_and_oldest_ready_job(
    served: tuple[MetricsServer, Counting, TestDatabase],
) -> None:
    server, _, db = served
    now = datetime.now(UTC)
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        # Tasks this pool does not run, so they stay where they are.
        for minutes in (1, 2):
            utils.add_job("elsewhere", run_at=now - timedelta(minutes=minutes))
        for _ in range(3):
            utils.add_job("later", run_at=now + timedelta(hours=1))

    def sampled() -> bool:
        samples = scrape(server.url)
        return (
            value(samples, "graphile_py_queue_jobs", task="elsewhere", state="ready") == 2
            and value(samples, "graphile_py_queue_jobs", task="later", state="scheduled") == 3
        )

    wait_for(sampled, timeout=30)
    samples = scrape(server.url)
    assert value(samples, "graphile_py_queue_jobs", task="later", state="ready") == 0
    assert value(samples, "graphile_py_queue_jobs", task="elsewhere", state="running") == 0
    age = value(samples, "graphile_py_queue_oldest_ready_job_age_seconds", task="elsewhere")
    assert age is not None and age >= 119
    assert value(samples, "graphile_py_queue_oldest_ready_job_age_seconds", task="later") == 0
    # The pool's own tasks are reported even with no jobs.
    assert value(samples, "graphile_py_queue_jobs", task="ok", state="ready") == 0
    assert value(samples, "graphile_py_queue_sample_errors_total") == 0


def test_listen_reconnects_are_counted(
    served: tuple[MetricsServer, Counting, TestDatabase],
) -> None:
    server, _, db = served
    with db.connect() as conn:
        terminated = conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and query like 'LISTEN%%'"
        ).fetchall()
    assert terminated
    wait_for(
        lambda: value(scrape(server.url), "graphile_py_listen_reconnects_total") == 1, timeout=60
    )
    assert get(server.url + "/healthz")[0] == 200


def test_readyz_fails_on_a_schema_with_an_unknown_breaking_migration(db: TestDatabase) -> None:
    with (
        running_pool(db, {"ok": lambda p, h: None}, events=WorkerMetrics()) as pool,
        serve_metrics(pool, port=0) as server,
    ):
        assert get(server.url + "/readyz")[0] == 200
        newer = latest_known_migration() + 1
        with db.connect() as conn:
            conn.execute(
                sql.SQL("insert into {}.migrations (id, breaking) values (%s, true)").format(
                    sql.Identifier(db.schema)
                ),
                (newer,),
            )
        status, body = get(server.url + "/readyz")
        assert status == 503, body
        answer = json.loads(body)
        assert answer["status"] == "unavailable"
        assert f"breaking migration {newer}" in answer["reason"]
        assert get(server.url + "/healthz")[0] == 200  # alive, only not ready


class Gate:
    """A TCP relay to PostgreSQL that can stop letting new connections through.

    Connections already made keep working, so the pool runs on while a new connection
    (what /readyz opens) finds the database unreachable.
    """

    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        self._target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.open = True
        self.dsn = make_conninfo(dsn, host="127.0.0.1", port=str(self._server.getsockname()[1]))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        with client, upstream:
            while True:
                readable, _, _ = select.select(list(peer), [], [])
                for source in readable:
                    try:
                        data = source.recv(65536)
                        if data:
                            peer[source].sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        return

    def close(self) -> None:
        self._server.close()


def test_readyz_fails_while_the_database_is_unreachable_and_healthz_does_not(
    db: TestDatabase,
) -> None:
    gate = Gate(db.dsn)
    try:
        through_gate = TestDatabase(name=db.name, dsn=gate.dsn, schema=db.schema)
        with (
            running_pool(through_gate, {"ok": lambda p, h: None}, events=WorkerMetrics()) as pool,
            serve_metrics(pool, port=0) as server,
        ):
            assert get(server.url + "/readyz")[0] == 200
            gate.open = False
            status, body = get(server.url + "/readyz")
            assert status == 503, body
            assert "Connecting to the database failed" in json.loads(body)["reason"]
            # A database outage is no reason to restart the worker.
            assert get(server.url + "/healthz")[0] == 200
            gate.open = True
            assert get(server.url + "/readyz")[0] == 200
    finally:
        gate.close()


def test_healthz_fails_when_a_worker_thread_has_died(db: TestDatabase) -> None:
    with (
        running_pool(db, {"ok": lambda p, h: None}, events=WorkerMetrics()) as pool,
        serve_metrics(pool, port=0) as server,
    ):
        assert get(server.url + "/healthz")[0] == 200
        # What a bug in the pool would leave behind: a worker thread that ended.
        [slot] = list(pool._slots)
        slot.ran_dry = True
        slot.wake.set()
        slot.thread.join(10)
        status, body = get(server.url + "/healthz")
        assert status == 503, body
        assert slot.worker_id in json.loads(body)["reason"]
        assert get(server.url + "/nowhere")[0] == 404


def test_readyz_while_the_pool_has_not_started(db: TestDatabase) -> None:
    from graphile_py import WorkerOptions, WorkerPool

    metrics = WorkerMetrics()
    pool = WorkerPool(
        {"ok": lambda p, h: None},
        conninfo=db.dsn,
        options=WorkerOptions(schema=db.schema, events=metrics),
    )
    with serve_metrics(pool, port=0) as server:
        status, body = get(server.url + "/readyz")
        assert status == 503 and "starting" in json.loads(body)["reason"]
        assert get(server.url + "/healthz")[0] == 200


def test_a_pool_without_worker_metrics_or_a_busy_port_is_refused(db: TestDatabase) -> None:
    from graphile_py import WorkerOptions, WorkerPool

    bare = WorkerPool({"ok": lambda p, h: None}, conninfo=db.dsn)
    with pytest.raises(ConfigurationError, match="WorkerMetrics"):
        MetricsServer(bare, port=0)
    pool = WorkerPool(
        {"ok": lambda p, h: None},
        conninfo=db.dsn,
        options=WorkerOptions(schema=db.schema, events=WorkerMetrics()),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigurationError, match="cannot serve metrics"):
            MetricsServer(pool, port=taken.getsockname()[1])


def test_two_pools_in_one_process_have_separate_registries(db: TestDatabase) -> None:
    with (
        running_pool(db, {"ok": lambda p, h: None}, events=WorkerMetrics()) as first,
        running_pool(db, {"ok": lambda p, h: None}, events=WorkerMetrics()) as second,
        serve_metrics(first, port=0) as one,
        serve_metrics(second, port=0) as two,
    ):
        assert one.port != two.port
        with db.connect() as conn:
            add_job(conn, "ok", schema=db.schema)

        def total() -> float:
            return sum(
                value(scrape(server.url), "graphile_py_jobs_succeeded_total", task="ok") or 0
                for server in (one, two)
            )

        wait_for(lambda: total() == 1, timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> int | None:
    try:
        return get(url)[0]
    except urllib.error.URLError:
        return None  # not listening yet


def test_run_worker_serves_metrics_while_the_pool_runs(db: TestDatabase) -> None:
    from graphile_py import WorkerOptions, WorkerPool, run_worker

    pools: list[WorkerPool] = []

    class Remember(WorkerEvents):
        def pool_create(self, pool: WorkerPool) -> None:
            pools.append(pool)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            status=run_worker(
                {"ok": lambda p, h: None},
                conninfo=db.dsn,
                options=WorkerOptions(schema=db.schema, events=Remember()),
                handle_signals=False,
                metrics_port=port,
                metrics_interval=0.2,
            )
        )
    )
    thread.start()
    try:
        wait_for(lambda: _answers(url + "/readyz") == 200, timeout=60)
        with db.connect() as conn:
            add_job(conn, "ok", schema=db.schema)
            add_job(conn, "ok", schema=db.schema)
        wait_for(
            lambda: value(scrape(url), "graphile_py_jobs_succeeded_total", task="ok") == 2,
            timeout=30,
        )
        assert get(url + "/healthz")[0] == 200
    finally:
        wait_for(lambda: pools, timeout=30)
        pools[0].request_stop("test finished")
        thread.join(60)
    assert result == {"status": 0}
    assert _answers(url + "/healthz") is None  # the server stopped with the pool


# -- the command line ------------------------------------------------------------------------

TASKS = """
from graphile_py import TaskRegistry

registry = TaskRegistry()

@registry.task
def cli_ok(payload, helpers):
    pass

@registry.task
def cli_bad(payload, helpers):
    raise ValueError("cli failure")
"""

_SERVING = re.compile(r"Serving metrics and health checks on (http://[\d.]+:\d+)")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PGDATABASE"}}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_the_worker_command_serves_metrics(db: TestDatabase, tmp_path: Path) -> None:
    (tmp_path / "metrics_cli_tasks.py").write_text(TASKS)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "graphile_py",
            "worker",
            "-c",
            db.dsn,
            "-s",
            db.schema,
            "--tasks",
            "metrics_cli_tasks:registry",
            "--metrics-port",
            "0",
            "--metrics-host",
            "127.0.0.1",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any(_SERVING.search(line) for line in lines), timeout=60)
        [url] = [m.group(1) for line in lines if (m := _SERVING.search(line))]
        with db.connect() as conn:
            for _ in range(2):
                add_job(conn, "cli_ok", schema=db.schema)
            add_job(conn, "cli_bad", max_attempts=1, schema=db.schema)
        wait_for(
            lambda: (
                value(scrape(url), "graphile_py_jobs_permanently_failed_total", task="cli_bad") == 1
                and value(scrape(url), "graphile_py_jobs_succeeded_total", task="cli_ok") == 2
            ),
            timeout=60,
        )
        samples = scrape(url)
        assert job_counts(samples, "cli_ok") == {
            "started": 2,
            "succeeded": 2,
            "failed": 0,
            "permanently_failed": 0,
        }
        assert value(samples, "graphile_py_job_duration_seconds_count", task="cli_bad") == 1
        assert get(url + "/healthz")[0] == 200
        assert get(url + "/readyz")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        reader.join(10)
        process.stdout.close()  # type: ignore[union-attr]
    assert code == 0, "".join(lines)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=5)


def test_without_prometheus_client_the_error_names_the_extra(
    db: TestDatabase, tmp_path: Path
) -> None:
    block = "import sys; sys.modules['prometheus_client'] = None; "
    library = subprocess.run(
        [
            sys.executable,
            "-c",
            block + "import graphile_py\n"
            "try:\n"
            "    import graphile_py.extras.metrics.collectors\n"
            "except graphile_py.ConfigurationError as exc:\n"
            "    print(exc)\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "pip install 'graphile-py[metrics]'" in library.stdout
    (tmp_path / "metrics_cli_tasks.py").write_text(TASKS)
    command = subprocess.run(
        [
            sys.executable,
            "-c",
            block + "from graphile_py.cli import main; main()",
            "worker",
            "-c",
            db.dsn,
            "-s",
            db.schema,
            "--tasks",
            "metrics_cli_tasks:registry",
            "--metrics-port",
            "0",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert command.returncode == 1, command.stderr
    assert "graphile-py[metrics]" in command.stderr
