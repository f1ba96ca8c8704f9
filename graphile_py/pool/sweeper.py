"""The stale-lock sweep: frees jobs and queues locked for over 4 hours.

A crashed worker's jobs stay locked; every pool sweeps now and then, at a random moment
between ``min_reset_locked_interval`` and ``max_reset_locked_interval`` (the first time
within a minute of starting), so that pools started together do not sweep together.
With ``history`` on, each sweep also prunes the job history past its retention.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime

from graphile_py.db import ConnectionSource, Statements, borrow
from graphile_py.errors import GraphileError
from graphile_py.events import PoolView, WorkerEvents
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.outcomes import prune_history

__all__ = ["sweep_stale_locks"]

logger = logging.getLogger("graphile_py.worker")


def sweep_stale_locks(
    pool: PoolView,
    *,
    options: WorkerOptions,
    statements: Statements,
    connections: ConnectionSource,
    events: WorkerEvents,
    stopping: threading.Event,
) -> None:
    """Sweep now and then until ``stopping`` is set (the body of the sweeper thread)."""
    delay = random.random() * min(60.0, options.max_reset_locked_interval)
    while not stopping.wait(delay):
        now = datetime.now(UTC) if options.use_node_time else None
        events.reset_locked_started(pool)
        delay = _next_sweep_delay(options)
        try:
            with borrow(connections) as conn:
                statements.reset_stale_locks(conn, now)
        except GraphileError as exc:
            logger.warning("Failed to reset locked; we'll try again in %.0fs: %s", delay, exc)
            events.reset_locked_failure(pool, exc, delay)
        else:
            events.reset_locked_success(pool, delay)
        prune_history(options, connections)


def _next_sweep_delay(opts: WorkerOptions) -> float:
    low, high = opts.min_reset_locked_interval, opts.max_reset_locked_interval
    return low + random.random() * (high - low)
