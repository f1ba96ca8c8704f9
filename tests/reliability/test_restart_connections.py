"""After a PostgreSQL restart no task is lent a connection the pool could know was dead.

A private server (never the shared one) is restarted while a pool drains jobs whose
tasks each borrow ``helpers.connection()``: directly, and through a real PgBouncer in
transaction mode (with a direct listen URL, as deployed). Every job must succeed on its
first attempt, except one whose task was inside its ``with helpers.connection()`` block
at the moment the server went away: that task's statement legitimately fails, and the
job runs again. A task that asks for a connection while the server is down waits for
it to come back (within the pool's 30 s timeout) rather than fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from graphile_py import JobSpec, add_jobs, migrate
from graphile_py.extras.embedded.server import EmbeddedPostgres
from tests.pgbouncer.server import PgBouncer
from tests.reliability.test_crash_recovery import embedded  # noqa: F401 - a fixture
from tests.support import TestDatabase
from tests.support.workers import running_pool, wait_for

JOBS = 240


@dataclass
class _Use:
    job_id: int
    attempt: int
    entered: float
    left: float | None = None
    error: str | None = None


class _Uses:
    """When each task was inside its ``with helpers.connection()`` block, and how it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[_Use] = []

    def task(self, payload: object, helpers: Any) -> None:
        time.sleep(0.02)  # no connection held: the restart mostly lands here
        with helpers.connection() as conn:
            use = _Use(helpers.job.id, helpers.job.attempts, time.monotonic())
            with self._lock:
                self.items.append(use)
            try:
                conn.execute("select pg_sleep(0.005)")
            except BaseException as exc:
                use.error = repr(exc)
                raise
            finally:
                use.left = time.monotonic()

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


def _remaining(dsn: str, schema: str) -> int | None:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(schema))
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return int(row[0]) if row else None


@pytest.fixture(params=["direct", "pgbouncer"])
def route(request: pytest.FixtureRequest, embedded: EmbeddedPostgres) -> Iterator[str]:  # noqa: F811
    """How the pool reaches the private server: its own DSN, or one through PgBouncer."""
    if request.param == "direct":
        yield embedded.dsn
        return
    parts = conninfo_to_dict(embedded.dsn)
    bouncer = PgBouncer(
        server_port=int(str(parts["port"])), server_password=str(parts.get("password") or "")
    ).start()
    try:
        yield bouncer.dsn(str(parts["dbname"]))
    finally:
        bouncer.stop()


def test_no_job_fails_because_the_server_restarted(
    embedded: EmbeddedPostgres,  # noqa: F811
    route: str,
    worker_schema: str,
) -> None:
    direct = embedded.dsn
    with psycopg.connect(direct, autocommit=True) as conn:
        migrate(conn, schema=worker_schema)
        add_jobs(conn, [JobSpec("use_db", {"n": n}) for n in range(JOBS)], schema=worker_schema)
    uses = _Uses()
    db = TestDatabase(name=embedded.database, dsn=route, schema=worker_schema)
    options: dict[str, Any] = {"concurrency": 6, "max_pool_size": 10, "poll_interval": 0.2}
    if route != direct:
        options.update(listen_conninfo=direct, prepared_statements=False)
    with running_pool(db, {"use_db": uses.task}, **options) as pool:
        wait_for(lambda: len(uses) >= JOBS // 4, timeout=60, interval=0.01)
        down = time.monotonic()
        embedded.stop()  # pg_ctl stop -m fast: every session is terminated
        stopped = time.monotonic()
        time.sleep(1.0)
        assert embedded.start() == direct
        up = time.monotonic()
        wait_for(lambda: _remaining(direct, worker_schema) == 0, timeout=180, interval=0.2)
        assert not pool.stopping, "the pool gave up"

    with uses._lock:
        items = list(uses.items)
    failed = [use for use in items if use.error is not None]
    # Legitimate: inside the block when the server went away (entered before it was
    # down, not out before the stop began). A task entering later must wait, not fail.
    legitimate = [use for use in failed if use.entered <= stopped and (use.left or up) >= down]
    assert failed == legitimate, [(u.job_id, u.error, u.entered - down) for u in failed]
    retried = {use.job_id for use in items if use.attempt > 1}
    assert retried == {use.job_id for use in failed}, (retried, failed)
    assert len({use.job_id for use in items if use.error is None}) == JOBS
    assert len(failed) <= 6, f"{len(failed)} jobs failed, more than the 6 that can be running"
    assert len(items) >= JOBS // 2 + 1, "the restart came after the drain"
    resumed = min(use.entered for use in items if use.entered > up) - up
    assert resumed < 30, f"no task reached the database until {resumed:.1f}s after the restart"
    # For docs/pgbouncer.md (pytest -s shows it).
    label = "direct" if route == direct else "through PgBouncer"
    print(f"\n{label}: {len(failed)} legitimate failure(s); tasks resumed {resumed:.2f}s after")
