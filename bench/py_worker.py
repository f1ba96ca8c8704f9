"""graphile-py side of the benchmark: one worker process, driven by bench.py.

Usage: python py_worker.py <config.json>

Config keys: "dsn", "concurrency", "max_pool_size", "batched" (bool), "history" (bool:
record every attempt in the job history), "ids_file"; optional "listen_dsn" (a direct
connection for LISTEN) and "prepared_statements" (false: never prepare), for PgBouncer.

The process builds a WorkerPool with two tasks, starts it, waits until its LISTEN
connection is up and prints "READY". It stops gracefully when stdin has a "stop" line or
closes, writes the ids of the jobs its ``noop`` task ran to ``ids_file`` (one per line:
the harness checks exactly-once from these), and prints "STOPPED <count>".

Tasks:
  noop     appends the job id to an in-memory array (no I/O, no database access);
  latency  as its first line reads CLOCK_MONOTONIC, then prints "RAN <job id> <ns>".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from array import array
from typing import Any

from graphile_py import WorkerOptions, WorkerPool
from graphile_py.logs import configure_logging


def batching_supported() -> bool:
    names = {field.name for field in dataclasses.fields(WorkerOptions)}
    return {"local_queue_size", "complete_job_batch_delay", "fail_job_batch_delay"} <= names


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        config: dict[str, Any] = json.load(handle)
    # Success lines are not logged (as NO_LOG_SUCCESS=1 on the Node side); warnings are.
    configure_logging(logging.WARNING)

    executed = array("q")
    out_lock = threading.Lock()

    def noop(_payload: Any, helpers: Any) -> None:
        executed.append(helpers.job.id)

    def latency(_payload: Any, helpers: Any) -> None:
        now = time.monotonic_ns()  # CLOCK_MONOTONIC, the clock bench.py stamps add_job with
        with out_lock:
            sys.stdout.write(f"RAN {helpers.job.id} {now}\n")
            sys.stdout.flush()

    extra: dict[str, Any] = {}
    if config.get("batched"):
        if not batching_supported():
            print("UNSUPPORTED batched settings", flush=True)
            return 3
        extra = {
            "local_queue_size": 500,
            "complete_job_batch_delay": 0.0,
            "fail_job_batch_delay": 0.0,
        }
    if config.get("history"):
        extra["history"] = True
    if config.get("listen_dsn"):
        extra["listen_conninfo"] = config["listen_dsn"]
    if config.get("prepared_statements") is False:
        extra["prepared_statements"] = False
    options = WorkerOptions(
        concurrency=int(config["concurrency"]),
        max_pool_size=int(config["max_pool_size"]),
        **extra,
    )
    pool = WorkerPool({"noop": noop, "latency": latency}, conninfo=config["dsn"], options=options)

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        pool.request_stop("stop requested by bench.py")

    pool.start()
    try:
        if not pool.wait_listening(30):
            print("FAILED listener did not connect", flush=True)
            pool.request_stop("listener did not connect")
        else:
            print("READY", flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        pool.wait_for_stop_request()
    finally:
        pool.shutdown()
    with open(config["ids_file"], "w", encoding="ascii") as handle:
        handle.write("\n".join(map(str, executed)))
    print(f"STOPPED {len(executed)}", flush=True)
    return pool.exit_code


if __name__ == "__main__":
    sys.exit(main())
