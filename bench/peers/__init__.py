"""The Python peers in the main table: PgQueuer and procrastinate, on the same work.

They run in a venv of their own (``bench/run`` creates it on first use, with the pinned
versions of :data:`PINS`; ``GRAPHILE_PY_BENCH_PEERS_VENV`` overrides its place), so the
project's .venv is not touched. Each peer's schema is installed once into a template
database by its own API; every drain gets a fresh clone of it. The drain is the others'
(drain.py): workers ready, the N jobs committed at once (here by the peer's own bulk
enqueue, in a client process started beforehand), time until the harness finds none
left, the server's cost, the exactly-once check of the ids the workers wrote at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from drain import DrainResult, Started, timed_drain

if TYPE_CHECKING:
    from bench import Bench, Proc

HERE = Path(__file__).resolve().parent
#: The versions bench/run installs (current releases that support Python 3.11 and
#: PostgreSQL 15); psycopg[binary] is graphile-py's own psycopg, so the C libpq binding.
PINS = ("pgqueuer==1.6.0", "procrastinate==3.10.0", "asyncpg==0.32.0", "psycopg[binary]==3.3.9")
SIDES = {"pgq": HERE / "pgqueuer_side.py", "proc": HERE / "procrastinate_side.py"}
#: Whether any of the N jobs is left. PgQueuer moves a finished job to its log table;
#: procrastinate keeps it with a final status (its partial index covers todo and doing).
LEFT = {
    "pgq": "select exists(select 1 from pgqueuer where id between %s and %s)",
    "proc": "select exists(select 1 from procrastinate_jobs where id between %s and %s"
    " and status in ('todo', 'doing'))",
}


def venv_dir() -> Path:
    base = os.environ.get("GRAPHILE_PY_BENCH_PEERS_VENV")
    return Path(base) if base else Path.home() / ".cache" / "graphile-py" / "bench-peers-venv"


def peers_python() -> Path:
    """The peers' venv interpreter; bench/run installs it (``--no-peers`` to go without)."""
    python = venv_dir() / "bin" / "python"
    marker = venv_dir() / "bench-pins.txt"
    if not python.exists() or not marker.exists() or marker.read_text().split() != list(PINS):
        raise SystemExit(
            f"bench: the peers' venv {venv_dir()} is missing or not at {' '.join(PINS)};"
            " run through `bash bench/run` (it installs it), or pass --no-peers"
        )
    return python


def _venv_python_version() -> str:
    """The peers' Python version, from the venv's pyvenv.cfg."""
    try:
        for line in (venv_dir() / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return "Python " + value.strip()
    except OSError:
        pass
    return "Python ?"


class PeerBench:
    """Runs the peers' drains for bench.py's main table."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.python = peers_python()
        self.templates: dict[str, str] = {}
        self.env = {**os.environ, "PYTHONPATH": str(HERE)}

    def _config(self, tag: str, **config: Any) -> Path:
        path = self.bench.logdir / f"{tag}.json"
        path.write_text(json.dumps(config))
        return path

    def _spawn(self, system: str, what: str, **config: Any) -> Proc:
        from bench import Proc

        tag = self.bench._tag(f"{system}-{what}")
        cfg = self._config(tag, mode=what, **config)
        proc = Proc(
            [str(self.python), str(SIDES[system]), str(cfg)],
            logdir=self.bench.logdir,
            tag=tag,
            env=self.env,
        )
        self.bench.procs.append(proc)
        return proc

    def template(self, system: str) -> str:
        if system not in self.templates:

            def install(dsn: str) -> None:
                proc = self._spawn(system, "install", dsn=dsn)
                status = proc.popen.wait(timeout=120)
                proc.close()
                self.bench.procs.remove(proc)
                if status != 0:
                    raise RuntimeError(f"{system}: schema install failed{proc.stderr_tail()}")

            self.templates[system] = self.bench.db.extra_template(f"{system}tpl", install)
        return self.templates[system]

    def drain(self, system: str, *, processes: int, batched: bool, n: int) -> DrainResult:
        concurrency = self.bench.args.concurrency
        with self.bench.db.scenario(template=self.template(system)) as dsn:
            workers = []
            for index in range(processes):
                tag = f"gpbench-{system}-{os.getpid()}-{index}"
                ids = self.bench.logdir / f"{self.bench._tag(system)}.ids"
                worker = self._spawn(
                    system,
                    "worker",
                    dsn=dsn,
                    app=tag,
                    concurrency=concurrency,
                    batched=batched,
                    ids_file=str(ids),
                    pool_size=self.bench.args.pgq_pool_size,
                )
                worker.ids_file = ids
                workers.append(worker)
            client = self._spawn(system, "enqueue", dsn=dsn, n=n)

            def ready(_conn: psycopg.Connection[Any]) -> None:
                for proc in [*workers, client]:
                    proc.wait_for("READY", 120)

            def add_jobs(_conn: psycopg.Connection[Any]) -> Started:
                assert client.popen.stdin is not None
                client.popen.stdin.write("go\n")
                client.popen.stdin.flush()
                _, low, high, committed, seconds = client.wait_for("ENQUEUED", 600).split()
                # CLOCK_MONOTONIC is the same clock in both processes.
                at = time.perf_counter() - (time.monotonic_ns() - int(committed)) / 1e9
                return Started(int(low), int(high), at, float(seconds))

            try:
                return timed_drain(
                    dsn,
                    workers,
                    wait_ready=ready,
                    add_jobs=add_jobs,
                    left=LEFT[system],
                    stop=self.bench.finish,  # type: ignore[arg-type]
                    n=n,
                    poll_s=self.bench.args.poll_ms / 1000,
                )
            finally:
                if client in self.bench.procs:
                    self.bench.procs.remove(client)
                client.kill()

    @staticmethod
    def notes(args: argparse.Namespace) -> dict[str, dict[str, str]]:
        """The cells where a peer has no equivalent, and why."""
        other = "n/a (not measured for the peers)"
        cli = "n/a (these rows compare the two graphile-worker CLIs)"
        notes: dict[str, dict[str, str]] = {
            "pgq": {"other": other},
            "proc": {
                "other": other,
                "rss-b": "n/a (no batched fetch or completion)",
                "drain-1-True": "n/a (no batched fetch or completion)",
                "drain-2-True": "n/a (no batched fetch or completion)",
                "drain-1-True-history": "n/a (no batched fetch or completion)",
            },
        }
        for cells in notes.values():
            for pool in args.cli_pool_sizes:
                cells[f"cli-{pool}"] = cli
        return notes

    @staticmethod
    def settings_text(args: argparse.Namespace) -> str:
        return (
            f"*Peers* ({', '.join(PINS)}, in their own venv, {_venv_python_version()}):"
            " PgQueuer: one `PgQueuer` per process with uvloop (as its CLI runs it) on "
            + (
                f"an `AsyncpgPoolDriver` of {args.pgq_pool_size} asyncpg connections (its"
                " performance guide's advice for high throughput)"
                if args.pgq_pool_size
                else "one asyncpg connection (`AsyncpgDriver`)"
            )
            + "; defaults = `batch_size` 10 (its default),"
            f" `max_concurrent_tasks` {args.concurrency}; batched = `batch_size` 500, no cap"
            " (PgQueuer requires the cap to be at least twice the batch). procrastinate:"
            f" `run_worker_async(concurrency={args.concurrency}, listen_notify=True)`,"
            " a pool of up to 10 connections, finished jobs kept (its default); it has no"
            " batched mode. Their bulk enqueue (`Queries.enqueue` with lists,"
            " `batch_defer_async`) is one call from a client process, timed by that client;"
            " its commit starts the drain clock. Both keep a record of every finished job"
            " by default, so their history rows are the rows without history."
        )
