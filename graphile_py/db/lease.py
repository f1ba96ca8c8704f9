"""A fast hand-off of a pool's connections between the threads of one worker pool.

psycopg_pool's ``getconn``/``putconn`` are built for correctness under any use, and
they cost for it: with 24 worker threads sharing 10 connections, handing a returned
connection to a waiting thread (a Condition per waiting client, the pool's lock, its
bookkeeping) took about 130 µs of CPU per checkout, more than the rest of running a
no-op job. :class:`ConnectionLease` keeps the connections it has taken from the pool
in a :class:`queue.SimpleQueue` (a C-level hand-off) and lends them from there; it only
goes to the pool to grow, up to the pool's size, and gives a connection back to the pool
when it may be unusable, so that the pool replaces it.

It has the pool's ``getconn``/``putconn``/``check`` methods, so that every user of the
worker's connections (claims and outcomes, cron, tasks' ``helpers.connection()``) goes
through it; anyone going to the pool directly could wait for connections the lease holds.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = ["ConnectionLease"]

# How often a thread waiting for a connection looks whether the pool has one for it.
_RECHECK = 0.02
# How long a thread waits inside the pool for a connection the pool is opening.
_GROW_WAIT = 0.002


class ConnectionLease:
    """Lends the connections of ``pool`` to many threads, cheaply; see the module docs."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], *, timeout: float = 30.0):
        self._pool = pool
        self._size = pool.max_size
        self._timeout = timeout
        self._idle: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._held = 0  # connections taken from the pool and not given back
        self._closed = False

    @property
    def held(self) -> int:
        """Connections taken from the pool (lent out, or idle here)."""
        return self._held

    @property
    def idle(self) -> int:
        """Connections idle here: counted as in use by the pool's own statistics."""
        return self._idle.qsize()

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        """A connection for the caller's exclusive use; give it back with :meth:`putconn`."""
        wait = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if self._closed:
                    raise PoolTimeout("the worker's connections are closed")
                grow = self._held < self._size
                if grow:
                    self._held += 1
            remaining = deadline - time.monotonic()
            if grow:
                # Only a short wait in the pool: a new connection takes a while to open
                # (the pool opens them one at a time), and meanwhile a connection given
                # back to the lease should go to whoever waits first.
                try:
                    return self._pool.getconn(timeout=max(min(remaining, _GROW_WAIT), 0.001))
                except PoolTimeout:
                    with self._lock:
                        self._held -= 1
                except BaseException:
                    with self._lock:
                        self._held -= 1
                    raise
                remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PoolTimeout(
                    f"no connection became free within {wait:g}s (all {self._size} in use)"
                )
            try:
                return self._idle.get(timeout=min(remaining, _RECHECK))
            except queue.Empty:
                continue

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        """Take back a connection; one that may be unusable goes back to the pool."""
        if self._closed or not _reusable(conn):
            self._give_back(conn)
        else:
            self._idle.put(conn)

    def check(self) -> None:
        """After a lost connection: hand the idle ones to the pool, which tests them."""
        self._drain_idle()
        self._pool.check()

    def close(self) -> None:
        """Give every idle connection back to the pool; lent ones go back when returned."""
        with self._lock:
            self._closed = True
        self._drain_idle()

    def _drain_idle(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._held -= 1
        self._pool.putconn(conn)  # the pool rolls back, or discards a broken one


def _reusable(conn: psycopg.Connection[Any]) -> bool:
    return (
        not conn.closed
        and not conn.broken
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )
