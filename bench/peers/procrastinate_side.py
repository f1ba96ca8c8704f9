"""procrastinate's side of the benchmark (run with the peers' venv by peers/__init__.py).

Usage: python procrastinate_side.py <config.json>; the config's "mode" is

  install  procrastinate's schema into "dsn" (``schema_manager.apply_schema_async``);
  worker   ``run_worker_async(concurrency=..., listen_notify=True)`` (its documented way to
           run jobs in parallel; LISTEN/NOTIFY is its default) on a PsycopgConnector whose
           pool holds up to 10 connections (graphile-py's and Node's default pool size;
           psycopg_pool's own default is 4); a task ``noop`` that records the job id in
           memory. Finished jobs stay in procrastinate_jobs with their status (its default,
           ``delete_jobs="never"``). Prints READY once its LISTEN connection shows in
           pg_stat_activity and its first fetch has come back empty; on a "stop" line
           or EOF stops, writes the ids to "ids_file" and prints STOPPED;
  enqueue  prints READY, waits for a "go" line, then one ``batch_defer_async`` call of "n"
           jobs; prints "ENQUEUED <low id> <high id> <monotonic ns after the commit>
           <seconds of the call>", then ANALYZEs the jobs table and waits for "stop".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from typing import Any

import procrastinate
import psycopg
from side_common import ENQUEUE_APP, check_range, config, dump_ids, on_stdin_line, read_line, say

POOL_SIZE = 10
ran = array("q")


def make_app(dsn: str, application_name: str) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=f"{dsn}?application_name={application_name}",
        min_size=1,
        max_size=POOL_SIZE,
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="noop", pass_context=True)
    async def noop(context: procrastinate.JobContext, i: int) -> None:
        assert context.job.id is not None
        ran.append(context.job.id)

    return app


async def install(cfg: dict[str, Any]) -> None:
    async with make_app(cfg["dsn"], "gpbench-install").open_async() as app:
        await app.schema_manager.apply_schema_async()


async def _listening(dsn: str, application_name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and application_name = %s and query ilike 'listen%%'",
            (application_name,),
        )
        row = await cur.fetchone()
    return bool(row and row[0])


def _watch_first_fetch(app: procrastinate.App) -> asyncio.Event:
    """An event set when the worker's first fetch has come back.

    The worker's first fetch runs beside its LISTEN; a notification that arrives while a
    fetch is under way is dropped when that fetch ends (the worker then waits for the
    next poll, 5 s by default), so jobs committed before the first fetch returns would
    time procrastinate's start-up, not its drain.
    """
    fetched = asyncio.Event()
    manager = app.job_manager
    fetch_job = manager.fetch_job

    async def counted(*args: Any, **kwargs: Any) -> Any:
        job = await fetch_job(*args, **kwargs)
        fetched.set()
        return job

    manager.fetch_job = counted  # type: ignore[method-assign]
    return fetched


async def worker(cfg: dict[str, Any]) -> None:
    async with make_app(cfg["dsn"], cfg["app"]).open_async() as app:
        fetched = _watch_first_fetch(app)
        task = asyncio.create_task(
            app.run_worker_async(
                concurrency=int(cfg["concurrency"]),
                listen_notify=True,
                install_signal_handlers=False,
            )
        )
        while not (fetched.is_set() and await _listening(cfg["dsn"], cfg["app"])):
            if task.done():
                task.result()
                raise SystemExit("procrastinate stopped before it was ready")
            await asyncio.sleep(0.02)
        say("READY")
        on_stdin_line(asyncio.get_running_loop(), task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    dump_ids(cfg["ids_file"], ran)
    say(f"STOPPED {len(ran)}")


async def enqueue(cfg: dict[str, Any]) -> None:
    n = int(cfg["n"])
    async with make_app(cfg["dsn"], ENQUEUE_APP).open_async() as app:
        noop = app.tasks["noop"]
        kwargs = [{"i": i} for i in range(n)]
        say("READY")
        if (await read_line()).strip() != "go":
            return
        started = time.perf_counter()
        ids = await noop.batch_defer_async(*kwargs)
        seconds = time.perf_counter() - started
        committed = time.monotonic_ns()
        low, high = check_range(list(ids), n)
        say(f"ENQUEUED {low} {high} {committed} {seconds:.6f}")
        await app.connector.execute_query_async("ANALYZE procrastinate_jobs")
    await read_line()
    say("STOPPED 0")


def main() -> None:
    cfg = config()
    mode = {"install": install, "worker": worker, "enqueue": enqueue}[cfg["mode"]]
    asyncio.run(mode(cfg))


if __name__ == "__main__":
    main()
