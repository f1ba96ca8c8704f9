"""Jobs crossing between graphile-py and the real Node graphile-worker 0.18.0.

Both runtimes work on one database: jobs added by one are run by the other with the exact
payload, a failure recorded by one is retried by the other with Node's backoff, an add by
one wakes the other's idle pool through NOTIFY, both run the same named queue at once
without ever overlapping, both drain one big backlog without running any job twice, and
each only runs the tasks it knows.

The Node side is ``node/driver.mjs`` (the installed npm package imported by absolute
path, no node_modules here). Every task, in either runtime, writes a row to
``public.exec_log`` with start and end times from the database's ``clock_timestamp()``, so
timing comparisons never mix two machines' clocks.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from graphile_py import JobSpec, WorkerOptions, WorkerPool, add_job, add_jobs
from graphile_py.jobs import encode_payload
from graphile_py.pool.execution import error_summary
from graphile_py.tasks import JobHelpers, TaskFunction
from tests.support import TestDatabase

pytestmark = pytest.mark.node

DRIVER = Path(__file__).parent / "node" / "driver.mjs"
NODE_TIMEOUT = 30.0

EXEC_LOG_DDL = """
create table public.exec_log (
  id bigserial primary key,
  runtime text not null,
  job_id bigint not null,
  task text not null,
  queue_name text,
  payload text,
  attempts int,
  last_error text,
  job_created_at timestamptz,
  started_at timestamptz not null,
  finished_at timestamptz
)
"""


# -- helpers -------------------------------------------------------------------------------


def node_url(dsn: str) -> str:
    """A postgres:// URL for a libpq DSN (node-postgres wants a URL)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user") or "postgres"), safe="")
    password = params.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(params.get("host") or "127.0.0.1")
    port = str(params.get("port") or "5432")
    return f"postgresql://{auth}@{host}:{port}/{quote(str(params['dbname']), safe='')}"


def prepare(db: TestDatabase) -> None:
    with db.connect() as conn:
        conn.execute(EXEC_LOG_DDL)


def exec_rows(db: TestDatabase) -> list[dict[str, Any]]:
    """Every task execution so far, in the order they started."""
    with db.connect(row_factory=dict_row) as conn:
        return conn.execute("select * from public.exec_log order by started_at, id").fetchall()


def jobs_view(db: TestDatabase, schema: str, ids: list[int] | None = None) -> list[dict[str, Any]]:
    query = sql.SQL("select * from {}.jobs").format(sql.Identifier(schema))
    params: tuple[Any, ...] = ()
    if ids is not None:
        query = sql.SQL("{} where id = any(%s)").format(query)
        params = (ids,)
    with db.connect(row_factory=dict_row) as conn:
        return conn.execute(sql.SQL("{} order by id").format(query), params).fetchall()


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def recorder(name: str, *, sleep_ms: int = 0, fail: str | None = None) -> TaskFunction:
    """A Python task that logs itself to exec_log exactly as the Node driver's tasks do."""

    def task(payload: Any, helpers: JobHelpers) -> None:
        job = helpers.job
        with helpers.connection() as conn:
            row = conn.execute(
                "insert into public.exec_log (runtime, job_id, task, queue_name, payload,"
                " attempts, last_error, job_created_at, started_at)"
                " values ('python', %s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
                " returning id",
                (
                    job.id,
                    name,
                    helpers.get_queue_name(),
                    json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                    job.attempts,
                    job.last_error,
                    job.created_at,
                ),
            ).fetchone()
        assert row is not None
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        with helpers.connection() as conn:
            conn.execute(
                "update public.exec_log set finished_at = clock_timestamp() where id = %s",
                (row[0],),
            )
        if fail:
            raise RuntimeError(fail)

    return task


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text("utf-8", "replace")

    def diagnostics(self) -> str:
        err = self.stderr.read_text("utf-8", "replace")
        out = self.output()
        return (
            f"exit status {self.proc.poll()}\n--- stderr ---\n{err[-4000:]}"
            f"\n--- stdout ---\n{out[-2000:]}"
        )

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                # It may have printed the line just before exiting.
                for line in self.output().splitlines():
                    if line.startswith(prefix):
                        return line
                raise AssertionError(f"Node driver exited before {prefix!r}\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {prefix!r} from Node in {timeout:g}s\n{self.diagnostics()}"
                )
            time.sleep(0.02)

    def finish(self, timeout: float = NODE_TIMEOUT) -> None:
        """Wait for a successful exit; kill and fail on timeout or error."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"Node driver did not finish in {timeout:g}s\n{self.diagnostics()}"
            ) from None
        assert status == 0, f"Node driver failed\n{self.diagnostics()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


class Node:
    """Starts a Node driver (``driver.mjs`` unless told) against one test database."""

    def __init__(
        self, package: Path, db: TestDatabase, directory: Path, driver: Path = DRIVER
    ) -> None:
        self.package = package
        self.db = db
        self.driver = driver
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def start(self, config: Mapping[str, Any]) -> NodeProcess:
        self.count += 1
        name = f"{config['mode']}-{self.count}"
        config_path = self.dir / f"{name}.json"
        full = {
            "package": str(self.package),
            "connectionString": node_url(self.db.dsn),
            "schema": self.db.schema,
            **config,
        }
        config_path.write_text(json.dumps(full), "utf-8")
        stdout, stderr = self.dir / f"{name}.out", self.dir / f"{name}.err"
        env = {**os.environ, "NO_LOG_SUCCESS": "1"}
        env.pop("GRAPHILE_LOGGER_DEBUG", None)
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                ["node", str(self.driver), str(config_path)],
                cwd=self.dir,  # no crontab file here
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env=env,
            )
        return NodeProcess(proc, stdout, stderr)

    def add(self, ops: list[dict[str, Any]]) -> list[int]:
        """Add jobs through the Node API and return their ids."""
        process = self.start({"mode": "add", "ops": ops})
        try:
            process.finish()
            line = process.wait_for_line("ADDED ", 1)
        finally:
            process.close()
            process.kill()
        return [int(i) for i in json.loads(line.removeprefix("ADDED "))]

    def run_once(self, tasks: Mapping[str, Mapping[str, Any]], concurrency: int = 1) -> None:
        process = self.start({"mode": "once", "tasks": tasks, "concurrency": concurrency})
        try:
            process.finish()
            process.wait_for_line("DONE", 1)
        finally:
            process.close()
            process.kill()

    @contextmanager
    def running(
        self,
        tasks: Mapping[str, Mapping[str, Any]],
        *,
        concurrency: int = 1,
        poll_interval_ms: int = 2000,
    ) -> Iterator[NodeProcess]:
        """A continuous Node worker, ready (LISTENing) on entry and stopped on exit."""
        process = self.start(
            {
                "mode": "run",
                "tasks": tasks,
                "concurrency": concurrency,
                "pollInterval": poll_interval_ms,
            }
        )
        stopped = False
        try:
            process.wait_for_line("READY", NODE_TIMEOUT)
            yield process
            process.close()  # stdin EOF: the driver stops the runner gracefully
            process.finish(timeout=20)
            stopped = True
            process.wait_for_line("STOPPED", 1)
        finally:
            if not stopped:
                process.close()
                with suppress(subprocess.TimeoutExpired):
                    process.proc.wait(timeout=10)
                process.kill()


@contextmanager
def python_pool(
    db: TestDatabase,
    tasks: Mapping[str, TaskFunction],
    *,
    concurrency: int = 1,
    poll_interval: float = 2.0,
) -> Iterator[WorkerPool]:
    """A continuous Python pool running in a thread; stopped and joined on exit."""
    pool = WorkerPool(
        tasks,
        conninfo=db.dsn,
        options=WorkerOptions(
            schema=db.schema, concurrency=concurrency, poll_interval=poll_interval
        ),
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pool.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="python-pool", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: pool.wait_listening(0.1) or bool(errors) or not thread.is_alive(),
            NODE_TIMEOUT,
            "the Python pool to listen",
        )
        assert not errors, errors
        yield pool
    finally:
        pool.request_stop("test finished")
        thread.join(timeout=40)
        assert not thread.is_alive(), "the Python pool did not stop within 40s"
    assert not errors, errors


def run_python_once(db: TestDatabase, tasks: Mapping[str, TaskFunction]) -> None:
    pool = WorkerPool(tasks, conninfo=db.dsn, options=WorkerOptions(schema=db.schema), once=True)
    assert pool.run() == 0


def assert_ran_once_each(rows: list[dict[str, Any]], ids: list[int]) -> None:
    counts = Counter(row["job_id"] for row in rows)
    duplicates = {job_id: n for job_id, n in counts.items() if n > 1}
    assert not duplicates, f"jobs ran more than once: {duplicates}"
    missing = set(ids) - set(counts)
    assert not missing, f"{len(missing)} jobs never ran, e.g. {sorted(missing)[:10]}"
    extra = set(counts) - set(ids)
    assert not extra, f"unexpected jobs ran: {sorted(extra)[:10]}"


def assert_no_overlap(rows: list[dict[str, Any]]) -> None:
    """No execution starts before every earlier-started one has finished."""
    assert all(row["finished_at"] is not None for row in rows), "an execution never finished"
    ordered = sorted(rows, key=lambda row: (row["started_at"], row["id"]))
    latest_end = None
    latest = None
    for row in ordered:
        if latest_end is not None:
            assert row["started_at"] >= latest_end, (
                f"{row['runtime']} job {row['job_id']} started at {row['started_at']} while"
                f" {latest['runtime']} job {latest['job_id']} ran until {latest_end}"  # type: ignore[index]
            )
        if latest_end is None or row["finished_at"] > latest_end:
            latest_end, latest = row["finished_at"], row


def db_now(db: TestDatabase) -> Any:
    with db.connect() as conn:
        row = conn.execute("select now()").fetchone()
    assert row is not None
    return row[0]


def private_queue(db: TestDatabase, name: str) -> dict[str, Any]:
    with db.connect(row_factory=dict_row) as conn:
        row = conn.execute(
            sql.SQL("select * from {}._private_job_queues where queue_name = %s").format(
                sql.Identifier(db.schema)
            ),
            (name,),
        ).fetchone()
    assert row is not None, f"no queue {name!r}"
    return row


PAYLOAD: dict[str, Any] = {
    "text": "héllo wörld 🐘 — ünïcode",
    "quote": 'a "quoted" \\ back\\slash\nnew line\ttab',
    "n": 42,
    "neg": -7,
    "f": 1.5,
    "big": 2**53 - 1,
    "empty": "",
    "nothing": None,
    "yes": True,
    "no": False,
    "nested": {"list": [1, "two", None, True, {"deep": []}], "obj": {}},
}


@pytest.fixture
def node(node_worker: Path, db: TestDatabase, tmp_path: Path) -> Node:
    prepare(db)
    return Node(node_worker, db, tmp_path / "node")


# -- 1. Python adds, Node runs ---------------------------------------------------------------


def test_python_job_runs_on_node_with_exact_payload(node: Node, db: TestDatabase) -> None:
    with db.connect() as conn:
        first = add_job(conn, "from_python", PAYLOAD, schema=db.schema)
        second = add_jobs(
            conn,
            [
                JobSpec("from_python", [1, "a", {"b": None}], queue_name="py-q"),
                JobSpec("from_python", "just a string"),
            ],
            schema=db.schema,
        )
    ids = [first.id, *(job.id for job in second)]

    node.run_once({"from_python": {}})

    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    by_id = {row["job_id"]: row for row in rows}
    assert all(row["runtime"] == "node" and row["attempts"] == 1 for row in rows), rows
    # Node sees exactly what Python stored: JSON.stringify gives back our bytes.
    assert by_id[first.id]["payload"] == encode_payload(PAYLOAD)
    assert json.loads(by_id[first.id]["payload"]) == PAYLOAD
    assert json.loads(by_id[second[0].id]["payload"]) == [1, "a", {"b": None}]
    assert by_id[second[0].id]["queue_name"] == "py-q"
    assert json.loads(by_id[second[1].id]["payload"]) == "just a string"
    assert jobs_view(db, db.schema, ids) == []
    assert private_queue(db, "py-q")["locked_by"] is None


def test_failures_back_off_and_retry_across_runtimes(node: Node, db: TestDatabase) -> None:
    """Node fails a job, Python retries it; Python fails a job, Node retries it.

    ``node_first`` is failed by Node and retried by Python; ``py_first`` the other way
    round; ``node_last`` has one attempt, so once Node fails it nobody may run it again.
    """
    with db.connect() as conn:
        node_first = add_job(
            conn, "node_first", {"k": 1}, queue_name="retry-q", max_attempts=3, schema=db.schema
        )
        py_first = add_job(
            conn, "py_first", {"k": 2}, queue_name="retry-p", max_attempts=3, schema=db.schema
        )
        node_last = add_job(conn, "node_first", {"k": 3}, max_attempts=1, schema=db.schema)
    before = db_now(db)
    node.run_once({"node_first": {"fail": "boom from node"}})
    run_python_once(db, {"py_first": recorder("py_first", fail="boom from python")})
    after = db_now(db)
    ids = [node_first.id, py_first.id, node_last.id]

    def failures_written() -> bool:
        rows = jobs_view(db, db.schema, ids)
        return len(rows) == 3 and all(
            row["locked_at"] is None and row["attempts"] == 1 for row in rows
        )

    wait_until(failures_written, 5, "both failures to be written")
    rows = {row["id"]: row for row in jobs_view(db, db.schema, ids)}
    backoff = timedelta(seconds=math.exp(1))
    slack = timedelta(milliseconds=50)
    for job_id, message in [
        (node_first.id, "boom from node"),
        (py_first.id, "boom from python"),
        (node_last.id, "boom from node"),
    ]:
        row = rows[job_id]
        assert row["attempts"] == 1, row
        # A Node worker stores the message; a Python one adds its traceback after it.
        assert error_summary(row["last_error"]) == message, row
        assert row["locked_by"] is None, row
        assert before + backoff - slack <= row["run_at"] <= after + backoff + slack, (
            before,
            row,
            after,
        )
    assert private_queue(db, "retry-q")["locked_by"] is None
    assert private_queue(db, "retry-p")["locked_by"] is None

    python_retry = {"node_first": recorder("node_first")}
    # Not due yet: a Python worker leaves them alone.
    run_python_once(db, python_retry)
    assert len(exec_rows(db)) == 3
    pending = {row["id"]: row["attempts"] for row in jobs_view(db, db.schema, ids)}
    assert pending == dict.fromkeys(ids, 1)

    due = max(row["run_at"] for row in rows.values())
    wait_until(lambda: db_now(db) >= due, 10, "the retries to be due")
    run_python_once(db, python_retry)
    node.run_once({"py_first": {}})

    runs = exec_rows(db)
    assert len(runs) == 5, runs
    for first_run in runs[:3]:
        assert (first_run["attempts"], first_run["last_error"]) == (1, None), runs
        assert first_run["runtime"] == ("python" if first_run["job_id"] == py_first.id else "node")
    by_job = {(r["job_id"], r["attempts"]): r for r in runs}
    assert set(by_job) == {
        (node_first.id, 1),
        (node_last.id, 1),
        (py_first.id, 1),
        (node_first.id, 2),
        (py_first.id, 2),
    }, runs
    retried_by_python = by_job[node_first.id, 2]
    assert retried_by_python["runtime"] == "python"
    assert retried_by_python["last_error"] == "boom from node"
    assert retried_by_python["queue_name"] == "retry-q"
    assert json.loads(retried_by_python["payload"]) == {"k": 1}
    retried_by_node = by_job[py_first.id, 2]
    assert retried_by_node["runtime"] == "node"
    assert retried_by_node["last_error"].startswith("boom from python\n\nTraceback")
    assert retried_by_node["queue_name"] == "retry-p"
    assert json.loads(retried_by_node["payload"]) == {"k": 2}

    # Both retried jobs are done; the one-attempt job failed for good and stays put.
    (left,) = jobs_view(db, db.schema, ids)
    assert left["id"] == node_last.id
    assert (left["attempts"], left["max_attempts"], left["locked_by"]) == (1, 1, None)
    assert private_queue(db, "retry-q")["locked_by"] is None
    assert private_queue(db, "retry-p")["locked_by"] is None


def test_python_add_wakes_node_worker_through_notify(node: Node, db: TestDatabase) -> None:
    with node.running({"wake_node": {}}, concurrency=2, poll_interval_ms=60_000):
        time.sleep(0.5)  # let the start-up fetches come back empty; the next poll is 60s away
        with db.connect() as conn:
            ids = [add_job(conn, "wake_node", {"n": 1}, schema=db.schema).id]
            ids += [
                job.id for job in add_jobs(conn, [JobSpec("wake_node", {"n": 2})], schema=db.schema)
            ]
        wait_until(lambda: len(exec_rows(db)) == 2, 10, "the Node worker to run Python's jobs")
    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    for row in rows:
        assert row["runtime"] == "node"
        latency = (row["started_at"] - row["job_created_at"]).total_seconds()
        assert latency < 2.0, f"job {row['job_id']} waited {latency:.2f}s: not woken by NOTIFY"
    assert jobs_view(db, db.schema, ids) == []


# -- 2. Node adds, Python runs ---------------------------------------------------------------


def test_node_added_jobs_run_on_python(node: Node, db: TestDatabase) -> None:
    payloads = [
        PAYLOAD,
        {"via": "addJob", "list": [1, 2, 3]},
        {"via": "addJobs", "i": 1},
        {"via": "addJobs", "i": 2},
        {"via": "sql", "ü": "ñ"},
    ]
    ids = node.add(
        [
            {"via": "quickAddJob", "jobs": [{"identifier": "from_node", "payload": payloads[0]}]},
            {
                "via": "addJob",
                "jobs": [
                    {
                        "identifier": "from_node",
                        "payload": payloads[1],
                        "queueName": "nq",
                        "maxAttempts": 5,
                    }
                ],
            },
            {
                "via": "addJobs",
                "jobs": [
                    {"identifier": "from_node", "payload": payloads[2]},
                    {"identifier": "from_node", "payload": payloads[3], "queueName": "nq"},
                ],
            },
            {
                "via": "sql",
                "jobs": [{"identifier": "from_node", "payload": payloads[4], "maxAttempts": 2}],
            },
        ]
    )
    assert len(ids) == 5
    pending = {row["id"]: row for row in jobs_view(db, db.schema, ids)}
    assert pending[ids[1]]["max_attempts"] == 5
    assert pending[ids[1]]["queue_name"] == "nq"
    assert pending[ids[4]]["max_attempts"] == 2

    run_python_once(db, {"from_node": recorder("from_node")})

    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    by_id = {row["job_id"]: row for row in rows}
    for job_id, payload in zip(ids, payloads, strict=True):
        assert by_id[job_id]["runtime"] == "python"
        assert by_id[job_id]["attempts"] == 1
        assert json.loads(by_id[job_id]["payload"]) == payload
    assert by_id[ids[1]]["queue_name"] == "nq"
    assert by_id[ids[3]]["queue_name"] == "nq"
    assert jobs_view(db, db.schema, ids) == []
    assert private_queue(db, "nq")["locked_by"] is None


def test_node_add_wakes_python_pool_through_notify(node: Node, db: TestDatabase) -> None:
    with python_pool(db, {"wake_me": recorder("wake_me")}, concurrency=2, poll_interval=60):
        time.sleep(0.5)  # let the start-up fetches come back empty; the next poll is 60s away
        ids = node.add(
            [
                {"via": "addJob", "jobs": [{"identifier": "wake_me", "payload": {"n": 1}}]},
                {"via": "sql", "jobs": [{"identifier": "wake_me", "payload": {"n": 2}}]},
            ]
        )
        wait_until(lambda: len(exec_rows(db)) == 2, 10, "the Python pool to run Node's jobs")
    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    for row in rows:
        latency = (row["started_at"] - row["job_created_at"]).total_seconds()
        assert latency < 2.0, f"job {row['job_id']} waited {latency:.2f}s: not woken by NOTIFY"
    assert jobs_view(db, db.schema, ids) == []


# -- 3. One named queue, two runtimes at once ------------------------------------------------


def test_shared_named_queue_is_a_mutex_across_runtimes(node: Node, db: TestDatabase) -> None:
    task = "shared_task"
    with (
        node.running({task: {"sleepMs": 3}}, concurrency=4, poll_interval_ms=50),
        python_pool(db, {task: recorder(task, sleep_ms=3)}, concurrency=4, poll_interval=0.05),
    ):
        # A backlog added by Node, then jobs trickled in by Python so that the queue keeps
        # emptying and both runtimes race for each new job.
        ids = node.add(
            [
                {
                    "via": "addJobs",
                    "jobs": [
                        {"identifier": task, "payload": {"i": i}, "queueName": "shared"}
                        for i in range(100)
                    ],
                }
            ]
        )
        with db.connect() as conn:
            for i in range(100, 200):
                ids.append(add_job(conn, task, {"i": i}, queue_name="shared", schema=db.schema).id)
                time.sleep(0.012)

        def drained() -> bool:
            return not jobs_view(db, db.schema, ids) and len(exec_rows(db)) >= len(ids)

        wait_until(drained, 40, "the shared queue to drain", interval=0.1)

    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    assert {row["queue_name"] for row in rows} == {"shared"}
    assert_no_overlap(rows)
    runtimes = Counter(row["runtime"] for row in rows)
    assert runtimes["node"] > 0 and runtimes["python"] > 0, runtimes
    assert private_queue(db, "shared")["locked_by"] is None


# -- 4. A big mixed backlog drained by both ---------------------------------------------------


def test_two_thousand_jobs_each_run_exactly_once(node: Node, db: TestDatabase) -> None:
    task = "bulk_task"
    queues = ["q0", "q1", "q2", "q3"]

    def queue_for(i: int) -> str | None:
        return queues[(i // 10) % len(queues)] if i % 10 == 0 else None

    def node_job(i: int) -> dict[str, Any]:
        job: dict[str, Any] = {"identifier": task, "payload": {"from": "node", "i": i}}
        if queue_for(i):
            job["queueName"] = queue_for(i)
        return job

    with (
        node.running({task: {}}, concurrency=4, poll_interval_ms=200),
        python_pool(db, {task: recorder(task)}, concurrency=4, poll_interval=0.2),
    ):
        adder = node.start(
            {
                "mode": "add",
                "ops": [
                    {"via": "addJobs", "jobs": [node_job(i) for i in range(0, 500)]},
                    {"via": "addJob", "jobs": [node_job(i) for i in range(500, 950)]},
                    {"via": "sql", "jobs": [node_job(i) for i in range(950, 1000)]},
                ],
            }
        )
        try:
            python_ids: list[int] = []
            with db.connect() as conn:
                specs = [
                    JobSpec(task, {"from": "python", "i": i}, queue_name=queue_for(i))
                    for i in range(500)
                ]
                python_ids += [job.id for job in add_jobs(conn, specs, schema=db.schema)]
                for i in range(500, 1000):
                    job = add_job(
                        conn,
                        task,
                        {"from": "python", "i": i},
                        queue_name=queue_for(i),
                        schema=db.schema,
                    )
                    python_ids.append(job.id)
            adder.finish()
            line = adder.wait_for_line("ADDED ", 1)
        finally:
            adder.close()
            adder.kill()
        node_ids = [int(i) for i in json.loads(line.removeprefix("ADDED "))]
        ids = python_ids + node_ids
        assert len(set(ids)) == 2000

        def drained() -> bool:
            return not jobs_view(db, db.schema) and len(exec_rows(db)) >= 2000

        wait_until(drained, 60, "2000 jobs to be drained", interval=0.2)

    rows = exec_rows(db)
    assert len(rows) == 2000
    assert len({row["job_id"] for row in rows}) == 2000
    assert_ran_once_each(rows, ids)
    assert jobs_view(db, db.schema) == []
    for queue in queues:
        assert private_queue(db, queue)["locked_by"] is None
        assert_no_overlap([row for row in rows if row["queue_name"] == queue])
    runtimes = Counter(row["runtime"] for row in rows)
    assert runtimes["node"] > 0 and runtimes["python"] > 0, runtimes


# -- 5. Split by task --------------------------------------------------------------------------


def test_each_runtime_runs_only_its_own_tasks(node: Node, db: TestDatabase) -> None:
    with db.connect() as conn:
        specs = []
        for i in range(15):
            queue = "mixed" if i % 3 == 0 else None
            specs.append(JobSpec("py_task", {"i": i}, queue_name=queue))
            specs.append(JobSpec("node_task", {"i": i}, queue_name=queue))
        specs.append(JobSpec("unknown_task", {"orphan": 1}))
        specs.append(JobSpec("unknown_task", {"orphan": 2}, queue_name="mixed"))
        jobs = add_jobs(conn, specs, schema=db.schema)
    orphans = [job.id for job in jobs if job.task_identifier == "unknown_task"]
    known = [job.id for job in jobs if job.task_identifier != "unknown_task"]

    with (
        node.running({"node_task": {"sleepMs": 2}}, concurrency=2, poll_interval_ms=100),
        python_pool(
            db, {"py_task": recorder("py_task", sleep_ms=2)}, concurrency=2, poll_interval=0.1
        ),
    ):

        def done() -> bool:
            remaining = [row["id"] for row in jobs_view(db, db.schema)]
            return sorted(remaining) == sorted(orphans) and len(exec_rows(db)) >= 30

        wait_until(done, 30, "both runtimes to run their own jobs", interval=0.1)
        time.sleep(0.5)  # a few more polls by both: still nobody touches the orphans

    rows = exec_rows(db)
    assert_ran_once_each(rows, known)
    for row in rows:
        expected = "python" if row["task"] == "py_task" else "node"
        assert row["runtime"] == expected, row
    assert Counter(row["task"] for row in rows) == {"py_task": 15, "node_task": 15}
    leftovers = jobs_view(db, db.schema)
    assert [row["id"] for row in leftovers] == sorted(orphans)
    for row in leftovers:
        assert row["attempts"] == 0
        assert row["locked_at"] is None and row["locked_by"] is None
        assert row["last_error"] is None
    assert private_queue(db, "mixed")["locked_by"] is None
