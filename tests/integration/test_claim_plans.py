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
import time
from typing import Any

import pytest
from psycopg import sql

from graphile_py import JobSpec, add_job, add_jobs
from graphile_py.db.claims import ClaimStatements
from graphile_py.db.side_schema import side_schema_for
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, make_pool, running_pool, wait_for

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


@pytest.mark.parametrize(
    ("prepared", "task_index"),
    [(True, False), (False, False), (True, True)],
    ids=["client", "claim_next", "per_task"],
)
def test_a_burst_into_an_idle_pool_is_drained_without_rereading_the_queue(
    db: TestDatabase, prepared: bool, task_index: bool
) -> None:
    """The pool plans its claim while the table is empty (and never analysed); then a
    burst arrives, which no ANALYZE has seen. Each claim must still stop at the first due
    job: a plan that reads every due job (a per-priority claim tried here got a bitmap
    scan and a sort) makes each claim O(queue) and the drain quadratic. Counted in the
    table's own statistics: tuples read during the whole drain, against the jobs drained."""
    count = 10_000
    schema = sql.Identifier(db.schema)
    if task_index:
        from graphile_py.db.task_index import install_task_index

        with db.connect() as conn:
            install_task_index(conn, db.schema, concurrently=True)
    ran: list[int] = []
    with running_pool(
        db,
        {"burst": lambda p, h: ran.append(p)},
        concurrency=24,
        max_pool_size=10,
        prepared_statements=prepared,
    ):
        time.sleep(0.5)  # idle claims: plans made on the empty table
        with db.connect() as conn:
            jobs_table = sql.Identifier(db.schema, "_private_jobs").as_string(conn)
            conn.execute("select pg_stat_reset_single_table_counters(%s::regclass)", (jobs_table,))
            conn.execute(
                sql.SQL(
                    "select {s}.add_jobs(array(select ('burst', '1', null, null, null, null,"
                    " null, null)::{s}.job_spec from generate_series(1, %s)))"
                ).format(s=schema),
                (count,),
            )
        wait_for(lambda: len(ran) == count, timeout=120)
    # The pool's backends have exited, so their counters are flushed.
    with db.connect() as conn:
        wait_for(
            lambda: (
                conn.execute(
                    "select n_tup_del from pg_stat_user_tables where relid = %s::regclass",
                    (jobs_table,),
                ).fetchone()[0]  # type: ignore[index]
                >= count
            ),
            timeout=10,
        )
        seq_read, idx_read = conn.execute(  # type: ignore[misc]
            "select coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0)"
            " from pg_stat_user_tables where relid = %s::regclass",
            (jobs_table,),
        ).fetchone()
    # Every claim steps over the index entries of the jobs claimed before it that no
    # vacuum has removed yet, so even a good plan reads more as the drain goes on (about
    # 7 million tuples here, some 700 per job); a plan that reads every due job per
    # claim reads about 50 million (count**2 / 2).
    assert seq_read + idx_read < count * count / 4, (seq_read, idx_read)


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
