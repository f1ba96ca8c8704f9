"""A Node pool's jobs are never rescued by a Python pool's heartbeats.

Node graphile-worker 0.18.0 does not register in graphile-py's pool registry, so however
long its jobs run, a live Python pool with short heartbeats leaves them alone: they stay
under graphile-worker's four-hour rule.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py import WorkerOptions, WorkerPool
from graphile_py.db.side_schema import side_schema_for
from tests.interop.test_jobs_cross_runtime import Node, prepare, recorder, wait_until
from tests.support import TestDatabase
from tests.support.workers import jobs_rows

pytestmark = pytest.mark.node


@pytest.fixture
def node(node_worker: Path, db: TestDatabase, tmp_path: Path) -> Node:
    prepare(db)
    return Node(node_worker, db, tmp_path / "node")


def _exec_log(db: TestDatabase) -> list[dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from public.exec_log order by id")
        return cur.fetchall()


def test_a_node_pools_jobs_are_never_rescued(node: Node, db: TestDatabase) -> None:
    [job_id] = node.add([{"via": "addJob", "jobs": [{"identifier": "slow", "payload": {}}]}])
    with node.running({"slow": {"sleepMs": 9000}}):
        wait_until(lambda: len(_exec_log(db)) == 1, 30, "Node to start the job")
        [held] = jobs_rows(db)
        node_pool = held["locked_by"]
        # A Python pool that knows the task, with heartbeats far shorter than the job.
        pool = WorkerPool(
            {"slow": recorder("slow")},
            conninfo=db.dsn,
            options=WorkerOptions(
                schema=db.schema,
                heartbeat_interval=0.2,
                heartbeat_timeout=1.0,
                poll_interval=0.2,
            ),
        )
        thread = threading.Thread(target=pool.run, daemon=True)
        thread.start()
        try:
            time.sleep(5)  # five timeouts
            with db.connect() as conn:
                registered = conn.execute(
                    sql.SQL("select id from {}.pools").format(
                        sql.Identifier(side_schema_for(db.schema))
                    )
                ).fetchall()
            assert registered == [(pool.id,)]  # the Python pool beats; Node is not there
            [row] = jobs_rows(db)
            assert (row["id"], row["locked_by"]) == (job_id, node_pool)
        finally:
            pool.request_stop("test finished")
            thread.join(30)
        assert pool.fenced is None
        wait_until(lambda: jobs_rows(db) == [], 30, "Node to finish the job")
    assert [(row["runtime"], row["attempts"]) for row in _exec_log(db)] == [("node", 1)]
