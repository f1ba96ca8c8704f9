"""Running real worker pools inside tests, and waiting for conditions without sleeping blind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from graphile_py import WorkerOptions, WorkerPool
from graphile_py.db import statements_for
from tests.support import TestDatabase


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def make_pool(
    db: TestDatabase, tasks: Mapping[str, Any], *, once: bool = False, **options: Any
) -> WorkerPool:
    return WorkerPool(
        tasks, conninfo=db.dsn, options=WorkerOptions(schema=db.schema, **options), once=once
    )


def run_once(db: TestDatabase, tasks: Mapping[str, Any], **options: Any) -> int:
    return make_pool(db, tasks, once=True, **options).run()


@contextmanager
def running_pool(
    db: TestDatabase, tasks: Mapping[str, Any], **options: Any
) -> Iterator[WorkerPool]:
    """A continuous pool, listening, for the duration of the block; stopped afterwards."""
    pool = make_pool(db, tasks, **options)
    pool.start()
    assert pool.wait_listening(10), "the LISTEN connection did not come up"
    stopper = threading.Thread(target=_serve, args=(pool,), daemon=True)
    stopper.start()
    try:
        yield pool
    finally:
        pool.request_stop("test finished")
        stopper.join(60)
        assert not stopper.is_alive(), "the pool did not shut down within 60s"


def _serve(pool: WorkerPool) -> None:
    pool.wait_for_stop_request()
    pool.shutdown()


def jobs_rows(db: TestDatabase, where: str = "true") -> list[dict[str, Any]]:
    from psycopg import sql
    from psycopg.rows import dict_row

    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select jobs.*, queues.queue_name from {s}._private_jobs as jobs"
                " left join {s}._private_job_queues as queues on queues.id = jobs.job_queue_id"
                " where {w} order by jobs.id"
            ).format(s=sql.Identifier(db.schema), w=sql.SQL(where))  # type: ignore[arg-type]
        )
        return cur.fetchall()


def queue_rows(db: TestDatabase) -> list[dict[str, Any]]:
    from psycopg import sql
    from psycopg.rows import dict_row

    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("select * from {s}._private_job_queues order by id").format(
                s=sql.Identifier(db.schema)
            )
        )
        return cur.fetchall()


class Recorder:
    """Thread-safe record of what tasks saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


def claim_like_a_worker(db: TestDatabase, task: str, pool_id: str) -> int:
    """Lock the one ready job of ``task`` for ``pool_id`` with the worker's own claim.

    The job is then ``running`` to every reader, and the admin functions leave it alone.
    """
    statements = statements_for(db.schema)
    with db.connect() as conn:
        task_ids = list(statements.register_task_identifiers(conn, [task]))
        jobs = statements.claim_jobs(conn, pool_id=pool_id, task_ids=task_ids)
    assert len(jobs) == 1, jobs
    return jobs[0].id
