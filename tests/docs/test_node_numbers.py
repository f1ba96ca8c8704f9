"""docs/node-interop.md: what JavaScript numbers do to payloads that cross to Node.

A Node task gets its payload as JavaScript values: every number is a double, so an
integer above 2**53 loses precision and -0.0 becomes 0 when Node writes it back out.
Strings cross unchanged, which is why the docs advise strings for big ids.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from graphile_py import add_job
from tests.interop.test_jobs_cross_runtime import Node, exec_rows, prepare
from tests.support import TestDatabase

pytestmark = pytest.mark.node


def test_big_integers_and_negative_zero_do_not_survive_javascript_numbers(
    node_worker: Path, db: TestDatabase, tmp_path: Path
) -> None:
    prepare(db)
    payload = {
        "safe": 2**53 - 1,
        "big": 2**53 + 1,
        "big_as_string": str(2**53 + 1),
        "negative_zero": -0.0,
    }
    with db.connect() as conn:
        job = add_job(conn, "from_python", payload, schema=db.schema)

    Node(node_worker, db, tmp_path / "node").run_once({"from_python": {}})

    (row,) = exec_rows(db)
    assert row["job_id"] == job.id and row["runtime"] == "node"
    seen = json.loads(row["payload"])  # what the Node task had, as JSON.stringify wrote it
    assert seen["safe"] == 2**53 - 1
    assert seen["big"] == 2**53  # not 2**53 + 1: the nearest double
    assert seen["big_as_string"] == "9007199254740993"  # the advice: strings survive
    assert seen["negative_zero"] == 0
    assert math.copysign(1.0, seen["negative_zero"]) == 1.0  # the sign is gone
