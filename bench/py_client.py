"""graphile-py side of the enqueue benchmarks (a separate process, like the Node one).

Usage: python py_client.py <dsn> <mode> <count>

Modes:
  bulk      one ``add_jobs`` call of <count> specs on one connection;
  one       <count> ``add_job`` calls, one after the other, on one autocommit connection;
  utils     <count> ``WorkerUtils.add_job`` calls (a pool, like Node's WorkerUtils.addJob).

A few jobs are added first as a warm-up (connection, prepared statements, plan cache);
then it prints "TIME <seconds>" for the timed part only, and "ADDED <count>".
"""

from __future__ import annotations

import sys
import time

import psycopg

from graphile_py import JobSpec, WorkerUtils, add_job, add_jobs


def main() -> int:
    dsn, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "utils":
        with WorkerUtils(dsn, run_migrations=False) as utils:
            for i in range(5):
                utils.add_job("warmup", {"i": i})
            started = time.perf_counter()
            for i in range(count):
                utils.add_job("noop", {"i": i})
            elapsed = time.perf_counter() - started
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(5):
                add_job(conn, "warmup", {"i": i})
            add_jobs(conn, [JobSpec("warmup", {"i": i}) for i in range(5)])
            if mode == "bulk":
                specs = [JobSpec("noop", {"i": i}) for i in range(count)]
                started = time.perf_counter()
                jobs = add_jobs(conn, specs)
                elapsed = time.perf_counter() - started
                assert len(jobs) == count, (len(jobs), count)
            elif mode == "one":
                started = time.perf_counter()
                for i in range(count):
                    add_job(conn, "noop", {"i": i})
                elapsed = time.perf_counter() - started
            else:
                raise SystemExit(f"unknown mode {mode!r}")
    print(f"TIME {elapsed:.6f}", flush=True)
    print(f"ADDED {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
