"""The claim's plan with a million-job backlog: before, today, and with the per-task index.

Usage: .venv/bin/python bench/backlog_plans.py [N] > bench/results/claim-plans-backlog.md

For docs/performance.md. Three scenarios, each in a fresh database (dropped afterwards):
A, N jobs of our task due in a year and none due (an idle worker's claim); B, N due jobs
of another task and one of ours; A again with graphile_py_jobs_task_index installed.
Three claims: *before*, graphile-py's one-job claim with ``run_at <= now()`` (the shape of
Node 0.18's getJob, and of graphile-py's claim before issue 11); *ordered*, today's default
claim (``run_at <= (select now())``); *per task*, the claim through the index (installed
just before it is explained, so the other two never see it). Each statement is explained
with EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg

from graphile_py.db.claims import ClaimStatements
from graphile_py.db.task_index import install_task_index

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "gpy_backlog_plans"
SCHEMA = "graphile_worker"


def _fresh() -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE} with (force)")
        conn.execute(f"create database {DATABASE}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
    subprocess.run(
        [sys.executable, "-m", "graphile_py", "migrate", "-c", dsn], check=True, capture_output=True
    )
    return dsn


def _explain(conn: psycopg.Connection[Any], statement: bytes, params: dict[str, Any]) -> str:
    with conn.transaction(force_rollback=True):
        rows = conn.execute(
            b"explain (analyze, buffers, costs off, timing off, summary on) " + statement, params
        ).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def _scenario(title: str, backlog_task: str, due: bool, ours_due: bool, index: bool) -> None:
    dsn = _fresh()
    with psycopg.connect(dsn, autocommit=True) as conn:
        claims = ClaimStatements(SCHEMA)
        ids = {
            name: task
            for task, name in claims.register_task_identifiers(conn, ["ours", "theirs"]).items()
        }
        conn.execute(
            "insert into graphile_worker._private_jobs (task_id, payload, run_at)"
            " select %s, '{}', now() + "
            + ("interval '-1 hour'" if due else "interval '365 days'")
            + " from generate_series(1, %s)",
            (ids[backlog_task], N),
        )
        if ours_due:
            conn.execute(
                "insert into graphile_worker._private_jobs (task_id, payload) values (%s, '{}')",
                (ids["ours"],),
            )
        conn.execute("vacuum analyze graphile_worker._private_jobs")
        ordered = claims.claim_statement(batch=False, flags=False, node_time=False)
        variants = [
            ("before: run_at <= now()", ordered.replace(b"(select now())", b"now()")),
            ("ordered: today's default claim, run_at <= (select now())", ordered),
        ]
        if index:
            per_task = claims.claim_statement(
                batch=False, flags=False, node_time=False, per_task=True
            )
            variants.append(("per task: with graphile_py_jobs_task_index installed", per_task))
        params = {"pool": "plans", "task_ids": f"{{{ids['ours']}}}", "limit": 1}
        print(f"## {title}\n")
        for name, statement in variants:
            if name.startswith("per task"):
                install_task_index(conn, SCHEMA, concurrently=True)
            print(f"### {name}\n\n```\n{_explain(conn, statement, params)}\n```\n", flush=True)


N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000

if __name__ == "__main__":
    print("# Claim plans with a million-job backlog (bench/backlog_plans.py)\n")
    try:
        _scenario(f"A: {N:,} jobs of our task due in a year, none due", "ours", False, False, False)
        _scenario(
            f"B: {N:,} due jobs of a task this pool does not serve, one due job of ours",
            "theirs",
            True,
            True,
            True,
        )
        _scenario(
            f"A with the index: {N:,} jobs due in a year, none due", "ours", False, False, True
        )
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"drop database if exists {DATABASE} with (force)")
