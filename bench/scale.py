"""Scale: 1, 2, 4, 8 worker processes (each its own pool, as separate hosts) on one database.

Each process is a real ``graphile-py worker`` (the command line, as deployed), with its
own connection pool, LISTEN connection and heartbeat connection. For each process count
the script:

1. empties the queue, starts the processes and waits until every one has registered
   (its heartbeat connection is up) and its LISTEN connection is open;
2. adds ``--n`` jobs in one transaction: one in ``--queued-every`` goes to one of
   ``--queues`` named queues, the rest to no queue;
3. times the drain, from the commit to the moment no job is left;
4. stops the processes with SIGTERM and checks, from what the tasks recorded:
   every job ran exactly once, and no two jobs of one named queue overlapped in time;
5. reports the peak number of connections the processes held (``pg_stat_activity``,
   sampled every 50 ms; each process sets ``PGAPPNAME``, so they are counted apart from
   everything else on the server) next to the budget ``docs/deployment.md`` gives:
   ``processes x (max_pool_size + 2)``.

The task (``scale:tasks`` below, imported by the worker processes from this directory)
appends ``<job id> <queue> <start ns> <end ns>`` to a per-process file with one
``write`` on an ``O_APPEND`` descriptor (CLOCK_REALTIME: one clock for every process of
the machine). Jobs in named queues sleep ``--queue-sleep-ms`` (default 5 ms) so an
overlap would be visible; the others do nothing.

The processes run on one machine and share its CPUs: "hosts" here are separate
processes with separate pools, not separate machines (no network namespaces).

Usage (from the repository root)::

    python bench/scale.py      # 1,2,4,8 processes, N = 20,000: bench/results/scale-hosts.md
    python bench/scale.py --processes 1,2 --n 2000 --dsn postgresql://...   # a quick look

By default a private PostgreSQL cluster (initdb on a free loopback port, as
bench/soak.py does) holds the queue, so the connection counts are this bench's alone and
other users of a shared server are not squeezed; ``--dsn`` uses an existing, migrated
database (``--schema``) instead. ``--json FILE`` writes the results as JSON (the
deployment tests run this script that way at small N). Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from graphile_py import TaskRegistry

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APP_PREFIX = "gpy-scale-"

# -- the task the worker processes run -------------------------------------------------------

tasks = TaskRegistry()
_record_fd: int | None = None


def _record(line: str) -> None:
    global _record_fd
    if _record_fd is None:
        directory = os.environ["GPY_SCALE_RECORD_DIR"]
        _record_fd = os.open(
            os.path.join(directory, f"{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
        )
    os.write(_record_fd, line.encode())


@tasks.task
def scale_job(payload: Any, helpers: Any) -> None:
    """Record when this job ran; jobs of named queues take a few milliseconds."""
    start = time.time_ns()
    sleep_ms = payload.get("sleep_ms", 0) if isinstance(payload, dict) else 0
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    end = time.time_ns()
    # Claimed jobs carry their queue's id (graphile-worker's get_job does not return the name).
    queue = helpers.job.job_queue_id or "-"
    _record(f"{helpers.job.id} {queue} {start} {end}\n")


# -- the harness -------------------------------------------------------------------------------


def _worker_env(record_dir: Path, index: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRAPHILE_PY_") and k not in {"DATABASE_URL", "GRAPHILE_WORKER_SCHEMA"}
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["GPY_SCALE_RECORD_DIR"] = str(record_dir)
    env["PGAPPNAME"] = f"{APP_PREFIX}{index}"
    return env


class ConnectionSampler(threading.Thread):
    """Peak connections held by the scale workers, every 50 ms, until stopped."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.peak_total = 0
        self.peak_per_process = 0
        self.client_addresses: set[str] = set()

    def run(self) -> None:
        # Each process's connections carry its PGAPPNAME, except the heartbeat connection,
        # which names itself after its pool ('graphile-py heartbeat <pool id>').
        query = (
            "select application_name, count(*) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and (application_name like %s or application_name like 'graphile-py heartbeat%%')"
            " group by 1"
        )
        addresses = (
            "select distinct host(client_addr) from pg_stat_activity"
            " where application_name like %s and client_addr is not null"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.05):
                counts = dict(conn.execute(query, (APP_PREFIX + "%",)).fetchall())
                for (address,) in conn.execute(addresses, (APP_PREFIX + "%",)).fetchall():
                    self.client_addresses.add(address)
                total = sum(counts.values())
                own = [n for name, n in counts.items() if name.startswith(APP_PREFIX)]
                self.peak_total = max(self.peak_total, total)
                # +1: each process's heartbeat connection (named after its pool, not us)
                self.peak_per_process = max(self.peak_per_process, max(own, default=0) + 1)


NETNS_NET = "10.231.0.0/16"


class NetworkNamespaces:
    """``count`` network namespaces, each joined to this one by a veth pair.

    Namespace i has 10.231.i.2, this side 10.231.i.1 (where the private cluster also
    listens): its processes reach the database over a network interface, with their own
    network stack, as a separate host would.
    """

    def __init__(self, count: int) -> None:
        self.tag = f"{os.getpid() % 100000}"
        self.count = count
        self.server_addresses = [f"10.231.{i}.1" for i in range(count)]

    def _name(self, i: int) -> str:
        return f"gpyscale{self.tag}-{i}"

    def __enter__(self) -> NetworkNamespaces:
        try:
            for i in range(self.count):
                ns, host_if, ns_if = self._name(i), f"gs{self.tag}h{i}", f"gs{self.tag}n{i}"
                for command in (
                    ["ip", "netns", "add", ns],
                    ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                    ["ip", "link", "set", ns_if, "netns", ns],
                    ["ip", "addr", "add", f"10.231.{i}.1/30", "dev", host_if],
                    ["ip", "link", "set", host_if, "up"],
                    ["ip", "-n", ns, "addr", "add", f"10.231.{i}.2/30", "dev", ns_if],
                    ["ip", "-n", ns, "link", "set", ns_if, "up"],
                    ["ip", "-n", ns, "link", "set", "lo", "up"],
                ):
                    subprocess.run(command, check=True, capture_output=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for i in range(self.count):
            # Deleting the namespace deletes its end of the veth pair, and so the pair.
            subprocess.run(["ip", "netns", "del", self._name(i)], check=False, capture_output=True)
            subprocess.run(
                ["ip", "link", "del", f"gs{self.tag}h{i}"], check=False, capture_output=True
            )

    def hosts(self, dsn: str) -> list[tuple[list[str], str]]:
        """Per namespace: the command prefix and ``dsn`` pointed at this side's address."""
        from psycopg.conninfo import make_conninfo

        return [
            (["ip", "netns", "exec", self._name(i)], make_conninfo(dsn, host=address))
            for i, address in enumerate(self.server_addresses)
        ]


def _count(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def run_once(
    dsn: str,
    schema: str,
    processes: int,
    args: argparse.Namespace,
    hosts: list[tuple[list[str], str]] | None = None,
) -> dict[str, Any]:
    """One drain with ``processes`` worker processes; returns the figures and the checks.

    ``hosts``: per process, a command prefix and the DSN it connects with (network
    namespaces); by default every process runs here and connects with ``dsn``.
    """
    hosts = hosts or [([], dsn)] * processes
    ident = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("delete from {}._private_jobs").format(ident))
        conn.execute(sql.SQL("delete from {}._private_job_queues").format(ident))
    record_dir = Path(tempfile.mkdtemp(prefix="gpy-scale-"))
    logs = [open(record_dir / f"worker-{i}.log", "wb") for i in range(processes)]  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [
                *hosts[i][0],
                sys.executable,
                "-m",
                "graphile_py",
                "--log-level",
                "warning",
                "worker",
                "-c",
                hosts[i][1],
                "-s",
                schema,
                "--tasks",
                "scale:tasks",
                "--jobs",
                str(args.jobs),
                "--max-pool-size",
                str(args.max_pool_size),
            ],
            cwd=BENCH_DIR,
            env=_worker_env(record_dir, i),
            stdout=logs[i],
            stderr=subprocess.STDOUT,
        )
        for i in range(processes)
    ]
    sampler = ConnectionSampler(dsn)
    result: dict[str, Any] = {"processes": processes, "n": args.n}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while True:
                hearts = _count(
                    conn,
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and application_name like 'graphile-py heartbeat%%'",
                )
                listens = _count(
                    conn,
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and application_name like %s and query ilike 'listen%%'",
                    APP_PREFIX + "%",
                )
                if hearts >= processes and listens >= processes:
                    break
                dead = [w.args for w in workers if w.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker processes did not start (heartbeats {hearts}, listens {listens})"
                        f"; logs in {record_dir}"
                    )
                time.sleep(0.1)
            sampler.start()
            spec = sql.SQL(
                "select min(id), max(id) from {s}.add_jobs(array("
                " select row('scale_job',"
                "  case when i %% %s = 0 then json_build_object('sleep_ms', %s::int)"
                "   else '{{}}'::json end,"
                "  case when i %% %s = 0 then 'q' || ((i / %s) %% %s) end,"
                "  null, null, null, null, null)::{s}.job_spec"
                " from generate_series(1, %s) as i))"
            ).format(s=ident)
            with conn.transaction():
                low, high = conn.execute(
                    spec,
                    (
                        args.queued_every,
                        args.queue_sleep_ms,
                        args.queued_every,
                        args.queued_every,
                        args.queues,
                        args.n,
                    ),
                ).fetchone()  # type: ignore[misc]
            started = time.monotonic()
            left_query = sql.SQL(
                "select exists(select 1 from {}._private_jobs where id between %s and %s)"
            ).format(ident)
            drain_deadline = started + args.timeout
            while conn.execute(left_query, (low, high)).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > drain_deadline:
                    raise RuntimeError(f"not drained within {args.timeout} s; logs in {record_dir}")
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            server_peak = _count(
                conn, "select setting::int from pg_settings where name = 'max_connections'"
            )
        result.update(
            seconds=round(elapsed, 3),
            rate=round(args.n / elapsed, 1),
            max_connections=server_peak,
        )
    finally:
        sampler.stop.set()
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        codes = [w.wait(60) for w in workers]
        for log in logs:
            log.close()
    sampler.join(5)
    result.update(
        exit_codes=codes,
        peak_connections=sampler.peak_total,
        peak_connections_per_process=sampler.peak_per_process,
        client_addresses=sorted(sampler.client_addresses),
        budget=processes * (args.max_pool_size + 2),
    )
    result.update(_check(record_dir, int(low), int(high)))
    result["ok"] = (
        result["exactly_once"]
        and result["overlaps"] == 0
        and all(c == 0 for c in codes)
        and result["peak_connections"] <= result["budget"]
    )
    if result["ok"]:
        for path in record_dir.iterdir():
            path.unlink()
        record_dir.rmdir()
    else:
        result["logs"] = str(record_dir)
    return result


def _check(record_dir: Path, low: int, high: int) -> dict[str, Any]:
    """Exactly once and named queues serial, from the tasks' records."""
    runs: dict[int, int] = {}
    by_queue: dict[str, list[tuple[int, int]]] = {}
    for path in record_dir.glob("*.txt"):
        for line in path.read_text().splitlines():
            job_id, queue, start, end = line.split()
            runs[int(job_id)] = runs.get(int(job_id), 0) + 1
            if queue != "-":
                by_queue.setdefault(queue, []).append((int(start), int(end)))
    expected = set(range(low, high + 1))
    twice = sorted(j for j, n in runs.items() if n > 1)
    missing = sorted(expected - runs.keys())
    foreign = sorted(runs.keys() - expected)
    overlaps = 0
    for spans in by_queue.values():
        spans.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return {
        "exactly_once": not (twice or missing or foreign),
        "ran_twice": twice[:10],
        "missing": missing[:10],
        "foreign": foreign[:10],
        "queued_jobs": sum(len(s) for s in by_queue.values()),
        "queues": len(by_queue),
        "overlaps": overlaps,
    }


def _markdown(results: list[dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    base = results[0]["rate"] if results else 1
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## graphile-py: worker processes on one database",
        "",
        f"`python bench/scale.py {' '.join(sys.argv[1:])}` — {stamp}.",
        "",
        *[f"- {note}" for note in notes],
        f"- Each process: `graphile-py worker --jobs {args.jobs} --max-pool-size"
        f" {args.max_pool_size}`; {args.n:,} jobs per drain, one in {args.queued_every} in"
        f" {args.queues} named queues (those sleep {args.queue_sleep_ms} ms), the rest no-op",
        "",
        "| processes | drain (jobs/s) | vs 1 process | exactly once | named-queue jobs"
        " (queues) | overlaps in a named queue | peak connections (all / per process)"
        " | budget N x (pool + 2) | client addresses |",
        "|---:|---:|---:|:-:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['processes']} | {r['rate']:,.0f} | {r['rate'] / base:.2f}x |"
            f" {'yes' if r['exactly_once'] else 'NO'} | {r['queued_jobs']:,} ({r['queues']}) |"
            f" {r['overlaps']} | {r['peak_connections']} / {r['peak_connections_per_process']} |"
            f" {r['budget']} | {len(r['client_addresses'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4,8", help="comma-separated process counts")
    parser.add_argument("--n", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--jobs", type=int, default=4, help="--jobs of each process")
    parser.add_argument("--max-pool-size", type=int, default=4)
    parser.add_argument("--queues", type=int, default=20, help="named queues")
    parser.add_argument(
        "--queued-every", type=int, default=10, help="one job in this many goes to a named queue"
    )
    parser.add_argument("--queue-sleep-ms", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per drain")
    parser.add_argument(
        "--dsn", help="an existing database (migrated) instead of a private cluster"
    )
    parser.add_argument("--schema", default="graphile_worker")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run each process in a network namespace of its own (needs root and ip)",
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--markdown",
        default=str(BENCH_DIR / "results" / "scale-hosts.md"),
        help="write the table here ('-': do not)",
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    if args.netns and (args.dsn or os.geteuid() != 0):
        parser.error("--netns needs root and the private cluster (no --dsn)")
    notes: list[str] = []
    if args.dsn:
        cluster: Any = nullcontext(args.dsn)
        notes.append("Database: given with --dsn")
    else:
        sys.path.insert(0, str(BENCH_DIR))
        from soak import private_cluster

        if args.netns:
            netns = NetworkNamespaces(max(counts))
            cluster = private_cluster(
                None, also_listen_on=tuple(netns.server_addresses), trust_net=NETNS_NET
            )
        else:
            cluster = private_cluster(None)
    results = []
    with netns if args.netns else nullcontext(), cluster as dsn:
        if not args.dsn:
            subprocess.run(
                [sys.executable, "-m", "graphile_py", "migrate", "-c", dsn],
                check=True,
                capture_output=True,
            )
            notes.append("Database: a private PostgreSQL cluster (initdb, defaults, autovacuum on)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]
            maxconn = conn.execute("show max_connections").fetchone()[0]  # type: ignore[index]
        load = os.getloadavg()[0]
        hosts = netns.hosts(dsn) if args.netns else None
        for processes in counts:
            result = run_once(dsn, args.schema, processes, args, hosts and hosts[:processes])
            result["load_before"] = load
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            load = os.getloadavg()[0]
    loads = ", ".join(f"{r['load_before']:.1f}" for r in results)
    notes.insert(
        0,
        f"Machine: {os.cpu_count()} CPUs shared by PostgreSQL, the workers and the"
        f" harness (and other work: 1-min load average before each drain {loads});"
        f" PostgreSQL {version}, max_connections {maxconn}",
    )
    if args.netns:
        notes.append(
            "Each process runs in a network namespace of its own (ip netns) with a veth"
            " link to the database's: its own network stack and address, as a separate"
            " host has; the CPUs and the kernel are still shared"
        )
    else:
        notes.append(
            "Processes on one machine stand in for hosts: each has its own pool,"
            " LISTEN and heartbeat connections; no network between them"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown != "-":
        Path(args.markdown).write_text(_markdown(results, args, notes))
    print(_markdown(results, args, notes))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
