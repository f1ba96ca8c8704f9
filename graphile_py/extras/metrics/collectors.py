"""Prometheus metrics for a worker pool (the ``metrics`` extra: ``prometheus-client``).

Three sources, all in one :class:`~prometheus_client.CollectorRegistry` per pool (never
the global default, so several pools, or tests, in one process do not collide):

- :class:`WorkerMetrics`, a :class:`~graphile_py.WorkerEvents`: job counters and
  durations by task, counted on the worker threads as the hooks fire, and the pools this
  one declared lost (and their jobs it released), from the ``pool_lost`` event;
- the pool's connection pool and LISTEN reconnects, read when scraped;
- :class:`QueueSampler`: queue depth by task and state, the oldest ready job's age and
  the registered pools alive (or overdue), sampled every few seconds with
  :class:`~graphile_py.admin.inspector.Inspector` on a connection of its own, never on
  the worker's hot path.

:mod:`graphile_py.extras.metrics.server` serves them over HTTP with the health probes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from graphile_py.errors import ConfigurationError
from graphile_py.events import CombinedEvents, PoolView, WorkerEvents
from graphile_py.jobs import Job
from graphile_py.pool import WorkerPool

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    if exc.name != "prometheus_client":
        raise
    raise ConfigurationError(
        "metrics need the 'metrics' extra (prometheus-client): from a checkout, pip install"
        " -e '.[metrics]' (once released: pip install 'graphile-py[metrics]')"
    ) from exc

if TYPE_CHECKING:
    from graphile_py.admin.inspector import QueueStatusReport
    from graphile_py.admin.worker_utils import WorkerUtils

__all__ = [
    "DURATION_BUCKETS",
    "QueueSampler",
    "WorkerMetrics",
    "conninfo_with_statement_timeout",
    "find_worker_metrics",
]

logger = logging.getLogger("graphile_py.metrics")

#: Job duration histogram buckets, in seconds: 5 ms to 10 minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

_STATES = ("ready", "scheduled", "running", "retrying", "failed")


class WorkerMetrics(WorkerEvents):
    """Job metrics from a pool's events, in a registry of their own.

    Pass it as ``WorkerOptions(events=WorkerMetrics())`` (with your own hooks too:
    ``combine_events(mine, metrics)``). When the pool is created it also registers the
    pool's connection and LISTEN metrics. One instance per pool.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.jobs_started = Counter(
            "graphile_py_jobs_started", "Jobs whose task started running.", ["task"], registry=r
        )
        self.jobs_succeeded = Counter(
            "graphile_py_jobs_succeeded", "Jobs whose task succeeded.", ["task"], registry=r
        )
        self.jobs_failed = Counter(
            "graphile_py_jobs_failed",
            "Failed attempts (the task raised or timed out); most are retried.",
            ["task"],
            registry=r,
        )
        self.jobs_permanently_failed = Counter(
            "graphile_py_jobs_permanently_failed",
            "Failed attempts that were the job's last one.",
            ["task"],
            registry=r,
        )
        self.job_duration = Histogram(
            "graphile_py_job_duration_seconds",
            "How long tasks ran, successful or not.",
            ["task"],
            buckets=tuple(buckets),
            registry=r,
        )
        self.pools_lost = Counter(
            "graphile_py_pools_lost",
            "Registered pools this pool declared lost (no heartbeat within their timeout).",
            registry=r,
        )
        self.jobs_rescued = Counter(
            "graphile_py_jobs_rescued",
            "Jobs of lost pools that this pool released, to run again.",
            registry=r,
        )
        self.pool: WorkerPool | None = None
        self._started: dict[tuple[str, int], float] = {}

    # -- hooks ---------------------------------------------------------------------------

    def pool_create(self, pool: PoolView) -> None:
        """Start every task's series at zero and register the pool's own metrics."""
        if not isinstance(pool, WorkerPool):  # its connection statistics are read below
            raise ConfigurationError("a WorkerMetrics reports on a WorkerPool")
        if self.pool is not None:
            raise ConfigurationError("a WorkerMetrics belongs to one WorkerPool; make another")
        self.pool = pool
        for task in pool.tasks:
            for metric in (
                self.jobs_started,
                self.jobs_succeeded,
                self.jobs_failed,
                self.jobs_permanently_failed,
                self.job_duration,
            ):
                metric.labels(task)
        self.registry.register(_PoolCollector(pool))

    def pool_lost(self, pool: PoolView, lost_pool_id: str, jobs: int) -> None:
        """Count the lost pool and the jobs released."""
        self.pools_lost.inc()
        self.jobs_rescued.inc(jobs)

    def job_start(self, worker_id: str, job: Job) -> None:
        """Count the start and note the time."""
        self._started[worker_id, job.id] = time.perf_counter()
        self.jobs_started.labels(job.task_identifier).inc()

    def job_success(self, worker_id: str, job: Job) -> None:
        """Count the success."""
        self.jobs_succeeded.labels(job.task_identifier).inc()

    def job_error(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        """Count the failed attempt."""
        self.jobs_failed.labels(job.task_identifier).inc()

    def job_failed(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        """Count the permanent failure."""
        self.jobs_permanently_failed.labels(job.task_identifier).inc()

    def job_complete(self, worker_id: str, job: Job, error: BaseException | None) -> None:
        """Record how long the task ran."""
        started = self._started.pop((worker_id, job.id), None)
        if started is not None:
            self.job_duration.labels(job.task_identifier).observe(time.perf_counter() - started)


def find_worker_metrics(events: WorkerEvents | None) -> WorkerMetrics | None:
    """The :class:`WorkerMetrics` among ``events`` (directly or combined), if any."""
    if isinstance(events, WorkerMetrics):
        return events
    if isinstance(events, CombinedEvents):
        for inner in events.events:
            found = find_worker_metrics(inner)
            if found is not None:
                return found
    return None


class _PoolCollector:
    """The pool's connections and LISTEN reconnects, read at scrape time."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        pool = self._pool
        yield CounterMetricFamily(
            "graphile_py_listen_reconnects",
            "Times the LISTEN connection was lost and re-established.",
            value=pool.listener_reconnects,
        )
        if not pool.started:
            return
        stats = pool.connection_pool.get_stats()
        size = stats.get("pool_size", 0)
        gauges = (
            ("graphile_py_db_pool_connections", "Connections the pool holds.", size),
            (
                "graphile_py_db_pool_connections_in_use",
                "Connections lent out (to workers, cron, tasks).",
                # The lease keeps some between uses: the pool counts those as lent out.
                size - stats.get("pool_available", 0) - pool.connections.idle,
            ),
            ("graphile_py_db_pool_max_connections", "max_pool_size.", stats.get("pool_max", 0)),
            (
                "graphile_py_db_pool_requests_waiting",
                "Threads waiting for a connection.",
                stats.get("requests_waiting", 0),
            ),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)


class QueueSampler:
    """Samples the queue with ``Inspector.status()`` every ``interval`` seconds.

    Runs on a daemon thread with a :class:`~graphile_py.WorkerUtils` of its own (one
    connection, statements limited to ``statement_timeout`` seconds). Registered in
    ``registry``, it exports the latest sample. :attr:`heartbeat` is the monotonic time
    the loop last went round, whether or not the sample succeeded: liveness, not health
    of the database.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str,
        registry: CollectorRegistry,
        interval: float = 15.0,
        tasks: Iterable[str] = (),
        statement_timeout: float = 10.0,
    ) -> None:
        if not interval > 0:
            raise ConfigurationError(f"the metrics interval must be positive, not {interval}")
        self.interval = interval
        self.statement_timeout = statement_timeout
        self.heartbeat = time.monotonic()
        self.last_error: str | None = None
        self._conninfo = conninfo
        self._schema = schema
        self._report: QueueStatusReport | None = None
        #: ``(alive, overdue)`` registered pools; None without the side schema.
        self._pools: tuple[int, int] | None = None
        self._sampled_at = 0.0
        self._errors = 0
        self._tasks = set(tasks)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graphile-py-metrics", daemon=True)
        registry.register(self)

    def start(self) -> None:
        """Take the first sample now and then every ``interval`` seconds."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling (waits for a sample in progress, up to ``timeout``)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True unless the sampling thread has died."""
        return self._thread.ident is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        from graphile_py.admin.inspector import Inspector
        from graphile_py.admin.worker_utils import WorkerUtils
        from graphile_py.errors import GraphileError

        utils: WorkerUtils | None = None
        try:
            while not self._stop.is_set():
                self.heartbeat = time.monotonic()
                try:
                    if utils is None:
                        utils = WorkerUtils(
                            conninfo_with_statement_timeout(self._conninfo, self.statement_timeout),
                            schema=self._schema,
                            max_pool_size=1,
                            run_migrations=False,
                            connect_timeout=self.statement_timeout,
                            # A sample every few seconds gains nothing from them, and
                            # they break through a transaction-mode pooler.
                            prepared_statements=False,
                        )
                    report = Inspector(utils).status()
                    pools = _count_pools(utils)
                except Exception as exc:  # a bug must not kill the sampler (and /healthz)
                    with self._lock:
                        self._errors += 1
                    self.last_error = str(exc) or type(exc).__name__
                    logger.warning(
                        "Could not sample the queue for metrics: %s",
                        self.last_error,
                        exc_info=not isinstance(exc, GraphileError),
                    )
                else:
                    with self._lock:
                        self._report, self._sampled_at = report, time.time()
                        self._pools = pools
                    self.last_error = None
                self._stop.wait(self.interval)
        finally:
            if utils is not None:
                utils.close()

    def collect(self) -> Iterator[Metric]:
        """The latest sample (nothing before the first), for the registry."""
        with self._lock:
            report, sampled_at, errors = self._report, self._sampled_at, self._errors
            pools = self._pools
        yield CounterMetricFamily(
            "graphile_py_queue_sample_errors",
            "Queue samples that failed (the database did not answer).",
            value=errors,
        )
        if report is None:
            return
        yield GaugeMetricFamily(
            "graphile_py_queue_sampled_at_seconds",
            "Unix time of the latest queue sample.",
            value=sampled_at,
        )
        depth = GaugeMetricFamily(
            "graphile_py_queue_jobs",
            "Jobs in the database by task and state (ready, scheduled, running, retrying,"
            " failed), at the latest sample.",
            labels=["task", "state"],
        )
        oldest = GaugeMetricFamily(
            "graphile_py_queue_oldest_ready_job_age_seconds",
            "How long the oldest ready job of each task has been due (0: none ready).",
            labels=["task"],
        )
        by_task = {status.task: status for status in report.tasks}
        with self._lock:
            # Tasks seen once keep reporting (zeros) so that their series do not vanish.
            self._tasks.update(by_task)
            tasks = sorted(self._tasks)
        for task in tasks:
            status = by_task.get(task)
            for state in _STATES:
                count = getattr(status.counts, state) if status is not None else 0
                depth.add_metric([task, state], count)
            age = status.oldest_ready_age if status is not None else None
            oldest.add_metric([task], age.total_seconds() if age is not None else 0.0)
        yield depth
        yield oldest
        if pools is not None:
            yield GaugeMetricFamily(
                "graphile_py_pools_alive",
                "Registered worker pools whose heartbeat is on time, at the latest sample.",
                value=pools[0],
            )
            yield GaugeMetricFamily(
                "graphile_py_pools_overdue",
                "Registered pools whose heartbeat is late and that no pool has declared"
                " lost yet (frozen or dead, jobs still held), at the latest sample.",
                value=pools[1],
            )


def _count_pools(utils: WorkerUtils) -> tuple[int, int] | None:
    """``(alive, overdue)`` registered pools, or None when the side schema is missing."""
    from graphile_py.admin.pools import count_pools
    from graphile_py.db.side_views import NOT_INSTALLED
    from graphile_py.errors import DatabaseError

    try:
        return count_pools(utils)
    except DatabaseError as exc:
        if exc.sqlstate in NOT_INSTALLED:
            return None
        raise


def conninfo_with_statement_timeout(conninfo: str, seconds: float) -> str:
    """``conninfo`` whose sessions cancel statements after ``seconds`` (the sampler's)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = str(conninfo_to_dict(conninfo).get("options") or "")
    timeout = "-c statement_timeout=" + str(max(1, round(seconds * 1000)))
    return make_conninfo(conninfo, options=(options + " " + timeout).strip())
