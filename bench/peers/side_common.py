"""What both peer processes share (run by the peers' venv, not the project's)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

#: The enqueue client's connections are not the measured system's (server_cost.py).
ENQUEUE_APP = "gpbench-harness-enqueue"


def config() -> dict[str, Any]:
    with open(sys.argv[1], encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def on_stdin_line(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Call ``callback`` in ``loop`` on a "stop" line or when stdin closes (as bench.Proc does)."""

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(callback)

    threading.Thread(target=watch, daemon=True).start()


async def read_line() -> str:
    """The next line of stdin, without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def dump_ids(path: str, ids: Iterable[int]) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write("\n".join(map(str, ids)))


def check_range(ids: list[int], n: int) -> tuple[int, int]:
    """The jobs' id range; the harness checks exactly-once over it, so it must be dense."""
    low, high = min(ids), max(ids)
    if len(ids) != n or high - low + 1 != n:
        raise SystemExit(f"expected {n} consecutive ids, got {len(ids)} in {low}..{high}")
    return low, high
