"""Node graphile-worker 0.18.0 beside graphile-py's opt-in per-task index.

With graphile_py_jobs_task_index installed and a backlog of Node's jobs, Node still adds
and runs its jobs (its claim does not know the index and need not), and a Python pool
claiming per task runs only its own, each exactly once, while Node drains its backlog.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from psycopg import sql

from graphile_py import JobSpec, add_jobs
from graphile_py.db.task_index import install_task_index
from tests.interop.test_jobs_cross_runtime import (
    Node,
    assert_ran_once_each,
    exec_rows,
    jobs_view,
    prepare,
    python_pool,
    recorder,
    wait_until,
)
from tests.support import TestDatabase

pytestmark = pytest.mark.node

BACKLOG = 3000


@pytest.fixture
def node(node_worker: Path, db: TestDatabase, tmp_path: Path) -> Node:
    prepare(db)
    with db.connect() as conn:
        status, built = install_task_index(conn, db.schema)
    assert built and status.usable
    return Node(node_worker, db, tmp_path / "node")


def test_node_and_a_per_task_python_pool_share_the_table(node: Node, db: TestDatabase) -> None:
    schema = sql.Identifier(db.schema)
    # Node's backlog: its API for some, straight SQL for the bulk (as bench/backlog.py).
    node_ids = node.add(
        [
            {
                "via": "addJobs",
                "jobs": [{"identifier": "node_task", "payload": {"i": i}} for i in range(50)],
            }
        ]
    )
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {s}._private_jobs (task_id, payload, run_at)"
                " select (select id from {s}._private_tasks where identifier = 'node_task'),"
                " json_build_object('i', n), now() from generate_series(50, %s) as n"
            ).format(s=schema),
            (BACKLOG - 1,),
        )
        conn.execute(sql.SQL("analyze {}._private_jobs").format(schema))
        node_ids += [
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "select jobs.id from {s}._private_jobs as jobs join {s}._private_tasks as t"
                    " on t.id = jobs.task_id where t.identifier = 'node_task'"
                    " and jobs.id <> all(%s)"
                ).format(s=schema),
                (node_ids,),
            ).fetchall()
        ]
        specs = [
            JobSpec("py_task", {"i": i}, queue_name="shared" if i % 5 == 0 else None)
            for i in range(200)
        ]
        py_ids = [job.id for job in add_jobs(conn, specs, schema=db.schema)]
    assert len(node_ids) == BACKLOG

    with (
        node.running({"node_task": {}}, concurrency=4, poll_interval_ms=200),
        python_pool(db, {"py_task": recorder("py_task")}, concurrency=4, poll_interval=0.2) as pool,
    ):
        # python_pool may yield before the pool has started (wait_listening is True
        # until the listener exists): wait for the start-up check itself.
        wait_until(lambda: pool._claims.per_task, 30, "the pool to find the task index")

        def drained() -> bool:
            return not jobs_view(db, db.schema) and len(exec_rows(db)) >= BACKLOG + 200

        wait_until(drained, 120, "both backlogs to drain", interval=0.2)

    rows = exec_rows(db)
    assert_ran_once_each(rows, node_ids + py_ids)
    assert Counter((row["runtime"], row["task"]) for row in rows) == {
        ("node", "node_task"): BACKLOG,
        ("python", "py_task"): 200,
    }
