"""A worker pool inside a FastAPI or Starlette app, for deployments small enough for one
process to serve HTTP and run jobs.

>>> app = FastAPI(lifespan=graphile_lifespan(registry, conninfo=DATABASE_URL))  # doctest: +SKIP

The pool is the same :class:`~graphile_py.WorkerPool` that ``graphile-py worker`` runs,
on its own threads: requests are served while jobs run. It starts after the app's own
lifespan (pass it as ``lifespan=``: engines and clients it creates exist before the
first job) and stops before it, in the pool's usual order: no new claims, running jobs
get until ``shutdown_timeout`` to finish (their ``abort_event`` is set at
``graceful_shutdown_abort_timeout``), and jobs still running then are failed, so they
are retried by another worker instead of staying locked. The server's signals stay the
server's: the pool installs no handlers.

Nothing here imports FastAPI or Starlette: any framework that runs a lifespan
``async`` context manager per app (the ASGI lifespan protocol, as Starlette does) works.
For larger deployments run ``graphile-py worker`` as its own process instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from graphile_py.db import map_db_errors
from graphile_py.db.migrate import migrate
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.pool import WorkerPool
from graphile_py.tasks import TaskFunction

if TYPE_CHECKING:
    from graphile_py.cron.crontab import CronItem
    from graphile_py.cron.scheduler import CronScheduler

__all__ = ["InAppWorker", "graphile_lifespan"]

logger = logging.getLogger("graphile_py.contrib.fastapi")

AppT = TypeVar("AppT")
#: A Starlette-style lifespan: called with the app, an async context manager that may
#: yield a dict of state (``request.state`` in FastAPI) or None.
Lifespan = Callable[[AppT], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class InAppWorker:
    """A worker pool (and its cron) started and stopped from async code.

    ``async with InAppWorker(tasks, conninfo=...) as worker:`` migrates the schema
    (unless ``migrate=False``), starts the pool and, with ``crontab``, its cron; leaving
    the block shuts both down in order. Blocking work happens on threads, so the event
    loop keeps serving requests meanwhile. If the pool stops by itself (a fatal database
    error, a breaking migration, fencing) the app goes on serving HTTP without it: the
    reason is logged at ERROR and :attr:`running` turns False, for a health check to see.
    """

    def __init__(
        self,
        tasks: Mapping[str, TaskFunction],
        *,
        conninfo: str,
        options: WorkerOptions | None = None,
        crontab: Sequence[CronItem] = (),
        migrate: bool = True,
    ) -> None:
        self.tasks = tasks
        self.conninfo = conninfo
        self.options = options or WorkerOptions()
        self.crontab = crontab
        self.migrate = migrate
        self._pool: WorkerPool | None = None
        self._cron: CronScheduler | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        #: The pool's exit status once it stopped (0 clean, 57 breaking migration, 75
        #: fenced), or None while it runs.
        self.exit_code: int | None = None
        #: The error that stopped the pool, if one did.
        self.error: BaseException | None = None

    @property
    def pool(self) -> WorkerPool:
        """The running pool (its state, ``connections`` for companions, ``request_stop``)."""
        if self._pool is None:
            raise RuntimeError("the in-app worker has not been started")
        return self._pool

    @property
    def running(self) -> bool:
        """True from start until the pool stops, by shutdown or by itself."""
        return self._pool is not None and self.exit_code is None and not self._pool.stopping

    async def start(self) -> None:
        """Migrate (unless told not to), start the pool and cron; errors are raised here."""
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Shut down in order and wait (at most about ``shutdown_timeout``)."""
        if self._pool is None:
            return
        self._stopping.set()
        self._pool.request_stop("application shutdown")
        watcher = self._watcher
        if watcher is not None:
            await asyncio.to_thread(watcher.join)

    async def __aenter__(self) -> InAppWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _start(self) -> None:
        opts = self.options
        if self.migrate:
            with map_db_errors("Connecting to the database"):
                conn = psycopg.connect(self.conninfo, autocommit=True)
            with conn:
                migrate(conn, schema=opts.schema, side_schema=opts.side_schema)
        pool = WorkerPool(self.tasks, conninfo=self.conninfo, options=opts)
        pool.start()
        self._pool = pool
        try:
            if self.crontab:
                from graphile_py.cron.scheduler import CronScheduler

                self._cron = CronScheduler(
                    self.crontab, pool=pool.connections, schema=opts.schema, events=opts.events
                )
                self._cron.start()
        except BaseException:
            pool.request_stop("cron failed to start")
            pool.shutdown()
            raise
        self._watcher = threading.Thread(
            target=self._watch, name=f"graphile-py-app-{pool.id}", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        """Wait for a stop (ours, or the pool's own), then shut down in order."""
        pool = self.pool
        pool.wait_for_stop_request()
        try:
            if self._cron is not None:
                self._cron.stop()
        finally:
            pool.shutdown()
        try:
            self.exit_code = pool.result()
        except Exception as exc:  # WorkerError: what stopped the pool
            self.error = exc
            self.exit_code = 1
        if not self._stopping.is_set() or self.exit_code != 0:
            logger.error(
                "The in-app graphile-py worker stopped by itself (exit status %s%s); the app"
                " goes on serving requests, but this process runs no more jobs",
                self.exit_code,
                f": {self.error}" if self.error else "",
            )


def graphile_lifespan(
    tasks: Mapping[str, TaskFunction],
    *,
    conninfo: str | Callable[[], str],
    options: WorkerOptions | None = None,
    crontab: Sequence[CronItem] = (),
    migrate: bool = True,
    lifespan: Lifespan[AppT] | None = None,
    state_key: str = "graphile_worker",
) -> Callable[[AppT], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)`` that runs a
    worker pool while the app runs.

    ``lifespan`` is the app's own: it is entered first and left last, and the state it
    yields is kept; the :class:`InAppWorker` is added to the state under ``state_key``
    (``request.state.graphile_worker``). ``conninfo`` may be a function, called at
    start-up, when the connection string comes from settings loaded then.
    """

    @asynccontextmanager
    async def run(app: AppT) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            state: dict[str, Any] = {}
            if lifespan is not None:
                own: Mapping[str, Any] | None = await stack.enter_async_context(lifespan(app))
                state.update(own or {})
            worker = InAppWorker(
                tasks,
                conninfo=conninfo() if callable(conninfo) else conninfo,
                options=options,
                crontab=crontab,
                migrate=migrate,
            )
            state[state_key] = await stack.enter_async_context(worker)
            yield state

    return run
