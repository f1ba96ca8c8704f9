"""Running a worker as a program: migrate, run the pool, turn signals into shutdown.

The first SIGINT or SIGTERM starts a graceful shutdown; another one after that forces
it (running jobs are failed with ``Forced worker shutdown due to <SIGNAL>``). Signal
handlers are installed only on the main thread and restored afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import psycopg

from graphile_py.db import map_db_errors
from graphile_py.db.migrate import migrate
from graphile_py.events import combine_events
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.pool import WorkerPool
from graphile_py.tasks import TaskFunction

if TYPE_CHECKING:
    from graphile_py.cron.crontab import CronItem
    from graphile_py.cron.scheduler import CronScheduler
    from graphile_py.extras.metrics.collectors import WorkerMetrics
    from graphile_py.extras.metrics.server import MetricsServer

__all__ = ["run_once", "run_worker"]

logger = logging.getLogger("graphile_py.runner")

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_worker(
    tasks: Mapping[str, TaskFunction],
    *,
    conninfo: str,
    options: WorkerOptions | None = None,
    once: bool = False,
    handle_signals: bool = True,
    crontab: Sequence[CronItem] = (),
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_interval: float = 15.0,
) -> int:
    """Migrate the schema, then run a worker pool (and cron) until it is stopped.

    ``crontab`` items are scheduled while the pool runs (not in run-once mode, as with
    graphile-worker's CLI). With ``metrics_port`` (0: any free port), Prometheus metrics
    and health probes are served on ``metrics_host`` while the pool runs, the queue
    sampled every ``metrics_interval`` seconds (see
    :mod:`graphile_py.extras.metrics.server`; needs the ``metrics`` extra). Returns the
    exit status: 0; 57 when another process applied a breaking migration; 75 when the
    pool fenced itself (its heartbeat could not be written). Raises
    :class:`graphile_py.IncompatibleSchema` when the schema is already too new, and
    :class:`graphile_py.WorkerError` when the pool stopped on an error, such as a
    batched write that failed after its retries (the command then exits 1).
    """
    options = options or WorkerOptions()
    metrics: WorkerMetrics | None = None
    if metrics_port is not None:
        from graphile_py.extras.metrics.collectors import (
            WorkerMetrics,  # ConfigurationError without the extra
        )

        metrics = WorkerMetrics()
        options = dataclasses.replace(options, events=combine_events(options.events, metrics))
    with map_db_errors("Connecting to the database"):
        # Never prepared: a migration's repeated statements would be, and fail through a
        # transaction-mode pooler (the pool finds out whether there is one later).
        conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
    with conn:
        migrate(conn, schema=options.schema, side_schema=options.side_schema)
    pool = WorkerPool(tasks, conninfo=conninfo, options=options, once=once)
    server: MetricsServer | None = None
    if metrics is not None and metrics_port is not None:
        from graphile_py.extras.metrics.server import MetricsServer

        # Bound before the pool starts, so that a port in use fails at once.
        server = MetricsServer(
            pool,
            metrics=metrics,
            host=metrics_host,
            port=metrics_port,
            sample_interval=metrics_interval,
        ).start()
    try:
        with _signals_stop(pool, enabled=handle_signals):
            pool.start()
            cron: CronScheduler | None = None
            try:
                if crontab and not once:
                    from graphile_py.cron.scheduler import CronScheduler

                    cron = CronScheduler(
                        crontab,
                        pool=pool.connections,
                        schema=options.schema,
                        events=options.events,
                    )
                    cron.start()
                pool.wait_for_stop_request()
            finally:
                if cron is not None:
                    cron.stop()
                pool.shutdown()
            return pool.result()
    finally:
        if server is not None:
            server.close()


def run_once(
    tasks: Mapping[str, TaskFunction],
    *,
    conninfo: str,
    options: WorkerOptions | None = None,
) -> int:
    """Run every job that is ready now, then return (0 on a clean finish)."""
    return run_worker(tasks, conninfo=conninfo, options=options, once=True)


@contextmanager
def _signals_stop(pool: WorkerPool, *, enabled: bool) -> Iterator[None]:
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not received:
            logger.info(
                "Received '%s'; attempting graceful shutdown... (send it again to force)", name
            )
            pool.events.graceful_shutdown(name)
            pool.request_stop(name)
        else:
            logger.error("Received '%s'; attempting forceful shutdown...", name)
            pool.events.forceful_shutdown(name)
            pool.request_stop(name, force=True)
        received.append(name)

    previous = {sig: signal.signal(sig, handle) for sig in _SHUTDOWN_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
