"""The claim's plan stays an ordered index scan when most jobs wait for a future run_at.

With many scheduled jobs the table's statistics say that no job is due, and a claim
that let the planner read ``run_at <= now()`` against them was planned as a sequential
scan and a sort of every waiting job (hundreds of milliseconds at a million). The claim
compares run_at with ``(select now())``, which the planner cannot estimate from the
statistics, so it keeps the ordered scan of ``jobs_main_index`` that stops at the first
due job. Checked on the plan itself, never on a timing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg import sql

from graphile_py import add_job
from graphile_py.db.claims import ClaimStatements
from tests.support import TestDatabase

WAITING = 60_000


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


@pytest.mark.parametrize("batch", [False, True])
def test_many_future_jobs_keep_the_claim_on_the_index(db: TestDatabase, batch: bool) -> None:
    schema = sql.Identifier(db.schema)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "select {}.add_jobs(array(select ('later', '{{}}', null,"
                " now() + interval '1 day', null, null, null, null)::{}.job_spec"
                " from generate_series(1, %s)))"
            ).format(schema, schema),
            (WAITING,),
        )
        conn.execute(sql.SQL("analyze {}._private_jobs").format(schema))
        due = add_job(conn, "later", {"due": True}, schema=db.schema).id
        identifiers = claims.register_task_identifiers(conn, ["later"])
        statement = claims.claim_statement(batch=batch, flags=False, node_time=False)
        params = {
            "pool": "plan-test",
            "task_ids": "{" + ",".join(map(str, identifiers)) + "}",
            "limit": 10,
        }
        (plan_json,) = conn.execute(b"explain (format json) " + statement, params).fetchone()
        plan = (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]["Plan"]
        scans = [
            (node["Node Type"], node.get("Index Name"))
            for node in _plan_nodes(plan)
            if node.get("Relation Name") == "_private_jobs"
        ]
        assert ("Seq Scan", None) not in scans, scans
        assert ("Index Scan", "jobs_main_index") in scans, scans
        claimed = claims.claim_jobs(
            conn,
            pool_id="plan-test",
            task_ids=list(identifiers),
            batch_size=10 if batch else 1,
            identifiers=identifiers,
        )
        assert [job.id for job in claimed] == [due]
