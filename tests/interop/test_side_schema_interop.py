"""Node graphile-worker 0.18.0 beside our side schema, and without it.

The side schema is ours alone: a Node worker runs Python-added jobs the same whether it
is installed or not, and a database where it was never installed still takes jobs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from graphile_py import add_job
from graphile_py.db.side_schema import side_schema_for, side_schema_ready
from tests.interop.test_jobs_cross_runtime import (
    Node,
    assert_ran_once_each,
    exec_rows,
    jobs_view,
    prepare,
    private_queue,
)
from tests.support import TestDatabase

pytestmark = pytest.mark.node


@pytest.mark.parametrize("installed", [True, False], ids=["with side schema", "without"])
def test_node_runs_python_jobs_with_or_without_the_side_schema(
    node_worker: Path, db: TestDatabase, tmp_path: Path, installed: bool
) -> None:
    side = side_schema_for(db.schema)
    prepare(db)
    with db.connect() as conn:
        assert side_schema_ready(conn, side)  # the template was migrated by us
        if not installed:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(side)))
        ids = [
            add_job(conn, "from_python", {"n": 1}, schema=db.schema).id,
            add_job(conn, "from_python", {"n": 2}, queue_name="q", schema=db.schema).id,
        ]

    Node(node_worker, db, tmp_path / "node").run_once({"from_python": {}})

    rows = exec_rows(db)
    assert_ran_once_each(rows, ids)
    assert all(row["runtime"] == "node" for row in rows), rows
    assert jobs_view(db, db.schema, ids) == []
    assert private_queue(db, "q")["locked_by"] is None
    with db.connect() as conn:
        assert side_schema_ready(conn, side) is installed
        if installed:  # Node left our tables alone
            pools = conn.execute(
                sql.SQL("select count(*) from {}.pools").format(sql.Identifier(side))
            ).fetchone()
            assert pools == (0,)
