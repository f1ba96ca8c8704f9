#!/usr/bin/env python3
# ruff: noqa: RUF001
"""graphile-py vs Node graphile-worker 0.18.0 on one PostgreSQL: the benchmark harness.

Run it through ``bash bench/run`` (see bench/README.md). Every measured worker and client
is its own OS process (``py_worker.py``/``py_client.py`` for graphile-py,
``node_worker.mjs`` and Node's own CLI for graphile-worker); this script only sets up
databases, starts the processes, stamps times, polls the database and checks results.

Every scenario gets a fresh database cloned from a migrated template and dropped
afterwards. Python and Node runs alternate (ABAB, then BABA) so drift hits both.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from drain import DrainResult, Started, timed_drain

# pgbouncer_bench.py imports it from here.
from drain import exactly_once as _exactly_once  # noqa: F401
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from report import LABEL, fmt_num, median

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
NODE_GW_VERSION = "0.18.0"
RUNTIMES = ("py", "node")
SCHEMA = "graphile_worker"

# --------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------------------
# the Node package


def node_cache_dir() -> Path:
    base = os.environ.get("GRAPHILE_PY_NODE_CACHE")
    if base:
        return Path(base)
    return Path.home() / ".cache" / "graphile-py" / f"node-graphile-worker-{NODE_GW_VERSION}"


def ensure_node_worker() -> Path:
    """Install graphile-worker@0.18.0 with npm (once; shared with the test suite)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("bench: Node.js and npm are needed (node and npm on PATH)")
    root = node_cache_dir()
    package = root / "node_modules" / "graphile-worker"
    marker = package / "package.json"
    if not marker.exists() or f'"version": "{NODE_GW_VERSION}"' not in marker.read_text():
        log(f"installing graphile-worker@{NODE_GW_VERSION} with npm into {root}")
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "package.json").exists():
            (root / "package.json").write_text('{"name": "graphile-py-interop", "private": true}\n')
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"graphile-worker@{NODE_GW_VERSION}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"bench: npm install failed:\n{result.stderr}")
    return package


# --------------------------------------------------------------------------------------
# databases


class Databases:
    """Creates scenario databases from a migrated template and drops them all at the end."""

    def __init__(
        self,
        admin_dsn: str,
        schema_from: str,
        node_package: Path,
        synchronous_commit: str | None = None,
    ) -> None:
        self.admin_dsn = admin_dsn
        self.synchronous_commit = synchronous_commit
        self.token = secrets.token_hex(4)
        self.created: list[str] = []
        self.counter = 0
        self.template = self._name("tpl")
        self._create(self.template)
        dsn = self.dsn(self.template)
        if schema_from == "node":
            subprocess.run(
                ["node", str(node_package / "dist" / "cli.js"), "--schema-only", "-c", dsn],
                check=True,
                capture_output=True,
                timeout=120,
            )
        else:
            from graphile_py import migrate

            with psycopg.connect(dsn, autocommit=True) as conn:
                migrate(conn, schema=SCHEMA)
        self.waiting_templates: dict[int, str] = {}

    def _name(self, kind: str) -> str:
        self.counter += 1
        return f"gpbench_{self.token}_{kind}_{self.counter}"

    def dsn(self, name: str) -> str:
        return url_for(self.admin_dsn, name)

    def _create(self, name: str, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(query)
            self.created.append(name)
            if self.synchronous_commit:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                        sql.Identifier(name), sql.Literal(self.synchronous_commit)
                    )
                )

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        with suppress(ValueError):
            self.created.remove(name)

    def template_with_waiting(self, waiting: int) -> str:
        """A template holding ``waiting`` future-dated jobs, vacuumed and analysed."""
        if waiting not in self.waiting_templates:
            name = self._name(f"w{waiting}")
            self._create(name, self.template)
            started = time.perf_counter()
            with psycopg.connect(self.dsn(name), autocommit=True) as conn:
                insert_jobs(conn, waiting, run_at_sql="now() + interval '365 days'")
                conn.execute(
                    sql.SQL("VACUUM ANALYZE {}._private_jobs").format(sql.Identifier(SCHEMA))
                )
            log(
                f"template with {waiting:,} waiting jobs built in"
                f" {time.perf_counter() - started:.1f}s"
            )
            self.waiting_templates[waiting] = name
        return self.waiting_templates[waiting]

    def extra_template(self, kind: str, install: Callable[[str], None]) -> str:
        """An empty database that ``install(dsn)`` prepares (a peer's schema), kept to the end."""
        name = self._name(kind)
        self._create(name)
        install(self.dsn(name))
        return name

    @contextmanager
    def scenario(self, waiting: int = 0, template: str | None = None) -> Iterator[str]:
        """A fresh database for one scenario (dropped afterwards); yields its DSN."""
        if template is None:
            template = self.template_with_waiting(waiting) if waiting else self.template
        name = self._name("run")
        self._create(name, template)
        try:
            yield self.dsn(name)
        finally:
            self.drop(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with suppress(Exception):
                self.drop(name)


def url_for(dsn: str, dbname: str) -> str:
    """A postgresql:// URL for ``dbname`` (node-postgres understands URLs, not key=value)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user") or os.environ.get("PGUSER") or "postgres"), safe="")
    password = params.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(params.get("host") or "127.0.0.1")
    port = str(params.get("port") or 5432)
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname, safe='')}"


def insert_jobs(
    conn: psycopg.Connection[Any],
    count: int,
    *,
    run_at_sql: str = "null",
    task: str = "noop",
    chunk: int = 100_000,
) -> tuple[int, int]:
    """Add ``count`` jobs through the schema's add_jobs() in chunks; return (min id, max id).

    One SQL statement per chunk (generate_series inside the database), so the client
    does no per-job work and the statement returns three numbers, not the rows.
    """
    query = sql.SQL(
        "select min(id), max(id), count(*) from {schema}.add_jobs(array("
        "select row(%s, json_build_object('i', i), null, " + run_at_sql + ","
        " null, null, null, null)::{schema}.job_spec from generate_series(1, %s) as i))"
    ).format(schema=sql.Identifier(SCHEMA))
    low = high = None
    remaining = count
    while remaining > 0:
        size = min(chunk, remaining)
        row = conn.execute(query, (task, size)).fetchone()
        assert row is not None and row[2] == size, row
        low = row[0] if low is None else low
        high = row[1]
        remaining -= size
    assert low is not None and high is not None
    return int(low), int(high)


def task_id(conn: psycopg.Connection[Any], identifier: str) -> int:
    row = conn.execute(
        sql.SQL("select id from {}._private_tasks where identifier = %s").format(
            sql.Identifier(SCHEMA)
        ),
        (identifier,),
    ).fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------------------
# processes


class Proc:
    """A worker or client process: protocol lines from stdout, stderr to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        logdir: Path,
        tag: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tag = tag
        #: Where a worker writes the ids its no-op task ran (workers only).
        self.ids_file: Path | None = None
        self.stderr_path = logdir / f"{tag}.stderr"
        self.stdout_path = logdir / f"{tag}.stdout"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115
        self._stdout_log = open(self.stdout_path, "w")  # noqa: SIM115
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            cwd=cwd,
            env=env,
        )
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._stdout_log.write(line)
            self.lines.put((time.perf_counter(), line.rstrip("\n")))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{self.tag}: no {prefix!r} line within {timeout}s{self.stderr_tail()}"
                )
            try:
                item = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                self.lines.put(None)
                self.popen.wait(timeout=10)
                raise RuntimeError(
                    f"{self.tag}: exited ({self.popen.returncode}) before"
                    f" printing {prefix!r}{self.stderr_tail()}"
                )
            if item[1].startswith(prefix):
                return item[1]

    def vm_hwm_mb(self) -> float:
        """Peak resident set size (VmHWM) of the process so far, in MB."""
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return math.nan

    def stop(self, timeout: float = 120) -> str:
        """Ask for a graceful stop (a "stop" line, then EOF); return the STOPPED line."""
        assert self.popen.stdin is not None
        with suppress(BrokenPipeError, OSError):
            self.popen.stdin.write("stop\n")
            self.popen.stdin.flush()
            self.popen.stdin.close()
        line = self.wait_for("STOPPED", timeout)
        self.popen.wait(timeout=30)
        self.close()
        if self.popen.returncode != 0:
            raise RuntimeError(
                f"{self.tag}: exit status {self.popen.returncode}{self.stderr_tail()}"
            )
        return line

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            with suppress(Exception):
                self.popen.wait(timeout=10)
        self.close()

    def close(self) -> None:
        self._stderr.close()
        with suppress(Exception):
            self._reader.join(timeout=5)
        self._stdout_log.close()

    def stderr_tail(self) -> str:
        self._stderr.flush()
        try:
            text = self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f"\n--- {self.stderr_path} (tail) ---\n{text}" if text else ""


# --------------------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node_package = ensure_node_worker()
        self.logdir = Path(tempfile.mkdtemp(prefix="graphile-py-bench-"))
        self.db = Databases(args.dsn, args.schema_from, self.node_package, args.synchronous_commit)
        self.python = sys.executable
        self.node_env = {**os.environ, "NO_LOG_SUCCESS": "1"}
        self.seq = 0
        self.py_batching = self._py_batching_supported()
        # The history needs the side schema, which only graphile-py's migrate installs.
        self.py_history = self._py_history_supported() and args.schema_from == "py"
        self.procs: list[Proc] = []

    @staticmethod
    def _py_batching_supported() -> bool:
        from graphile_py import WorkerOptions

        names = {field.name for field in dataclasses.fields(WorkerOptions)}
        return {"local_queue_size", "complete_job_batch_delay", "fail_job_batch_delay"} <= names

    @staticmethod
    def _py_history_supported() -> bool:
        from graphile_py import WorkerOptions

        return "history" in {field.name for field in dataclasses.fields(WorkerOptions)}

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        self.db.drop_all()

    def _tag(self, what: str) -> str:
        self.seq += 1
        return f"{self.seq:04d}-{what}"

    def _config(self, tag: str, **config: Any) -> Path:
        path = self.logdir / f"{tag}.json"
        path.write_text(json.dumps(config))
        return path

    # -- processes ---------------------------------------------------------------------

    def spawn_worker(
        self,
        runtime: str,
        dsn: str,
        *,
        concurrency: int,
        batched: bool,
        history: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Proc:
        tag = self._tag(f"{runtime}-worker")
        ids_file = self.logdir / f"{tag}.ids"
        if runtime == "py":
            cfg = self._config(
                tag,
                dsn=dsn,
                concurrency=concurrency,
                max_pool_size=self.args.max_pool_size,
                batched=batched,
                history=history,
                ids_file=str(ids_file),
                **(extra or {}),
            )
            proc = Proc(
                [self.python, str(BENCH / "py_worker.py"), str(cfg)], logdir=self.logdir, tag=tag
            )
        else:
            cfg = self._config(
                tag,
                mode="run",
                package=str(self.node_package),
                dsn=dsn,
                concurrency=concurrency,
                maxPoolSize=self.args.max_pool_size,
                batched=batched,
                idsFile=str(ids_file),
            )
            proc = Proc(
                ["node", str(BENCH / "node_worker.mjs"), str(cfg)],
                logdir=self.logdir,
                tag=tag,
                env=self.node_env,
            )
        proc.ids_file = ids_file
        self.procs.append(proc)
        return proc

    def finish(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    # -- progress --------------------------------------------------------------------

    @staticmethod
    def log_progress(message: str) -> None:
        log(message)

    @staticmethod
    def log_drain(system: str, what: str, result: DrainResult) -> None:
        log(
            f"  {system}: drain {what} {result.rate:,.0f} jobs/s ({result.seconds:.2f}s, RSS"
            f" {result.rss_mb:.0f} MB, server CPU {result.cpu_ms_per_1000:.0f} ms/1000 jobs,"
            f" WAL {result.wal_per_job:.0f} B/job, exactly once: {result.exactly_once})"
        )
        if result.lost_backends:
            log(f"  {system}: {result.lost_backends} backend(s) exited mid-drain: CPU not counted")

    # -- enqueue -----------------------------------------------------------------------

    def enqueue(self, runtime: str, mode: str, count: int) -> float:
        """Jobs per second of one enqueue client (its own timing of the calls)."""
        with self.db.scenario() as dsn:
            tag = self._tag(f"{runtime}-enqueue-{mode}")
            if runtime == "py":
                argv = [self.python, str(BENCH / "py_client.py"), dsn, mode, str(count)]
                proc = Proc(argv, logdir=self.logdir, tag=tag)
            else:
                cfg = self._config(
                    tag, mode=mode, package=str(self.node_package), dsn=dsn, count=count
                )
                proc = Proc(
                    ["node", str(BENCH / "node_worker.mjs"), str(cfg)],
                    logdir=self.logdir,
                    tag=tag,
                    env=self.node_env,
                )
            try:
                seconds = float(proc.wait_for("TIME", 1800).split()[1])
                proc.wait_for("ADDED", 60)
                proc.popen.wait(timeout=60)
            finally:
                proc.kill()
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(
                    sql.SQL(
                        "select count(*) from {}._private_jobs where task_id = ("
                        "select id from {}._private_tasks where identifier = 'noop')"
                    ).format(sql.Identifier(SCHEMA), sql.Identifier(SCHEMA))
                ).fetchone()
            if row is None or row[0] != count:
                raise RuntimeError(f"{tag}: expected {count} jobs in the table, found {row}")
        return count / seconds

    # -- drain -------------------------------------------------------------------------

    def drain(
        self,
        runtime: str,
        *,
        processes: int,
        batched: bool,
        n: int,
        waiting: int = 0,
        history: bool = False,
    ) -> DrainResult:
        """Workers ready and idle, then N jobs committed at once; time until all are gone.

        ``history``: graphile-py's workers record every attempt in the job history.
        """
        with self.db.scenario(waiting) as dsn:
            workers = [
                self.spawn_worker(
                    runtime,
                    dsn,
                    concurrency=self.args.concurrency,
                    batched=batched,
                    history=history,
                )
                for _ in range(processes)
            ]

            def ready(_conn: psycopg.Connection[Any]) -> None:
                for worker in workers:
                    worker.wait_for("READY", 120)

            return timed_drain(
                dsn,
                workers,
                wait_ready=ready,
                add_jobs=self.add_drain_jobs(n),
                left=self.jobs_left,
                stop=self.finish,  # type: ignore[arg-type]
                n=n,
                poll_s=self.args.poll_ms / 1000,
            )

    def add_drain_jobs(self, n: int) -> Callable[[psycopg.Connection[Any]], Started]:
        """The N jobs of a graphile-py or Node drain, added in one statement by the harness."""

        def add(conn: psycopg.Connection[Any]) -> Started:
            # Statistics that know about the ready jobs become visible together with
            # them, as autovacuum would have them: never analysed, or analysed with
            # only future jobs, the claim is a full scan (see claim_plans).
            with conn.transaction():
                low, high = insert_jobs(conn, n, chunk=max(n, 1))
                if self.args.analyze:
                    conn.execute(sql.SQL("ANALYZE {}._private_jobs").format(sql.Identifier(SCHEMA)))
            return Started(low, high, time.perf_counter())

        return add

    #: Whether any of the N jobs is left: completing a job deletes its row, and the N jobs
    #: have consecutive ids, so the primary key answers cheaply whatever else is in the table.
    jobs_left = sql.SQL(
        "select exists(select 1 from {}._private_jobs where id between %s and %s)"
    ).format(sql.Identifier(SCHEMA))

    def _wait_drained(
        self, conn: psycopg.Connection[Any], low: int, high: int, started: float, n: int
    ) -> float:
        # The N jobs have consecutive ids; completing a job deletes its row. The primary
        # key answers "is any left" cheaply, whatever else the table holds.
        query = sql.SQL(
            "select exists(select 1 from {}._private_jobs where id between %s and %s)"
        ).format(sql.Identifier(SCHEMA))
        timeout = max(300.0, n / 100)
        interval = self.args.poll_ms / 1000
        while True:
            row = conn.execute(query, (low, high)).fetchone()
            now = time.perf_counter()
            if row is not None and not row[0]:
                return now - started
            if now - started > timeout:
                left = conn.execute(
                    sql.SQL(
                        "select count(*), count(*) filter (where locked_at is not null),"
                        " max(last_error) from {}._private_jobs where id between %s and %s"
                    ).format(sql.Identifier(SCHEMA)),
                    (low, high),
                ).fetchone()
                raise RuntimeError(f"drain did not finish in {timeout:.0f}s: left {left}")
            time.sleep(interval)

    # -- latency -----------------------------------------------------------------------

    def latency(self, runtime: str, *, samples: int, waiting: int = 0) -> list[float]:
        """Milliseconds from calling add_job to the first line of the task, idle worker."""
        from graphile_py import add_job

        with self.db.scenario(waiting) as dsn:
            worker = self.spawn_worker(
                runtime, dsn, concurrency=self.args.latency_concurrency, batched=False
            )
            try:
                worker.wait_for("READY", 120)
                latencies: list[float] = []
                seen: Counter[int] = Counter()
                with psycopg.connect(dsn, autocommit=True) as conn:
                    for index in range(samples + self.args.latency_warmup):
                        time.sleep(self.args.latency_gap_ms / 1000)  # the worker is idle
                        before = time.monotonic_ns()
                        job = add_job(conn, "latency", {"i": index})
                        line = worker.wait_for("RAN", 30)
                        _, job_id, ran_at = line.split()
                        if int(job_id) != job.id:
                            raise RuntimeError(f"latency: ran job {job_id}, expected {job.id}")
                        seen[job.id] += 1
                        if index >= self.args.latency_warmup:
                            latencies.append((int(ran_at) - before) / 1e6)
            except BaseException:
                worker.kill()
                raise
            self.finish(worker)
            if any(count != 1 for count in seen.values()):
                raise RuntimeError("latency: a job ran more than once")
        return latencies

    def latency_stats(self, runtime: str, *, samples: int) -> dict[str, float]:
        lats = self.latency(runtime, samples=samples)
        stats = {
            "min": min(lats),
            "p50": percentile(lats, 50),
            "p95": percentile(lats, 95),
            "p99": percentile(lats, 99),
            "max": max(lats),
        }
        log(
            f"  {runtime}: latency p50 {stats['p50']:.2f} ms p95 {stats['p95']:.2f} ms"
            f" max {stats['max']:.2f} ms"
        )
        return stats

    # -- start + stop ------------------------------------------------------------------

    def start_stop(self, runtime: str, samples: int) -> list[float]:
        """Seconds for the runtime's own CLI, ``--once`` on an empty queue, start to exit."""
        results = []
        with self.db.scenario() as dsn:
            for _ in range(samples):
                tag = self._tag(f"{runtime}-startstop")
                jobs = str(self.args.concurrency)
                pool = str(self.args.max_pool_size)
                if runtime == "py":
                    cli = str(Path(self.python).with_name("graphile-py"))
                    argv = [
                        cli,
                        "worker",
                        "--once",
                        "-j",
                        jobs,
                        "-m",
                        pool,
                        "--tasks",
                        "tasks_noop:tasks",
                        "-c",
                        dsn,
                    ]
                    cwd, env = BENCH, None
                else:
                    argv = [
                        "node",
                        str(self.node_package / "dist" / "cli.js"),
                        "--once",
                        "-j",
                        jobs,
                        "-m",
                        pool,
                        "-c",
                        dsn,
                    ]
                    cwd, env = BENCH / "node_cli", self.node_env
                with open(self.logdir / f"{tag}.log", "w") as out:
                    started = time.perf_counter()
                    status = subprocess.run(
                        argv,
                        cwd=cwd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=120,
                        check=False,
                    ).returncode
                    results.append(time.perf_counter() - started)
                if status != 0:
                    raise RuntimeError(f"{tag}: exit status {status}; see {out.name}")
        return results

    # -- the database alone ------------------------------------------------------------

    def db_ceiling(self, *, batch: int, clients: int, n: int) -> float:
        """Jobs/s of graphile-py's claim + complete statements from pgbench, no dispatch."""
        from graphile_py.db import statements_for

        statements = statements_for(SCHEMA)
        claim = statements.claim_statement(batch=batch > 1, flags=False, node_time=False).decode()
        claim = (
            claim.replace("%(pool)s", ":pool")
            .replace("%(task_ids)s", ":task_ids")
            .replace("%(limit)s", ":lim")
        )
        complete_table = f'"{SCHEMA}"._private_jobs'
        # pgbench's \gset takes exactly one row: the claimed ids are aggregated into one.
        marker = f" update {complete_table} as jobs set attempts"
        head, sep, tail = claim.rpartition(marker)
        if not sep:
            raise RuntimeError("could not find the final UPDATE of the claim statement")
        claim = (
            f"{head}, claimed as ({marker[1:]}{tail})"
            " select array_agg(id)::text as ids, min(id) as id from claimed"
        )
        if batch > 1:  # graphile-py's complete statement for many jobs
            complete = (
                f"delete from {complete_table} as jobs using unnest(:ids::bigint[])"
                " as done(id) where jobs.id = done.id"
            )
        else:  # and for one
            complete = f"delete from {complete_table} where id = :id::bigint"
        script = f"{claim} \\gset\n{complete};\n"
        transactions = max(1, n // (batch * clients))
        total = transactions * batch * clients
        with self.db.scenario() as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                # Slack so that no claim finds only rows locked by the other clients.
                insert_jobs(conn, total + batch * clients * 2)
                tid = task_id(conn, "noop")
            path = self.logdir / f"{self._tag('pgbench')}.sql"
            path.write_text(script)
            params = conninfo_to_dict(dsn)
            argv = [
                "pgbench",
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                str(min(clients, os.cpu_count() or 1)),
                "-t",
                str(transactions),
                "-f",
                str(path),
                "-D",
                "pool=pgbench-ceiling",
                "-D",
                f"task_ids={{{tid}}}",
                "-D",
                f"lim={batch}",
                "-h",
                str(params.get("host", "127.0.0.1")),
                "-p",
                str(params.get("port", 5432)),
                "-U",
                str(params.get("user", "postgres")),
                str(params["dbname"]),
            ]
            env = dict(os.environ)
            if params.get("password"):
                env["PGPASSWORD"] = str(params["password"])
            started = time.perf_counter()
            result = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=1800, check=False
            )
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
            tps = None
            for line in result.stdout.splitlines():
                if line.startswith("tps =") and "without initial connection time" in line:
                    tps = float(line.split()[2])
            with psycopg.connect(dsn, autocommit=True) as conn:
                left = conn.execute(
                    sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(SCHEMA))
                ).fetchone()
            expected_left = batch * clients * 2
            if left is None or left[0] != expected_left:
                raise RuntimeError(f"pgbench: {left} jobs left, expected {expected_left}")
        if tps is None:
            return total / elapsed
        return tps * batch

    # -- claim plans -------------------------------------------------------------------

    def claim_plans(self, waiting: int, n: int) -> tuple[list[str], str]:
        """EXPLAIN ANALYZE of the claim statement in the states a big queue can be in.

        Returns one summary line per state and the full plans.
        """
        from graphile_py.db import statements_for

        claim = statements_for(SCHEMA).claim_statement(batch=False, flags=False, node_time=False)
        analyze = sql.SQL("ANALYZE {}._private_jobs").format(sql.Identifier(SCHEMA))
        summaries: list[str] = []
        plans: list[str] = []

        def explain(conn: psycopg.Connection[Any], tid: int, label: str) -> None:
            with conn.transaction(force_rollback=True):
                rows = conn.execute(
                    b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + claim,
                    {"pool": "explain", "task_ids": [tid], "limit": 1},
                ).fetchall()
            text = "\n".join(r[0] for r in rows)
            # The candidate scan is the first scan node under "CTE candidates".
            scan = next(
                (
                    line.strip().removeprefix("->  ").split(" (actual")[0]
                    for line in text.splitlines()
                    if "Scan on _private_jobs jobs_1" in line
                    or ("Scan using" in line and "jobs_1" in line)
                ),
                "?",
            )
            ms = next(
                (
                    line.split(":")[1].strip()
                    for line in text.splitlines()
                    if line.startswith("Execution Time")
                ),
                "?",
            )
            summaries.append(f"| {label} | {scan} | {ms} |")
            plans.append(f"-- {label}\n{text}")

        with self.db.scenario() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
            insert_jobs(conn, n)
            explain(
                conn,
                task_id(conn, "noop"),
                f"{n:,} ready jobs, never analysed",
            )
        with self.db.scenario(waiting) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
            insert_jobs(conn, n)
            tid = task_id(conn, "noop")
            explain(
                conn,
                tid,
                f"{waiting:,} future-dated jobs, analysed; then {n:,} ready"
                " jobs added (statistics know only future jobs)",
            )
            conn.execute(analyze)
            explain(
                conn, tid, f"the same after ANALYZE (as in the drain runs with {waiting:,} waiting)"
            )
            insert_jobs(conn, waiting, task="other", run_at_sql="now() - interval '1 hour'")
            conn.execute(analyze)
            explain(
                conn,
                tid,
                f"plus {waiting:,} due jobs of a task these workers do not"
                " handle, analysed (they sort first)",
            )
        return summaries, "\n\n".join(plans)


# --------------------------------------------------------------------------------------
# environment description


class LoadSampler:
    """Samples the machine's load and the server's other clients while the bench runs.

    The machine may be shared: this is what tells a reader how quiet it was.
    """

    def __init__(self, dsn: str, interval: float = 10.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self.load: list[float] = []
        self.others: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        query = (
            "select count(*) from pg_stat_activity where backend_type = 'client backend'"
            " and coalesce(datname, '') not like 'gpbench\\_%' and pid <> pg_backend_pid()"
        )
        with suppress(Exception), psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                with suppress(OSError), open("/proc/loadavg") as handle:
                    self.load.append(float(handle.read().split()[0]))
                row = conn.execute(query).fetchone()
                self.others.append(int(row[0]) if row else 0)
                if self._stop.wait(self.interval):
                    return

    def summary(self) -> str:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.load:
            return "- Load: not sampled"
        return (
            f"- Load while running: 1-min load average median {median(self.load):.1f}"
            f" (max {max(self.load):.1f}) on {os.cpu_count()} CPUs; other client connections"
            f" to the server (not this bench's): median {median(self.others):.0f}"
            f" (max {max(self.others, default=0)})"
        )


def describe_environment(args: argparse.Namespace, node_package: Path) -> list[str]:
    from importlib.metadata import version

    import graphile_py  # noqa: F401

    cpu = "unknown CPU"
    with suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = math.nan
    with suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "graphile_py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    settings_names = [
        "server_version",
        "max_connections",
        "shared_buffers",
        "effective_cache_size",
        "work_mem",
        "synchronous_commit",
        "fsync",
        "full_page_writes",
        "wal_level",
        "max_wal_size",
        "checkpoint_timeout",
        "autovacuum",
        "jit",
        "random_page_cost",
    ]
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        rows: dict[str, str] = dict(
            conn.execute(
                "select name, current_setting(name) from pg_settings where name = any(%s)",
                (settings_names,),
            ).fetchall()
        )
        changed = conn.execute(
            "select name || '=' || setting from pg_settings where source not in"
            " ('default', 'override', 'client', 'session') and name <> all(%s) order by name",
            (settings_names,),
        ).fetchall()
    pg = ", ".join(f"{name}={rows[name]}" for name in settings_names if name in rows)
    extra = ", ".join(row[0] for row in changed)
    modified = " + uncommitted changes in graphile_py/" if dirty else ""
    batching = "supported" if Bench._py_batching_supported() else "not supported"
    schema = "graphile-py" if args.schema_from == "py" else "Node --schema-only"
    return [
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs (shared by PostgreSQL, workers and"
        f" harness), {mem_gb:.1f} GB RAM; {platform.system()} {platform.release()}",
        f"- graphile-py {version('graphile-py')} (git {commit}{modified}),"
        f" Python {platform.python_version()}, psycopg {version('psycopg')}"
        f" ({psycopg.pq.__impl__} libpq {psycopg.pq.version()}),"
        f" batched settings {batching}",
        f"- Node graphile-worker {NODE_GW_VERSION} (npm, {node_package}), Node {node_version}",
        f"- PostgreSQL: {pg}",
        f"- Other non-default PostgreSQL settings: {extra or 'none'}",
        f"- Schema installed by {schema};"
        f" workers: concurrency {args.concurrency}, max pool size {args.max_pool_size},"
        f" batched = localQueue size 500 + complete/fail batch delay 0",
    ]


# --------------------------------------------------------------------------------------
# the scale curve


def run_scale(bench: Bench, args: argparse.Namespace) -> str:
    sizes = [(size, 0) for size in args.scale_sizes] + [(args.n, w) for w in args.scale_waiting]
    processes = args.scale_processes
    results: dict[tuple[str, int, int, int], list[float]] = {}
    latencies: dict[tuple[str, int], list[dict[str, float]]] = {}
    plans: list[str] = []
    plan_summaries: list[str] = []
    checked = 0
    for n, waiting in sizes:
        label = f"{n:,}" + (f" + {waiting:,} waiting" if waiting else "")
        for rep in range(args.scale_repeat):
            order = RUNTIMES if rep % 2 == 0 else tuple(reversed(RUNTIMES))
            for procs in processes:
                for runtime in order:
                    result = bench.drain(
                        runtime, processes=procs, batched=False, n=n, waiting=waiting
                    )
                    if not result.exactly_once:
                        raise RuntimeError(f"exactly-once failed: {result.problem}")
                    checked += 1
                    results.setdefault((runtime, n, waiting, procs), []).append(result.rate)
                    log(f"  scale {label}: {runtime} {procs}p {result.rate:,.0f} jobs/s")
            # Latency with the table holding this many jobs (future-dated, so not ready).
            table_size = waiting or n
            for runtime in order:
                lats = bench.latency(
                    runtime, samples=args.scale_latency_samples, waiting=table_size
                )
                latencies.setdefault((runtime, table_size), []).append(
                    {
                        "p50": percentile(lats, 50),
                        "p95": percentile(lats, 95),
                        "p99": percentile(lats, 99),
                    }
                )
                log(f"  scale {label}: {runtime} latency p50 {percentile(lats, 50):.2f} ms")
        if waiting:
            summary, full = bench.claim_plans(waiting, n)
            plan_summaries += summary
            plans.append(full)
        template = bench.db.waiting_templates.pop(waiting or n, None)
        if template:
            bench.db.drop(template)

    header = (
        "| jobs drained (table size) | "
        + " | ".join(f"{LABEL[rt]} {p}p" for p in processes for rt in RUNTIMES)
        + " |"
    )
    lines = [header, "|---|" + "---:|" * (len(processes) * 2)]
    for n, waiting in sizes:
        label = f"{n:,}" + (f" (+ {waiting:,} waiting)" if waiting else "")
        cells = [
            fmt_num(median(results[(rt, n, waiting, p)])) for p in processes for rt in RUNTIMES
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Drain rate in jobs/s (median of runs); Np = N worker processes, concurrency"
        f" {args.concurrency} each, default settings. Each job ran exactly once in all"
        f" {checked} drain runs (checked). The N ready jobs are added and the table"
        " analysed in one transaction (see the plans below).",
        "",
    ]
    lines.append(
        "| jobs in the table (not ready) | "
        + " | ".join(f"{LABEL[rt]} p50 / p95 / p99 (ms)" for rt in RUNTIMES)
        + " |"
    )
    lines.append("|---|---:|---:|")
    for n, waiting in sizes:
        size = waiting or n
        cells = []
        for rt in RUNTIMES:
            runs = latencies[(rt, size)]
            cells.append(
                " / ".join(f"{median([r[k] for r in runs]):.2f}" for k in ("p50", "p95", "p99"))
            )
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Latency add_job → task start with an idle worker (concurrency"
        f" {args.latency_concurrency}), {args.scale_latency_samples} jobs per run, with the"
        " table holding that many future-dated jobs, vacuumed and analysed (as"
        " autovacuum would leave it) before the latency jobs arrive.",
    ]
    if plan_summaries:
        lines += [
            "",
            "### The claim statement's plan (one claim, EXPLAIN ANALYZE)",
            "",
            "| table state | scan that finds the next job | execution time |",
            "|---|---|---:|",
            *plan_summaries,
            "",
            "Full plans: bench/results/claim-plans.txt.",
        ]
    table = "\n".join(lines)
    data = {
        "sizes": sizes,
        "processes": list(processes),
        "drain": [[rt, n, w, p, rates] for (rt, n, w, p), rates in results.items()],
        "latency": [[rt, size, runs] for (rt, size), runs in latencies.items()],
    }
    (RESULTS / "scale.json").write_text(json.dumps(data, indent=1) + "\n")
    replot(RESULTS / "scale.json")
    (RESULTS / "claim-plans.txt").write_text("\n\n".join(plans) + "\n")
    return table


def short(count: int) -> str:
    """2000 -> 2k, 1000000 -> 1M (for axis labels)."""
    if count >= 1_000_000:
        return f"{count / 1_000_000:g}M"
    if count >= 1000:
        return f"{count / 1000:g}k"
    return str(count)


def replot(path: Path) -> None:
    """Draw docs/performance-scale.png from the figures run_scale saved."""
    data = json.loads(path.read_text())
    sizes = [(int(n), int(w)) for n, w in data["sizes"]]
    results = {(rt, n, w, p): rates for rt, n, w, p, rates in data["drain"]}
    latencies = {(rt, size): runs for rt, size, runs in data["latency"]}
    plot_scale(sizes, data["processes"], results, latencies, DOCS / "performance-scale.png")


def plot_scale(
    sizes: list[tuple[int, int]],
    processes: Sequence[int],
    results: dict[tuple[str, int, int, int], list[float]],
    latencies: dict[tuple[str, int], list[dict[str, float]]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [short(n) + (f"\n+{short(w)} waiting" if w else "") for n, w in sizes]
    xs = list(range(len(sizes)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    colors = {"py": "tab:blue", "node": "tab:green"}
    styles = {1: "-", 2: "--", 4: ":"}
    for rt in RUNTIMES:
        for p in processes:
            ys = [median(results[(rt, n, w, p)]) for n, w in sizes]
            ax1.plot(
                xs,
                ys,
                styles.get(p, "-."),
                marker="o",
                color=colors[rt],
                label=f"{LABEL[rt]}, {p} process{'es' if p > 1 else ''}",
            )
        for key, style in (("p50", "-"), ("p95", "--")):
            ys = [median([r[key] for r in latencies[(rt, w or n)]]) for n, w in sizes]
            ax2.plot(xs, ys, style, marker="o", color=colors[rt], label=f"{LABEL[rt]} {key}")
    ax1.set_title("Drain rate (no-op jobs, concurrency 24 per process)")
    ax1.set_ylabel("jobs/s")
    ax1.set_xlabel("jobs drained")
    ax1.set_ylim(bottom=0)
    ax2.set_title("Latency add_job → task start, idle worker")
    ax2.set_ylabel("ms (log scale)")
    ax2.set_yscale("log")
    ax2.set_xlabel("jobs waiting in the table")
    for ax in (ax1, ax2):
        ax.set_xticks(xs, labels)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    lat_labels = [short(w or n) for n, w in sizes]
    ax2.set_xticks(xs, lat_labels)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs per enqueue/drain run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: N=2000, 1 run, 50 latency samples"
    )
    parser.add_argument(
        "--one-by-one-n",
        type=int,
        default=0,
        help="add_job calls for the one-by-one enqueue (default: N/4; the"
        " rate is per call, so a quarter of N measures the same thing faster)",
    )
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument(
        "--max-pool-size",
        type=int,
        default=10,
        help="database connections per worker process (both runtimes' default)",
    )
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--latency-warmup", type=int, default=10)
    parser.add_argument(
        "--latency-gap-ms",
        type=float,
        default=20.0,
        help="pause before each latency job so the worker is idle",
    )
    parser.add_argument(
        "--latency-concurrency",
        type=int,
        default=1,
        help="worker concurrency in the latency runs (graphile-worker's latencyTest uses 1)",
    )
    parser.add_argument(
        "--start-stop-samples", type=int, default=3, help="start+stop measurements per run"
    )
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=10.0,
        help="how often the harness checks whether the jobs are gone",
    )
    parser.add_argument(
        "--schema-from",
        choices=("py", "node"),
        default="py",
        help="install the schema with graphile-py (default) or Node",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off"),
        default=None,
        help="set synchronous_commit for the bench databases (default: the server's setting)",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="do not ANALYZE the jobs table in the transaction that adds the jobs to drain",
    )
    parser.add_argument(
        "--drain-only",
        action="store_true",
        help="measure only the drain rows (with and without graphile-py's job history)",
    )
    parser.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        help="leave out the Python peers (PgQueuer, procrastinate)",
    )
    parser.add_argument(
        "--pgq-pool-size",
        type=int,
        default=10,
        help="PgQueuer's asyncpg pool per worker process (0: one connection, AsyncpgDriver)",
    )
    parser.add_argument(
        "--cli-pool-sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10, 25],
        help="max pool sizes of the drain rows through each runtime's own CLI (empty: none)",
    )
    parser.add_argument(
        "--scale", action="store_true", help="run the scale curve instead of the main table"
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="graphile-py through PgBouncer (transaction mode) beside a direct connection:"
        " drain rate, and wake-up latency with and without a direct listen URL",
    )
    parser.add_argument(
        "--pgbouncer-batched",
        action="store_true",
        help="with --pgbouncer: drain with the batched settings (local queue 500, batched"
        " completions and failures)",
    )
    parser.add_argument(
        "--scale-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[2_000, 20_000, 200_000],
    )
    parser.add_argument(
        "--scale-waiting",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1_000_000],
        help="waiting (future-dated) jobs, drained N = --n",
    )
    parser.add_argument(
        "--scale-processes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--scale-repeat", type=int, default=3)
    parser.add_argument(
        "--scale-latency-samples",
        type=int,
        default=100,
        help="latency jobs per run in the scale curve (a claim can be slow there)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="a role that may create databases [env: BENCH_DATABASE_URL]",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw docs/performance-scale.png from bench/results/scale.json",
    )
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown output (default: bench/results/latest.md, or"
        " bench/results/scale.md with --scale)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n = min(args.n, 2_000)
        args.repeat = 1
        args.latency_samples = 50
        args.start_stop_samples = 1
        args.scale_repeat = 1
        args.scale_latency_samples = 30
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        replot(RESULTS / "scale.json")
        return 0
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    bench = Bench(args)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    ok = False
    sampler = LoadSampler(args.dsn)
    try:
        env_lines = describe_environment(args, bench.node_package)
        if args.scale:
            body = run_scale(bench, args)
            title = "graphile-py vs Node graphile-worker 0.18.0: scale curve"
        elif args.pgbouncer:
            from pgbouncer_bench import run_pgbouncer

            body = run_pgbouncer(bench, args)
            title = "graphile-py through PgBouncer (transaction mode) and direct"
        else:
            from main_table import run_main

            body = run_main(bench, args)
            title = "graphile-py vs Node graphile-worker 0.18.0"
        ok = True
    finally:
        bench.close()
        if ok and not args.keep_logs:
            shutil.rmtree(bench.logdir, ignore_errors=True)
        else:
            log(f"process logs kept in {bench.logdir}")
    elapsed = time.perf_counter() - started
    runs = args.scale_repeat if args.scale else args.repeat
    cmd = "bash bench/run " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            f"## {title}",
            "",
            f"`{cmd.strip()}` — {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z},"
            f" took {elapsed / 60:.1f} min. Figures are medians of {runs} run(s);"
            " (min–max) in brackets.",
            "",
            *env_lines,
            sampler.summary(),
            "",
            body,
            "",
        ]
    )
    default_name = "scale.md" if args.scale else "pgbouncer.md" if args.pgbouncer else "latest.md"
    output = args.output or RESULTS / default_name
    output.write_text(text)
    print(text)
    log(f"written to {output} ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
