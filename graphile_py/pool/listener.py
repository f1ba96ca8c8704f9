"""The LISTEN thread: hears about new jobs and migrations on one dedicated connection.

It listens on ``jobs:insert`` and ``worker:migrate`` (the channels are global to the
database, shared with Node workers). A job notification nudges idle workers; a breaking
migration notification asks the pool to shut down. When the connection fails it
reconnects with graphile-worker's jittered exponential backoff and nudges every worker
once it is back, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg

__all__ = ["Listener", "reconnect_delay"]

logger = logging.getLogger("graphile_py.listener")

_LISTEN = b'LISTEN "jobs:insert"; LISTEN "worker:migrate";'
# How long one wait for notifications lasts before the thread checks whether to stop.
_STOP_CHECK_INTERVAL = 0.25


def reconnect_delay(attempts: int) -> float:
    """Seconds before reconnect attempt ``attempts`` (1-based), jittered, at most 60."""
    base_ms = min(60_000.0, 50.0 * math.exp(attempts))
    return math.ceil((0.5 + math.sqrt(random.random()) / 2) * base_ms) / 1000.0


class Listener:
    """Runs the LISTEN loop on its own thread until :meth:`stop`."""

    def __init__(
        self,
        *,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        on_jobs: Callable[[int], None],
        on_breaking_migration: Callable[[int | None], None],
        on_reconnected: Callable[[], None],
        on_connecting: Callable[[int], None] = lambda attempts: None,
        on_connected: Callable[[], None] = lambda: None,
        on_error: Callable[[BaseException], None] = lambda error: None,
        on_notification: Callable[[str, str], None] = lambda channel, payload: None,
        name: str = "graphile-py-listener",
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._on_jobs = on_jobs
        self._on_breaking_migration = on_breaking_migration
        self._on_reconnected = on_reconnected
        self._on_connecting = on_connecting
        self._on_connected = on_connected
        self._on_error = on_error
        self._on_notification = on_notification
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: Times the connection was lost and re-established (for operators and metrics).
        self.reconnects = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the thread has ended (after :meth:`stop`, or a bug); True before start."""
        return self._thread.ident is None or self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the first LISTEN succeeded (True) or ``timeout`` passed (False)."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        attempts = 0
        ever_connected = False
        while not self._stop.is_set():
            self._on_connecting(attempts)
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                ) as conn:
                    conn.execute(_LISTEN)
                    attempts = 0
                    self._connected.set()
                    self._on_connected()
                    if ever_connected:
                        self.reconnects += 1
                        logger.info("Listening for notifications again")
                        self._on_reconnected()
                    ever_connected = True
                    self._listen(conn)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                attempts += 1
                delay = reconnect_delay(attempts)
                self._on_error(exc)
                logger.warning(
                    "Error with notify listener (trying again in %dms): %s",
                    round(delay * 1000),
                    str(exc).strip() or type(exc).__name__,
                )
                self._stop.wait(delay)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=_STOP_CHECK_INTERVAL):
                if self._stop.is_set():
                    return
                self._dispatch(notify.channel, notify.payload)

    def _dispatch(self, channel: str, payload: str) -> None:
        self._on_notification(channel, payload)
        message = _parse(payload)
        if channel == "jobs:insert":
            count = message.get("count", 1) if isinstance(message, dict) else 1
            if isinstance(count, int | float) and not isinstance(count, bool) and count > 0:
                self._on_jobs(math.ceil(count))
        elif channel == "worker:migrate" and isinstance(message, dict) and message.get("breaking"):
            number = message.get("migrationNumber")
            self._on_breaking_migration(number if isinstance(number, int) else None)


def _parse(payload: str) -> object:
    # Node's payloads are JSON, but '' (legacy trigger) and garbage must be tolerated.
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None
