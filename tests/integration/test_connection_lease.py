"""ConnectionLease: the worker's cheap hand-off of its pool's connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool, PoolTimeout

from graphile_py import DatabaseError
from graphile_py.db import borrow
from graphile_py.db.lease import ConnectionLease
from tests.support import TestDatabase


@pytest.fixture
def pool(db: TestDatabase) -> Iterator[ConnectionPool[psycopg.Connection[Any]]]:
    with ConnectionPool(
        db.dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    ) as pool:
        pool.wait()
        yield pool


def test_lends_at_most_the_pools_size_and_hands_over_a_returned_one(
    pool: ConnectionPool[psycopg.Connection[Any]],
) -> None:
    lease = ConnectionLease(pool, timeout=5)
    first, second = lease.getconn(), lease.getconn()
    assert lease.held == 2 and first is not second
    got: list[psycopg.Connection[Any]] = []
    waiter = threading.Thread(target=lambda: got.append(lease.getconn()))
    waiter.start()
    time.sleep(0.2)
    assert not got, "a third connection was lent from a pool of two"
    lease.putconn(first)
    waiter.join(5)
    assert got == [first]
    assert lease.held == 2 and lease.idle == 0
    lease.putconn(first)
    lease.putconn(second)
    assert lease.idle == 2
    # Idle in the lease, they are reused rather than taken from the pool again.
    assert lease.getconn() in (first, second)


def test_a_full_lease_times_out_with_the_pools_error(
    pool: ConnectionPool[psycopg.Connection[Any]],
) -> None:
    lease = ConnectionLease(pool, timeout=0.3)
    held = [lease.getconn(), lease.getconn()]
    with pytest.raises(PoolTimeout, match=r"no connection became free within 0\.3s"):
        lease.getconn()
    with pytest.raises(DatabaseError) as raised, borrow(lease):
        pass
    assert isinstance(raised.value.__cause__, PoolTimeout)
    for conn in held:
        lease.putconn(conn)


def test_unusable_connections_go_back_to_the_pool(
    pool: ConnectionPool[psycopg.Connection[Any]],
) -> None:
    lease = ConnectionLease(pool, timeout=5)
    in_transaction = lease.getconn()
    in_transaction.execute("begin")
    in_transaction.execute("select 1")
    lease.putconn(in_transaction)
    closed = lease.getconn()
    closed.close()
    lease.putconn(closed)
    assert lease.held == 0 and lease.idle == 0
    # The pool rolled the first back and replaced the closed one.
    for _ in range(2):
        conn = lease.getconn()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("select 1").fetchone() == (1,)
        lease.putconn(conn)


def test_lost_connections_are_replaced_after_a_failure(
    db: TestDatabase, pool: ConnectionPool[psycopg.Connection[Any]]
) -> None:
    lease = ConnectionLease(pool, timeout=5)
    conns = [lease.getconn(), lease.getconn()]
    pids = [conn.info.backend_pid for conn in conns]
    for conn in conns:
        lease.putconn(conn)
    with db.connect() as admin:
        admin.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) as pid", (pids,))
    # The first use finds its connection dead; borrow hands the idle ones to the pool to test.
    with pytest.raises(psycopg.OperationalError), borrow(lease) as conn:
        conn.execute("select 1")
    assert lease.idle == 0
    with borrow(lease) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.info.backend_pid not in pids


def test_close_gives_idle_connections_back(pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
    lease = ConnectionLease(pool, timeout=5)
    conn = lease.getconn()
    lease.putconn(conn)
    lease.close()
    assert lease.held == 0 and pool.get_stats()["pool_available"] >= 1
    with pytest.raises(PoolTimeout, match="closed"):
        lease.getconn()


def test_tasks_borrowing_connections_share_the_lease_with_the_workers(db: TestDatabase) -> None:
    """More workers than connections, every task borrowing one: nobody waits for the pool.

    Were tasks to go to the pool directly, they would wait for connections the lease
    keeps idle between claims, time out and fail.
    """
    from graphile_py import add_jobs
    from graphile_py.jobs import JobSpec
    from tests.support.workers import make_pool

    seen: list[int] = []
    lock = threading.Lock()

    def query(payload: Any, helpers: Any) -> None:
        with helpers.connection() as conn:
            (value,) = conn.execute("select %s::int", (payload["n"],)).fetchone()
            time.sleep(0.005)
        with lock:
            seen.append(value)

    with db.connect() as conn:
        add_jobs(conn, [JobSpec("query", {"n": n}) for n in range(60)], schema=db.schema)
    pool = make_pool(db, {"query": query}, once=True, concurrency=6, max_pool_size=2)
    assert pool.run() == 0
    # A task waiting on the pool would time out (30 s), fail, and be missing here.
    assert sorted(seen) == list(range(60))
