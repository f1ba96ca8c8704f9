"""graphile_lifespan composes with the app's own lifespan, in-process under a real
uvicorn server on a thread, on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from graphile_py import ConnectError, JobHelpers, TaskRegistry, WorkerOptions, add_job
from graphile_py.contrib.fastapi import InAppWorker, graphile_lifespan
from tests.support import TestDatabase


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` under uvicorn on a thread; its lifespan runs as in production."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"


def test_the_worker_runs_inside_the_apps_own_lifespan(db: TestDatabase) -> None:
    events: list[str] = []
    ran = threading.Event()
    registry = TaskRegistry()

    @registry.task
    def remember(payload: Any, helpers: JobHelpers) -> None:
        events.append(f"job {payload['n']}")
        ran.set()

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("own start")
        yield {"greeting": "hello"}
        worker: InAppWorker = app.state.seen_worker
        # The worker stopped before the app's own lifespan ends.
        events.append(f"own stop (worker running: {worker.running})")

    app = FastAPI(
        lifespan=graphile_lifespan(
            registry,
            conninfo=lambda: db.dsn,  # read at start-up, as from settings
            options=WorkerOptions(schema=db.schema),
            lifespan=own,
        )
    )

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        worker = request.state.graphile_worker
        app.state.seen_worker = worker
        return {"greeting": request.state.greeting, "running": worker.running}

    with serve(app) as client:
        assert client.get("/state").json() == {"greeting": "hello", "running": True}
        with db.connect() as conn:
            add_job(conn, "remember", {"n": 1}, schema=db.schema)
        assert ran.wait(10), "the in-app worker did not run the job"
    assert events == ["own start", "job 1", "own stop (worker running: False)"]
    assert app.state.seen_worker.exit_code == 0
    with db.connect() as conn:
        assert conn.execute(f'select count(*) from "{db.schema}"._private_jobs').fetchone() == (0,)


def test_a_worker_that_cannot_start_stops_the_app_and_unwinds_its_lifespan() -> None:
    unwound: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            unwound.append("own lifespan left")

    registry = TaskRegistry({"noop": lambda payload, helpers: None})
    app = FastAPI(
        lifespan=graphile_lifespan(
            registry, conninfo="postgresql://nobody@127.0.0.1:1/none", lifespan=own
        )
    )

    async def start() -> None:
        async with app.router.lifespan_context(app):
            raise AssertionError("the app started without its worker")

    with pytest.raises(ConnectError):
        asyncio.run(start())
    assert unwound == ["own lifespan left"]


def test_in_app_worker_without_migrating_on_a_migrated_database(db: TestDatabase) -> None:
    async def scenario() -> InAppWorker:
        worker = InAppWorker(
            {"noop": lambda payload, helpers: None},
            conninfo=db.dsn,
            options=WorkerOptions(schema=db.schema),
            migrate=False,
        )
        async with worker:
            assert worker.running and worker.pool.started
        return worker

    worker = asyncio.run(scenario())
    assert not worker.running and worker.exit_code == 0 and worker.error is None


def test_a_pool_that_stops_by_itself_is_logged_and_seen(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> InAppWorker:
        worker = InAppWorker(
            {"noop": lambda payload, helpers: None},
            conninfo=db.dsn,
            options=WorkerOptions(schema=db.schema),
            migrate=False,
        )
        async with worker:
            # As a breaking migration or fencing would: the pool stops on its own.
            worker.pool.request_stop("breaking migration 999")
            for _ in range(200):
                if worker.exit_code is not None:
                    break
                await asyncio.sleep(0.05)
            assert not worker.running
        return worker

    with caplog.at_level("ERROR", logger="graphile_py.contrib.fastapi"):
        worker = asyncio.run(scenario())
    assert worker.exit_code == 0
    assert "The in-app graphile-py worker stopped by itself" in caplog.text
