"""The drain rows through each runtime's own CLI, with a pool size a user may pick.

``graphile-py worker --jobs J --max-pool-size M --tasks tasks_noop:tasks`` and Node's
``graphile-worker -j J -m M`` (tasks from ``node_cli/tasks``), without ``--once``: with
``--once`` a worker exits at once on the empty queue, so it could not be started first
and ready, as in every other drain row. Ready here means that the process's LISTEN
connection is up: the harness finds it in ``pg_stat_activity`` by the
``application_name`` set in the connection URL. The timing, the server's cost and the
exactly-once check are the other drain rows' (drain.py); the stop is SIGINT, and the
no-op tasks write the ids they ran at that point.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from drain import DrainResult, Worker, timed_drain

if TYPE_CHECKING:
    from bench import Bench, Proc

BENCH = Path(__file__).resolve().parent

_LISTENING = (
    "select count(*) from pg_stat_activity where datname = current_database()"
    " and application_name = %s and query ilike 'listen%%'"
)


def cli_drain(bench: Bench, runtime: str, *, pool: int, n: int) -> DrainResult:
    """One drain by one CLI process, concurrency ``--concurrency``, max pool size ``pool``."""
    from bench import Proc

    with bench.db.scenario() as dsn:
        tag = bench._tag(f"{runtime}-cli-m{pool}")
        app = f"gpbench-cli-{tag}"
        url = f"{dsn}?application_name={app}"
        ids_file = bench.logdir / f"{tag}.ids"
        jobs = str(bench.args.concurrency)
        if runtime == "py":
            cli = str(Path(bench.python).with_name("graphile-py"))
            argv = [cli, "worker", "-j", jobs, "-m", str(pool), "--tasks", "tasks_noop:tasks"]
            argv += ["-c", url]
            cwd = BENCH
            env = {**bench.node_env, "GRAPHILE_PY_LOG_LEVEL": "warning"}
        else:
            cli = str(bench.node_package / "dist" / "cli.js")
            argv = ["node", cli, "-j", jobs, "-m", str(pool), "-c", url]
            cwd = BENCH / "node_cli"
            env = dict(bench.node_env)
        env["BENCH_IDS_FILE"] = str(ids_file)
        proc = Proc(argv, logdir=bench.logdir, tag=tag, cwd=cwd, env=env)
        proc.ids_file = ids_file
        bench.procs.append(proc)

        def ready(conn: psycopg.Connection[Any]) -> None:
            deadline = time.monotonic() + 120
            while True:
                row = conn.execute(_LISTENING, (app,)).fetchone()
                if row and row[0]:
                    return
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{tag}: no LISTEN connection{proc.stderr_tail()}")
                time.sleep(0.02)

        def stop(worker: Worker) -> None:
            assert worker is proc
            _interrupt(proc)
            bench.procs.remove(proc)

        return timed_drain(
            dsn,
            [proc],
            wait_ready=ready,
            add_jobs=bench.add_drain_jobs(n),
            left=bench.jobs_left,
            stop=stop,
            n=n,
            poll_s=bench.args.poll_ms / 1000,
        )


def _interrupt(proc: Proc) -> None:
    """Ctrl-C: both CLIs stop gracefully (Node then re-raises the signal on itself)."""
    proc.popen.send_signal(signal.SIGINT)
    try:
        status = proc.popen.wait(timeout=60)
    finally:
        proc.kill()
    if status not in (0, -signal.SIGINT, 128 + signal.SIGINT):
        raise RuntimeError(f"{proc.tag}: exit status {status}{proc.stderr_tail()}")
