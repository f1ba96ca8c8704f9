"""Soak: a steady enqueue rate for N minutes, watching the jobs table's size and dead tuples.

Every job graphile-py (or Node graphile-worker) runs leaves dead row versions behind: the
insert, the update that locks it, and the delete that completes it. Only VACUUM makes that
space reusable, and VACUUM can only remove a row version that no open transaction may
still see. This script shows both sides of that on a real server with autovacuum on:

* a normal run: the table stays small, dead tuples go up and down with autovacuum;
* ``--hold-transaction START:END``: another session holds a transaction open (with a
  transaction id, so it holds the cluster's xmin horizon back) from minute START to
  minute END. Nothing can be vacuumed meanwhile, dead tuples pile up and every claim has
  to step over them in the index; once the transaction ends, autovacuum reclaims them.

Usage (from the repository root; see docs/deployment.md, *Bloat*)::

    python bench/soak.py --minutes 15 --label normal
    python bench/soak.py --minutes 15 --label held --hold-transaction 3:10
    python bench/soak.py --plot bench/results/soak-normal.csv bench/results/soak-held.csv

By default the run gets a private PostgreSQL cluster (initdb into a temporary directory,
on a free loopback port, autovacuum on with its defaults unless ``--naptime`` says
otherwise), because a shared development server often runs with autovacuum off and the
soak would then only measure that. ``--dsn`` uses an existing database instead (its
``graphile_worker`` schema is migrated; autovacuum must be on there).

Jobs are added by this process at ``--rate`` jobs/s (one ``add_jobs`` call every 100 ms)
and run by ``--processes`` ``graphile-py worker`` processes (``--jobs`` each) with the
no-op task of bench/tasks_noop.py. Every ``--sample-every`` seconds one row goes to
``bench/results/soak-<label>.csv``: jobs added and done, throughput over the interval,
jobs waiting, the oldest waiting job's age, live and dead tuples and the autovacuum count
of ``_private_jobs`` (pg_stat_user_tables), its heap and total size, and the age of the
oldest open transaction's snapshot. A summary goes to ``bench/results/soak-<label>.md``
(``--out-dir`` changes the directory). ``--plot`` draws the CSVs into docs/soak.png (needs
matplotlib, a bench-only dependency: ``bash bench/run`` installs it).

The script exits non-zero if a job was left behind at the end or a worker process died.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from graphile_py import JobSpec, add_jobs

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

COLUMNS = [
    "t_s",
    "added",
    "done",
    "throughput",
    "waiting",
    "oldest_waiting_s",
    "live_tuples",
    "dead_tuples",
    "autovacuums",
    "heap_bytes",
    "total_bytes",
    "oldest_xact_age",
    "holding",
    "probe_ms",
    "probe_buffers",
]

# What a claim does first: find the next available job in jobs_main_index's order. Run
# under EXPLAIN (ANALYZE, BUFFERS) every sample: its pages touched count every dead index
# entry it has to step over, whatever the machine's load.
PROBE_SQL = """
explain (analyze, buffers, format json)
select id from graphile_worker._private_jobs
where is_available = true
order by priority, run_at
limit 1
"""


def _probe(conn: psycopg.Connection[Any]) -> tuple[float, int]:
    """(execution ms, shared buffers hit + read) of PROBE_SQL."""
    row = conn.execute(PROBE_SQL).fetchone()
    assert row is not None
    plan = row[0][0]
    top = plan["Plan"]
    return (
        round(float(plan["Execution Time"]), 3),
        int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0)),
    )


STATS_SQL = """
select s.n_live_tup, s.n_dead_tup, s.autovacuum_count + s.vacuum_count,
       pg_relation_size(s.relid), pg_total_relation_size(s.relid),
       (select coalesce(max(age(backend_xmin)), 0) from pg_stat_activity)
from pg_stat_user_tables as s
where s.relid = 'graphile_worker._private_jobs'::regclass
"""

QUEUE_SQL = """
select count(*),
       coalesce(extract(epoch from now() - min(run_at) filter (where locked_at is null)), 0)
from graphile_worker._private_jobs
"""


# -- a private cluster ---------------------------------------------------------------------


def _bindir() -> Path:
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if candidates:
        return candidates[-1].parent
    raise SystemExit("soak: no PostgreSQL server binaries (initdb, pg_ctl) found on this machine")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_cluster(
    naptime: float | None, *, also_listen_on: tuple[str, ...] = (), trust_net: str | None = None
) -> Iterator[str]:
    """initdb + pg_ctl start on a free loopback port; yields the DSN, removes it all after.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
    ``also_listen_on`` adds addresses to listen on, ``trust_net`` lets clients of that
    network in without a password (bench/scale.py's network namespaces).
    """
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="gpy-soak-"))
    base.chmod(0o755)
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise SystemExit("soak: running as root needs a 'postgres' OS user") from None
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    port = _free_port()
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if trust_net:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {trust_net} trust\n")
    options = [
        f"-p {port}",
        "-c listen_addresses=" + ",".join(("127.0.0.1", *also_listen_on)),
        f"-c unix_socket_directories={base}",
        "-c autovacuum=on",
        "-c max_connections=100",
    ]
    if naptime is not None:
        options.append(f"-c autovacuum_naptime={naptime:g}s")
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(base, ignore_errors=True)


# -- the run -------------------------------------------------------------------------------


@dataclass
class Counter:
    added: int = 0
    error: str | None = None


def _producer(dsn: str, rate: float, stop: threading.Event, counter: Counter) -> None:
    """Add jobs at ``rate`` per second: every 100 ms, whatever the schedule says is due."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start = time.monotonic()
            while not stop.is_set():
                due = int(rate * (time.monotonic() - start)) - counter.added
                if due > 0:
                    add_jobs(conn, [JobSpec("noop", {"n": counter.added + i}) for i in range(due)])
                    counter.added += due
                stop.wait(0.1)
    except Exception as exc:  # reported by the main loop, which then fails the run
        counter.error = f"{type(exc).__name__}: {exc}"


def _holder(
    dsn: str,
    window: tuple[float, float],
    start: float,
    stop: threading.Event,
    holding: threading.Event,
) -> None:
    """Hold a transaction with an xid open from window[0] to window[1] minutes."""
    if stop.wait(max(0.0, start + window[0] * 60 - time.monotonic())):
        return
    with psycopg.connect(dsn) as conn:
        conn.execute("select txid_current()")  # an xid: the xmin horizon stops here
        holding.set()
        stop.wait(max(0.0, start + window[1] * 60 - time.monotonic()))
        conn.rollback()
        holding.clear()


def _start_workers(
    dsn: str, processes: int, jobs: int, logs: Path
) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHILE_PY_")}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    workers = []
    for i in range(processes):
        log = (logs / f"worker-{i}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "graphile_py",
                    "--log-level",
                    "warning",
                    "worker",
                    "-c",
                    dsn,
                    "--tasks",
                    "tasks_noop:tasks",
                    "--jobs",
                    str(jobs),
                ],
                cwd=BENCH_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return workers


def _loadavg() -> float:
    return os.getloadavg()[0]


def run(args: argparse.Namespace, dsn: str) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "graphile_py", "migrate", "-c", dsn],
        check=True,
        capture_output=True,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "select name, setting from pg_settings where name in ('autovacuum',"
                " 'autovacuum_naptime', 'autovacuum_vacuum_threshold',"
                " 'autovacuum_vacuum_scale_factor', 'autovacuum_vacuum_cost_limit',"
                " 'autovacuum_vacuum_cost_delay', 'server_version', 'max_connections')"
            ).fetchall()
        )
    if settings.get("autovacuum") != "on":
        raise SystemExit(
            f"soak: autovacuum is off on {dsn.rsplit('@', maxsplit=1)[-1]}: use the private cluster"
        )
    logs = Path(tempfile.mkdtemp(prefix="gpy-soak-logs-"))
    workers = _start_workers(dsn, args.processes, args.jobs, logs)
    stop, holding = threading.Event(), threading.Event()
    counter = Counter()
    start = time.monotonic()
    threads = [
        threading.Thread(target=_producer, args=(dsn, args.rate, stop, counter), daemon=True)
    ]
    if args.hold_transaction:
        a, b = (float(x) for x in args.hold_transaction.split(":"))
        threads.append(
            threading.Thread(target=_holder, args=(dsn, (a, b), start, stop, holding), daemon=True)
        )
    for thread in threads:
        thread.start()
    rows: list[dict[str, float]] = []
    loads: list[float] = []
    failure = None
    csv_path = out_dir / f"soak-{args.label}.csv"
    with csv_path.open("w", newline="") as handle, psycopg.connect(dsn, autocommit=True) as mon:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        last_t, last_done = 0.0, 0
        deadline = start + args.minutes * 60
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(min(args.sample_every, deadline - now))
            t = time.monotonic() - start
            waiting, oldest = mon.execute(QUEUE_SQL).fetchone()  # type: ignore[misc]
            live, dead, vacuums, heap, total, xact_age = mon.execute(STATS_SQL).fetchone()  # type: ignore[misc]
            probe_ms, probe_buffers = _probe(mon)
            added = counter.added
            done = added - int(waiting)
            row = {
                "t_s": round(t, 1),
                "added": added,
                "done": done,
                "throughput": round((done - last_done) / (t - last_t), 1),
                "waiting": int(waiting),
                "oldest_waiting_s": round(float(oldest), 2),
                "live_tuples": live,
                "dead_tuples": dead,
                "autovacuums": vacuums,
                "heap_bytes": heap,
                "total_bytes": total,
                "oldest_xact_age": xact_age,
                "holding": int(holding.is_set()),
                "probe_ms": probe_ms,
                "probe_buffers": probe_buffers,
            }
            writer.writerow(row)
            handle.flush()
            rows.append(row)
            loads.append(_loadavg())
            last_t, last_done = t, done
            if not args.quiet:
                print(", ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
            if counter.error:
                failure = f"the producer failed: {counter.error}"
                break
            dead_workers = [w.pid for w in workers if w.poll() is not None]
            if dead_workers:
                failure = f"worker process(es) {dead_workers} exited"
                break
    stop.set()
    for thread in threads:
        thread.join(30)
    # Let the workers finish what is left, then stop them gracefully.
    drain_deadline = time.monotonic() + 60
    left = -1
    with psycopg.connect(dsn, autocommit=True) as mon:
        while time.monotonic() < drain_deadline:
            left = int(
                mon.execute("select count(*) from graphile_worker._private_jobs").fetchone()[0]
            )  # type: ignore[index]
            if left == 0:
                break
            time.sleep(0.5)
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    codes = [w.wait(60) for w in workers]
    if left != 0 and failure is None:
        failure = f"{left} job(s) still in the table 60 s after the producer stopped"
    if any(code != 0 for code in codes) and failure is None:
        failure = f"worker exit codes {codes}"
    _summary(
        args,
        settings=settings,
        rows=rows,
        loads=loads,
        added=counter.added,
        failure=failure,
        out_dir=out_dir,
    )
    if failure:
        print(f"soak: FAILED: {failure} (worker logs in {logs})", file=sys.stderr)
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    return 0


def _mb(n: float) -> str:
    return f"{n / 1048576:.2f}"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _table(rows: list[dict[str, float]], minutes: float) -> list[str]:
    """One line per minute (per sample for runs under 3 minutes): the samples in it."""
    lines = [
        "| minute (to) | jobs/s (median) | waiting (max) | oldest waiting s (max) | dead tuples"
        " (min-max) | vacuums | heap MB (max) | total MB (max) | oldest xact age"
        " | next-job probe: pages (max) | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    width = 60.0 if minutes >= 3 else 1e-9
    groups: dict[int, list[dict[str, float]]] = {}
    for r in rows:
        groups.setdefault(int((r["t_s"] - 1e-6) // width), []).append(r)
    for key in sorted(groups):
        g = groups[key]
        dead = [r["dead_tuples"] for r in g]
        lines.append(
            f"| {key + 1 if minutes >= 3 else round(g[-1]['t_s'] / 60, 2)} |"
            f" {_median([r['throughput'] for r in g]):,.0f} |"
            f" {max(r['waiting'] for r in g):,} |"
            f" {max(r['oldest_waiting_s'] for r in g):.1f} |"
            f" {min(dead):,}-{max(dead):,} | {g[-1]['autovacuums']} |"
            f" {_mb(max(r['heap_bytes'] for r in g))} | {_mb(max(r['total_bytes'] for r in g))} |"
            f" {max(r['oldest_xact_age'] for r in g):,} |"
            f" {_probe_cell(g)} |"
            f" {'yes' if any(r['holding'] for r in g) else ''} |"
        )
    return lines


def _probe_cell(group: list[dict[str, float]]) -> str:
    pages = [r["probe_buffers"] for r in group if "probe_buffers" in r]
    return f"{max(pages):,}" if pages else "n/a"


def _totals(rows: list[dict[str, float]]) -> str:
    dead = [r["dead_tuples"] for r in rows]
    held = [r["throughput"] for r in rows if r["holding"]]
    free = [r["throughput"] for r in rows if not r["holding"]]
    text = (
        f"Dead tuples: max {max(dead):,}, at the end {dead[-1]:,}; jobs table total size at"
        f" the end {_mb(rows[-1]['total_bytes'])} MB (max"
        f" {_mb(max(r['total_bytes'] for r in rows))} MB), heap at the end"
        f" {_mb(rows[-1]['heap_bytes'])} MB; throughput median"
        f" {_median([r['throughput'] for r in rows]):,.0f} jobs/s"
    )
    if held and free:
        text += f" (while held: {_median(held):,.0f}, otherwise {_median(free):,.0f})"
    return (
        text
        + "; oldest waiting job at most "
        + (f"{max(r['oldest_waiting_s'] for r in rows):.1f} s.")
    )


def _summary(
    args: argparse.Namespace,
    *,
    settings: dict[str, str],
    rows: list[dict[str, float]],
    loads: list[float],
    added: int,
    failure: str | None,
    out_dir: Path,
) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    hold = (
        f"; a transaction held open from minute {args.hold_transaction.replace(':', ' to ')}"
        if args.hold_transaction
        else "; no other session"
    )
    version = settings.get("server_version", "?")
    pg = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()) if k != "server_version")
    lines = [
        f"## Soak: {args.label}",
        "",
        f"`python bench/soak.py {' '.join(sys.argv[1:])}` — {stamp}.",
        "",
        f"- {args.rate:g} jobs/s for {args.minutes:g} min, {args.processes} worker process(es)"
        f" x --jobs {args.jobs}, no-op task; {added:,} jobs added{hold}",
        f"- PostgreSQL {version}: {pg}",
        f"- Machine: {os.cpu_count()} CPUs shared with other work; 1-min load average"
        f" median {_median(loads):.1f} (max {max(loads, default=0):.1f})",
        f"- Result: {'FAILED: ' + failure if failure else 'every job done, no worker died'}",
        "",
    ]
    _write_summary(out_dir / f"soak-{args.label}.md", lines, rows, args.minutes)


def _write_summary(
    path: Path, header: list[str], rows: list[dict[str, float]], minutes: float
) -> None:
    body = [*_table(rows, minutes), "", _totals(rows)] if rows else ["(no samples)"]
    path.write_text("\n".join([*header, *body]) + "\n")


def resummarize(csv_path: Path, minutes: float) -> None:
    """Rewrite soak-<label>.md's table from the CSV, keeping its header lines."""
    with csv_path.open(newline="") as handle:
        rows = [
            {k: int(v) if v.lstrip("-").isdigit() else float(v) for k, v in r.items()}
            for r in csv.DictReader(handle)
        ]
    md = csv_path.with_suffix(".md")
    header = []
    for line in md.read_text().splitlines():
        if line.startswith("|"):
            break
        header.append(line)
    _write_summary(md, header, rows, minutes)


# -- the plot ------------------------------------------------------------------------------


def plot(paths: list[str], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for path in paths:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        label = Path(path).stem.removeprefix("soak-")
        t = [float(r["t_s"]) / 60 for r in rows]
        axes[0].plot(t, [int(r["dead_tuples"]) for r in rows], label=label)
        axes[1].plot(t, [int(r["total_bytes"]) / 1048576 for r in rows], label=label)
        axes[2].plot(t, [float(r["throughput"]) for r in rows], label=label)
        if rows and "probe_buffers" in rows[0]:
            axes[3].plot(t, [int(r["probe_buffers"]) for r in rows], label=label)
        held = [x for x, r in zip(t, rows, strict=True) if r["holding"] == "1"]
        if held:
            for ax in axes:
                ax.axvspan(min(held), max(held), alpha=0.08, color="red")
    axes[0].set_ylabel("dead tuples")
    axes[1].set_ylabel("jobs table + indexes (MB)")
    axes[2].set_ylabel("jobs done per second")
    axes[3].set_ylabel("pages read to find\nthe next job")
    axes[3].set_yscale("symlog")
    axes[3].set_xlabel("minutes (shaded: another session holds a transaction open)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("graphile-py soak: graphile_worker._private_jobs with autovacuum on")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate", type=float, default=100, help="jobs added per second")
    parser.add_argument("--processes", type=int, default=2, help="graphile-py worker processes")
    parser.add_argument("--jobs", type=int, default=4, help="--jobs of each worker process")
    parser.add_argument(
        "--hold-transaction",
        metavar="START:END",
        help="hold a transaction open from minute START to END",
    )
    parser.add_argument("--label", default="normal", help="names the output files")
    parser.add_argument("--sample-every", type=float, default=5, help="seconds")
    parser.add_argument(
        "--naptime",
        type=float,
        help="autovacuum_naptime of the private cluster in seconds (default: PostgreSQL's, 60)",
    )
    parser.add_argument("--dsn", help="use this database instead of a private cluster")
    parser.add_argument("--out-dir", default=str(BENCH_DIR / "results"))
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--plot", nargs="+", metavar="CSV", help="only draw these CSVs")
    parser.add_argument("--plot-out", default=str(REPO_ROOT / "docs" / "soak.png"))
    parser.add_argument(
        "--resummarize", metavar="CSV", help="only rewrite the table of CSV's markdown summary"
    )
    args = parser.parse_args()
    if args.resummarize:
        resummarize(Path(args.resummarize), args.minutes)
        return 0
    if args.plot:
        plot(args.plot, args.plot_out)
        return 0
    if args.dsn:
        return run(args, args.dsn)
    with private_cluster(args.naptime) as dsn:
        return run(args, dsn)


if __name__ == "__main__":
    sys.exit(main())
