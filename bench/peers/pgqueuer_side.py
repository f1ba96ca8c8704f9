"""PgQueuer's side of the benchmark (run with the peers' venv by peers/__init__.py).

Usage: python pgqueuer_side.py <config.json>; the config's "mode" is

  install  PgQueuer's schema into "dsn" (its own ``Queries.install``);
  worker   one PgQueuer on one asyncpg connection (PgQueuer's own benchmark and CLI use
           asyncpg and uvloop), an entrypoint ``noop`` that records the job id in memory;
           "batched" false: ``batch_size`` 10 (its default) and ``max_concurrent_tasks``
           = "concurrency"; true: ``batch_size`` 500 and no cap (the cap must be at least
           twice the batch). Prints READY once its listener answers a health-check NOTIFY
           round trip; on a "stop" line or EOF stops, writes the ids to "ids_file" and
           prints STOPPED;
  enqueue  prints READY, waits for a "go" line, then one ``Queries.enqueue`` call of "n"
           ``noop`` jobs; prints "ENQUEUED <low id> <high id> <monotonic ns after the
           commit> <seconds of the call>", then ANALYZEs the queue table (as
           autovacuum would) and waits for "stop".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from datetime import timedelta
from typing import Any

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, PgQueuer, Queries
from side_common import ENQUEUE_APP, check_range, config, dump_ids, on_stdin_line, read_line, say


async def install(cfg: dict[str, Any]) -> None:
    conn = await asyncpg.connect(cfg["dsn"])
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def worker(cfg: dict[str, Any]) -> None:
    settings = {"application_name": cfg["app"]}
    pool_size = int(cfg.get("pool_size") or 0)
    if pool_size:
        # Its performance-tuning guide: a pool driver for high throughput (one connection
        # of it held for LISTEN, the others borrowed per dequeue/status round trip).
        conn: Any = await asyncpg.create_pool(
            cfg["dsn"], min_size=pool_size, max_size=pool_size, server_settings=settings
        )
        pgq = PgQueuer(AsyncpgPoolDriver(conn))
    else:
        conn = await asyncpg.connect(cfg["dsn"], server_settings=settings)
        pgq = PgQueuer(AsyncpgDriver(conn))
    ran = array("q")

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        ran.append(job.id)

    if cfg["batched"]:
        run = pgq.run(batch_size=500, max_concurrent_tasks=None)
    else:
        run = pgq.run(batch_size=10, max_concurrent_tasks=int(cfg["concurrency"]))
    task = asyncio.create_task(run)
    while True:
        if task.done():
            task.result()
            raise SystemExit("PgQueuer stopped before it was ready")
        with contextlib.suppress(Exception):
            await pgq.qm.listener_healthy(timedelta(seconds=1))
            break
    say("READY")
    on_stdin_line(asyncio.get_running_loop(), pgq.shutdown.set)
    await task
    with contextlib.suppress(Exception):
        await conn.close()
    dump_ids(cfg["ids_file"], ran)
    say(f"STOPPED {len(ran)}")


async def enqueue(cfg: dict[str, Any]) -> None:
    n = int(cfg["n"])
    conn = await asyncpg.connect(cfg["dsn"], server_settings={"application_name": ENQUEUE_APP})
    queries = Queries(AsyncpgDriver(conn))
    payloads: list[bytes | None] = [b'{"i": %d}' % i for i in range(n)]
    say("READY")
    if (await read_line()).strip() != "go":
        return
    started = time.perf_counter()
    ids = await queries.enqueue(["noop"] * n, payloads, [0] * n)
    seconds = time.perf_counter() - started
    committed = time.monotonic_ns()
    low, high = check_range([int(x) for x in ids], n)
    say(f"ENQUEUED {low} {high} {committed} {seconds:.6f}")
    await conn.execute("ANALYZE pgqueuer")
    await conn.close()
    await read_line()
    say("STOPPED 0")


def main() -> None:
    cfg = config()
    mode = {"install": install, "worker": worker, "enqueue": enqueue}[cfg["mode"]]
    uvloop.run(mode(cfg))


if __name__ == "__main__":
    main()
