"""A pool's registration, heartbeats, rescue of lost pools, and fencing.

The pool registers itself in the side schema's registry before its first claim, then a
thread of its own writes a heartbeat every ``heartbeat_interval`` on a dedicated
connection (never one of the pool's, which tasks may all be holding), reconnecting with
backoff when it is lost. After each heartbeat that sees another registered pool silent
past its ``heartbeat_timeout``, this pool rescues that pool's jobs (one rescuer at a
time: the registry rows are locked ``skip locked``).

Fencing is the other side of the rescue: a pool that learns it was declared lost, or has
not written a heartbeat for ``heartbeat_timeout`` (so others may already be running its
jobs), must stop. :meth:`Heartbeat.overdue` is cheap enough to ask before every claim.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import psycopg

from graphile_py.db.registry import LostPool, PoolRegistration, RegistryStatements
from graphile_py.db.retry import backoff_delay, with_retries
from graphile_py.db.side_schema import side_schema_ready
from graphile_py.db.translate import map_db_errors
from graphile_py.errors import EXIT_FENCED, GraphileError
from graphile_py.logs import plural
from graphile_py.pool.options import WorkerOptions

__all__ = ["Heartbeat", "graphile_py_version"]

logger = logging.getLogger("graphile_py.heartbeat")

_INSUFFICIENT_PRIVILEGE = "42501"
# The first reconnect waits about this long; later ones back off up to the interval.
_RECONNECT_LOW = 0.05


def graphile_py_version() -> str:
    """The installed graphile-py's version, as the registry records it."""
    try:
        return metadata.version("graphile-py")
    except metadata.PackageNotFoundError:
        return "unknown"


class Heartbeat:
    """Registers one pool, keeps its heartbeat, rescues others, and says when to fence.

    ``counters`` returns ``(succeeded, failed)`` for the registry; ``on_fenced(reason)``
    is called once, from the heartbeat thread, when the pool must stop; ``on_rescued``
    once per pool this one declared lost.
    """

    def __init__(
        self,
        *,
        registration: PoolRegistration,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        statements: RegistryStatements,
        interval: float,
        counters: Callable[[], tuple[int, int]],
        on_fenced: Callable[[str], None],
        on_rescued: Callable[[LostPool], None],
        history_payload_limit: int | None = None,
    ) -> None:
        self.registration = registration
        #: With history on, the payload cap of the ``lost`` attempts a rescue records.
        self._history_payload_limit = history_payload_limit
        self.pool_id = registration.pool_id
        self.timeout = registration.heartbeat_timeout
        self.interval = interval
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._statements = statements
        self._counters = counters
        self._on_fenced = on_fenced
        self._on_rescued = on_rescued
        self._conn: psycopg.Connection[Any] | None = None
        self._ever_connected = False
        self._fence_lock = threading.Lock()
        #: Why the pool fenced itself (None while it has not).
        self.fenced: str | None = None
        self._stop = threading.Event()
        self._registered = False
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"graphile-py-heartbeat-{self.pool_id}", daemon=True
        )
        #: Times the heartbeat connection was lost and re-established.
        self.reconnects = 0
        #: False through a transaction-mode pooler, where a session's statement_timeout
        #: would leak to other clients (the pooler's query_timeout bounds statements then).
        self.session_settings = True

    @classmethod
    def for_pool(
        cls,
        pool_id: str,
        *,
        options: WorkerOptions,
        tasks: list[str],
        conninfo: str,
        connect_kwargs: dict[str, Any],
        counters: Callable[[], tuple[int, int]],
        on_fenced: Callable[[str], None],
        on_rescued: Callable[[LostPool], None],
    ) -> Heartbeat:
        """The heartbeat of a pool in this process, as its options configure it."""
        registration = PoolRegistration(
            pool_id=pool_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            version=graphile_py_version(),
            concurrency=options.concurrency,
            task_identifiers=tasks,
            heartbeat_timeout=options.heartbeat_timeout,
        )
        return cls(
            registration=registration,
            conninfo=conninfo,
            connect_kwargs=connect_kwargs,
            statements=RegistryStatements.for_schema(options.schema, options.side_schema),
            interval=options.heartbeat_interval,
            counters=counters,
            on_fenced=on_fenced,
            on_rescued=on_rescued,
            history_payload_limit=options.history_payload_limit if options.history else None,
        )

    @property
    def registered(self) -> bool:
        """True once the pool's row is in the registry."""
        return self._registered

    @property
    def alive(self) -> bool:
        """False once the heartbeat thread has ended; True before it starts."""
        return self._thread.ident is None or self._thread.is_alive()

    def overdue(self) -> bool:
        """True when no heartbeat has been written for ``heartbeat_timeout``.

        By then other pools may have declared this one lost and run its jobs again.
        """
        return self._registered and time.monotonic() - self._last_beat >= self.timeout

    def may_claim(self) -> bool:
        """False once the pool is fenced; fences it when the heartbeat is overdue.

        Cheap (a clock read): asked before every claim, so that a pool waking from a
        freeze does not claim before its heartbeat thread has noticed.
        """
        if self.fenced is not None:
            return False
        if self.overdue():
            self.fence(f"no heartbeat was written for {self.timeout:g}s or more")
            return False
        return True

    def fence(self, reason: str) -> None:
        """Fence the pool (once): log why, then call ``on_fenced``."""
        with self._fence_lock:
            if self.fenced is not None:
                return
            self.fenced = reason
        logger.error(
            "Worker pool %s fenced itself: %s. Other pools may have declared it lost and be"
            " running its jobs again, so it stops claiming, sets the abort_event of its"
            " running jobs, writes no outcome over a job another pool holds, and exits"
            " with status %d",
            self.pool_id,
            reason,
            EXIT_FENCED,
        )
        self._on_fenced(reason)

    # -- on the pool's starting thread ----------------------------------------------------

    def register(self, wait: Callable[[float], bool]) -> bool:
        """Insert the pool's row (retried; ``wait`` as in with_retries).

        False, with one warning, when the side schema is not installed (or not at this
        graphile-py's revision): the pool then runs without heartbeats, and its jobs
        stay under the four-hour rule.
        """

        def attempt() -> bool:
            conn = self._connection()
            if not side_schema_ready(conn, self._statements.side_schema):
                return False
            self._statements.register(conn, self.registration)
            return True

        try:
            ready = with_retries(attempt, description="Registering the worker pool", wait=wait)
        except GraphileError as exc:
            self._close()
            if exc.sqlstate != _INSUFFICIENT_PRIVILEGE:
                raise
            ready = False
            problem = f"may not be written by this role ({exc})"
        else:
            problem = "is not installed or is out of date (run graphile-py migrate)"
        if not ready:
            self._close()
            logger.warning(
                "The %s schema %s: pool %s runs without heartbeats, so if it dies its jobs"
                " stay locked until the 4-hour stale-lock sweep or graphile-py unlock frees"
                " them",
                self._statements.side_schema,
                problem,
                self.pool_id,
            )
            return False
        self._registered = True
        self._last_beat = time.monotonic()
        logger.info(
            "Pool %s registered (heartbeat every %gs; declared lost after %gs without one)",
            self.pool_id,
            self.interval,
            self.timeout,
        )
        return True

    def start(self) -> None:
        """Start the heartbeat thread (after :meth:`register` returned True)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat thread (at the end of shutdown, when no job is left)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def deregister(self) -> None:
        """After a clean shutdown (and :meth:`stop`): mark the pool stopped, close up."""
        if not self._registered:
            self._close()
            return
        try:
            succeeded, failed = self._counters()
            done = self._statements.deregister(
                self._connection(), self.pool_id, succeeded=succeeded, failed=failed
            )
            if done:
                logger.debug("Pool %s deregistered", self.pool_id)
        except GraphileError as exc:
            # Harmless: another pool will declare it lost, and it holds no job any more.
            logger.warning("Could not deregister pool %s: %s", self.pool_id, exc)
        finally:
            self._close()

    def close(self) -> None:
        """Close the heartbeat connection without deregistering (a fenced pool)."""
        self._close()

    # -- the heartbeat thread -------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        delay = 0.0  # the first heartbeat (and rescue) at once
        while not self._stop.wait(delay):
            silence = time.monotonic() - self._last_beat
            if silence >= self.timeout:
                # Frozen (SIGSTOP, a stalled VM) or starved past the timeout: others may
                # be running our jobs by now, whatever the next heartbeat would say.
                self._fence(f"no heartbeat was written for {silence:.1f}s")
                return
            error = self._beat()
            if error is None:
                failures = 0
                delay = self.interval
                continue
            if error == "lost":
                self._fence("another pool declared it lost (its heartbeat was overdue)")
                return
            failures += 1
            silence = time.monotonic() - self._last_beat
            if silence >= self.timeout:
                self._fence(f"no heartbeat could be written for {silence:.1f}s ({error})")
                return
            delay = min(
                backoff_delay(failures - 1, low=_RECONNECT_LOW, high=self.interval),
                self.timeout - silence,
            )
            logger.warning(
                "Pool %s could not write its heartbeat (trying again in %.2fs): %s",
                self.pool_id,
                delay,
                error,
            )

    def _beat(self) -> str | None:
        """One heartbeat and, when worth it, one rescue: None, "lost", or the error."""
        try:
            conn = self._connection()
            succeeded, failed = self._counters()
            others_overdue = self._statements.heartbeat(
                conn, self.pool_id, succeeded=succeeded, failed=failed
            )
            if others_overdue is None:
                return "lost"
            self._last_beat = time.monotonic()
            if others_overdue:
                rescued = self._statements.rescue(
                    conn, self.pool_id, history_payload_limit=self._history_payload_limit
                )
                for lost in rescued:
                    self._rescued(lost)
        except GraphileError as exc:
            self._close()
            return str(exc).strip() or type(exc).__name__
        return None

    def _fence(self, reason: str) -> None:
        self._close()
        self.fence(reason)

    def _rescued(self, lost: LostPool) -> None:
        shown = ", ".join(str(job_id) for job_id in lost.job_ids[:20])
        more = ", ..." if len(lost.job_ids) > 20 else ""
        logger.warning(
            "Declared worker pool %s (host %s, pid %d) lost: no heartbeat since %s. Released"
            " %s%s and %s; they will run again",
            lost.pool_id,
            lost.hostname,
            lost.pid,
            lost.heartbeat_at.isoformat(),
            plural(len(lost.job_ids), "job"),
            f" ({shown}{more})" if lost.job_ids else "",
            plural(lost.queues, "named queue"),
        )
        self._on_rescued(lost)

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        self._conn = None
        # Bounded waits, so a dead network cannot hold the thread past the timeout
        # (connect_timeout counts whole seconds, at least 2).
        limit_ms = max(500, int(self.timeout * 500))
        with map_db_errors("Connecting for the heartbeat"):
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(2, int(self.timeout / 2)),
                tcp_user_timeout=limit_ms,
                application_name=f"graphile-py heartbeat {self.pool_id}"[:63],
                **self._connect_kwargs,
            )
            try:
                if self.session_settings:
                    conn.execute(
                        b"select set_config('statement_timeout', %s, false)", (f"{limit_ms}ms",)
                    )
            except BaseException:
                conn.close()
                raise
        if self._ever_connected:
            self.reconnects += 1
            logger.info("Pool %s: heartbeat connection re-established", self.pool_id)
        self._conn = conn
        self._ever_connected = True
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
