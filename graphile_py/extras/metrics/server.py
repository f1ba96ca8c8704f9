"""An HTTP endpoint for a worker pool: Prometheus ``/metrics`` and health probes.

- ``/metrics``: the pool's :mod:`~graphile_py.extras.metrics.collectors` registry, in
  Prometheus' text format.
- ``/healthz`` (liveness): 200 while the pool's worker, LISTEN and background threads
  are alive and the queue sampler's loop has gone round recently; 503 otherwise. It
  does not touch the database, so a database outage does not get the process restarted.
- ``/readyz`` (readiness): 200 when the pool is running, the database answers and the
  schema has no breaking migration newer than this graphile-py knows; 503 with a JSON
  ``reason`` otherwise.

A :class:`~http.server.ThreadingHTTPServer` on a daemon thread serves them; it is meant
for a scraper and a probe, not for the internet (it binds to 127.0.0.1 by default).

>>> metrics = WorkerMetrics()  # doctest: +SKIP
>>> pool = WorkerPool(tasks, conninfo=dsn, options=WorkerOptions(events=metrics))
>>> pool.start()
>>> with serve_metrics(pool, port=9808):
...     pool.wait_for_stop_request()
...     pool.shutdown()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg

from graphile_py.db import map_db_errors
from graphile_py.db.health import schema_version
from graphile_py.db.migrate import latest_known_migration
from graphile_py.errors import ConfigurationError, GraphileError
from graphile_py.extras.metrics.collectors import (
    QueueSampler,
    WorkerMetrics,
    find_worker_metrics,
)

if TYPE_CHECKING:
    from graphile_py.pool.pool import WorkerPool

__all__ = ["MetricsServer", "Probe", "serve_metrics"]

logger = logging.getLogger("graphile_py.health")

#: ``(healthy, JSON body)`` as a probe answers.
Probe = tuple[bool, dict[str, Any]]

_UNDEFINED_TABLE = "42P01"
_UNDEFINED_COLUMN = "42703"


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one :class:`WorkerPool`.

    ``metrics`` defaults to the :class:`WorkerMetrics` among the pool's events (pass
    ``WorkerOptions(events=WorkerMetrics())``). The port is bound here, so a port in
    use fails at once (:class:`ConfigurationError`); port 0 picks a free one
    (:attr:`port`). :meth:`start` starts serving and sampling; :meth:`close` stops both.
    """

    def __init__(
        self,
        pool: WorkerPool,
        *,
        metrics: WorkerMetrics | None = None,
        host: str = "127.0.0.1",
        port: int = 9808,
        sample_interval: float = 15.0,
        probe_timeout: float = 5.0,
    ) -> None:
        found = metrics or find_worker_metrics(pool.options.events)
        if found is None or found.pool is not pool:
            raise ConfigurationError(
                "the pool does not report to these metrics: create it with"
                " WorkerOptions(events=WorkerMetrics()) (or combine_events(yours, metrics))"
                " and pass that WorkerMetrics here"
            )
        self.pool = pool
        self.metrics = found
        self.probe_timeout = probe_timeout
        #: /healthz fails when the sampler's loop has not gone round for this long.
        self.stale_after = max(60.0, 3 * sample_interval) + 3 * probe_timeout
        try:
            self._httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self._httpd.owner = self
        self.sampler = QueueSampler(
            pool.conninfo,
            schema=pool.options.schema,
            registry=found.registry,
            interval=sample_interval,
            tasks=pool.tasks,
            statement_timeout=probe_timeout,
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="graphile-py-metrics-http",
            daemon=True,
        )
        self._closed = False

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server is bound to (useful with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``, the base of the three paths."""
        host = self.host if ":" not in self.host else "[" + self.host + "]"
        return "http://" + host + ":" + str(self.port)

    def start(self) -> MetricsServer:
        """Start serving and sampling; returns self."""
        self.sampler.start()
        self._thread.start()
        logger.info(
            "Serving metrics and health checks on %s (/metrics, /healthz, /readyz)", self.url
        )
        return self

    def close(self) -> None:
        """Stop serving and sampling (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.sampler.stop()
        if self._thread.ident is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        if self._thread.ident is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the probes ----------------------------------------------------------------------

    def liveness(self) -> Probe:
        """Are the pool's threads and the sampler's loop alive? No database access."""
        problems: list[str] = []
        dead = self.pool.dead_threads()
        if dead:
            problems.append("threads have died: " + ", ".join(dead))
        if not self.sampler.alive:
            problems.append("the metrics sampler thread has died")
        else:
            silent = time.monotonic() - self.sampler.heartbeat
            if silent > self.stale_after:
                problems.append(f"the metrics sampler has not run for {silent:.0f}s")
        if problems:
            return False, {"status": "unhealthy", "reason": "; ".join(problems)}
        return True, {"status": "ok", "pool": self.pool.id}

    def readiness(self) -> Probe:
        """Is the pool running, does the database answer, is the schema one we know?"""
        pool = self.pool
        if not pool.started:
            return False, {"status": "unavailable", "reason": "the worker pool is starting"}
        if pool.stopping:
            return False, {"status": "unavailable", "reason": "the worker pool is shutting down"}
        schema = pool.options.schema
        timeout_ms = str(max(1, round(self.probe_timeout * 1000)))
        try:
            with map_db_errors("Connecting to the database"):
                conn = psycopg.connect(
                    pool.conninfo,
                    autocommit=True,
                    connect_timeout=max(1, round(self.probe_timeout)),
                    prepare_threshold=None,
                )
            # The time limit is set for this transaction only, not with the startup
            # parameter "options": a transaction-mode pooler refuses that unless told to
            # ignore it, and a session setting would outlive the probe on its connection.
            with conn, conn.transaction():
                with map_db_errors("Limiting the probe's statement time"):
                    conn.execute("select set_config('statement_timeout', %s, true)", (timeout_ms,))
                latest, breaking = schema_version(conn, schema)
        except GraphileError as exc:
            if exc.sqlstate in {_UNDEFINED_TABLE, _UNDEFINED_COLUMN}:
                reason = f"the schema {schema!r} is not installed or needs migrating"
            else:
                reason = str(exc)
            return False, {"status": "unavailable", "reason": reason}
        known = latest_known_migration()
        if latest is None:
            reason = f"the schema {schema!r} has no migrations; it needs migrating"
            return False, {"status": "unavailable", "reason": reason}
        if breaking is not None and breaking > known:
            reason = (
                f"the database schema is at revision {latest}, with breaking migration"
                f" {breaking}, but this worker only supports up to revision {known}"
            )
            return False, {"status": "unavailable", "reason": reason}
        return True, {"status": "ready", "schema_version": latest, "supported_version": known}


def serve_metrics(
    pool: WorkerPool,
    *,
    port: int = 9808,
    host: str = "127.0.0.1",
    metrics: WorkerMetrics | None = None,
    sample_interval: float = 15.0,
) -> MetricsServer:
    """Start a :class:`MetricsServer` for ``pool``; close it (or use ``with``) when done."""
    return MetricsServer(
        pool, metrics=metrics, host=host, port=port, sample_interval=sample_interval
    ).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: MetricsServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                status = 200
                content_type = CONTENT_TYPE_LATEST
                body = generate_latest(owner.metrics.registry)
            elif path in {"/healthz", "/readyz"}:
                ok, answer = owner.liveness() if path == "/healthz" else owner.readiness()
                status = 200 if ok else 503
                content_type = "application/json"
                body = json.dumps(answer).encode()
            else:
                status, content_type = 404, "application/json"
                body = b'{"status": "not found", "paths": ["/metrics", "/healthz", "/readyz"]}'
        except Exception as exc:
            logger.exception("Error answering %s", path)
            status, content_type = 500, "application/json"
            body = json.dumps({"status": "error", "reason": str(exc)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes every few seconds would drown the log (and break JSON-only stderr).
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)
