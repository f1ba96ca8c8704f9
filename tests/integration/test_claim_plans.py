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

from graphile_py import JobSpec, add_job, add_jobs
from graphile_py.db.claims import ClaimStatements
from graphile_py.db.side_schema import side_schema_for
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, make_pool

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


def test_a_claim_that_finds_nothing_due_reads_few_pages(db: TestDatabase) -> None:
    """With many jobs due later in several priorities and none due, a claim is a few index
    probes: each scan is bounded by ``priority = ?`` and ``run_at <= now``. A single scan
    ordered by (priority, run_at) read every scheduled job (graphile-worker 0.18's does),
    on every idle worker's look. Both claim shapes, and the side schema's claim_next."""
    schema = sql.Identifier(db.schema)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        ids = claims.register_task_identifiers(conn, ["later"])
        conn.execute(
            sql.SQL(
                "insert into {s}._private_jobs (task_id, payload, run_at, priority)"
                " select %s, '{{}}', now() + interval '1 day', n %% 3"
                " from generate_series(1, %s) as n"
            ).format(s=schema),
            (next(iter(ids)), WAITING),
        )
        conn.execute(sql.SQL("vacuum analyze {}._private_jobs").format(schema))
        (pages,) = conn.execute(  # type: ignore[misc]
            "select pg_relation_size(%s::regclass) / current_setting('block_size')::int",
            (f"{db.schema}.jobs_main_index",),
        ).fetchone()
        params = {"pool": "plan-test", "task_ids": "{" + ",".join(map(str, ids)) + "}"}
        for batch in (False, True):
            statement = claims.claim_statement(batch=batch, flags=False, node_time=False)
            (plan_json,) = conn.execute(  # type: ignore[misc]
                b"explain (analyze, buffers, format json) " + statement, {**params, "limit": 10}
            ).fetchone()
            plan = (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]
            read = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
            assert pages > 100 and read < 40, (batch, read, pages)
        side = sql.Identifier(side_schema_for(db.schema))
        (plan_text,) = conn.execute(  # type: ignore[misc]
            sql.SQL(
                "explain (analyze, buffers, format json)"
                " select * from {}.claim_next(null, 'plan-test', %s::int[])"
            ).format(side),
            (list(ids),),
        ).fetchone()
        function_plan = (plan_text if isinstance(plan_text, list) else json.loads(plan_text))[0]
        read = (
            function_plan["Plan"]["Shared Hit Blocks"] + function_plan["Plan"]["Shared Read Blocks"]
        )
        assert read < 40, read
        assert claims.claim_jobs(conn, pool_id="p", task_ids=list(ids)) == []


def _claim_calls(db: TestDatabase) -> int:
    """How many times the side schema's claim_next ran (track_functions is on for the test)."""
    with db.connect() as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute(
            "select coalesce(sum(calls), 0) from pg_stat_user_functions"
            " where funcname = 'claim_next' and schemaname = %s",
            (side_schema_for(db.schema),),
        ).fetchone()
    return int(row[0]) if row else 0


def test_without_prepared_statements_single_claims_go_through_claim_next(
    db: TestDatabase,
) -> None:
    """Through a transaction-mode pooler a client statement is planned on every claim;
    the side schema's function keeps its plan. Same jobs, same order, each once."""
    with db.connect() as conn:
        conn.execute(
            sql.SQL("alter database {} set track_functions = 'pl'").format(sql.Identifier(db.name))
        )
        specs = [JobSpec("t", {"n": n}, priority=-(n % 3)) for n in range(12)]
        specs += [JobSpec("t", {"n": 100 + n}, queue_name="serial") for n in range(4)]
        add_jobs(conn, specs, schema=db.schema)
    ran: list[int] = []
    pool = make_pool(
        db, {"t": lambda p, h: ran.append(p["n"])}, once=True, prepared_statements=False
    )
    assert pool.run() == 0
    assert pool._claims.claim_function_schema == side_schema_for(db.schema)
    assert sorted(ran) == sorted([*range(12), *range(100, 104)])
    assert ran.index(100) < ran.index(101) < ran.index(102) < ran.index(103)
    assert jobs_rows(db) == []
    # Every claim but those after a named queue's job (which release the queue first).
    assert _claim_calls(db) >= 12


def test_without_the_side_schema_claims_fall_back_to_the_client_statement(
    db: TestDatabase,
) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL("drop schema {} cascade").format(sql.Identifier(side_schema_for(db.schema)))
        )
        add_jobs(conn, [JobSpec("t", {"n": n}) for n in range(5)], schema=db.schema)
    ran: list[int] = []
    pool = make_pool(
        db, {"t": lambda p, h: ran.append(p["n"])}, once=True, prepared_statements=False
    )
    assert pool.run() == 0
    assert pool._claims.claim_function_schema is None
    assert sorted(ran) == list(range(5))
