"""add_job without a job key runs one statement instead of the add_job function.

These tests hold that statement to the function: the same rows, the same notification,
the same refusals, and a fallback to the function when the statement cannot see a task
or queue name that a concurrent transaction has just registered.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from graphile_py import JobRejected, add_job
from graphile_py.db.enqueue import enqueue_statements_for
from graphile_py.db.migrations import quote_identifier
from tests.support import TestDatabase

# Columns that legitimately differ between two inserts of the same job.
_VOLATILE = {"id", "created_at", "updated_at", "run_at"}

CASES: list[dict[str, Any]] = [
    {},
    {"payload": {"a": [1, "é", None]}},
    {"queue_name": "q-fresh"},
    {"queue_name": "q-fresh", "priority": -7, "max_attempts": 2},
    {"flags": ["b", "a", "b"]},
    {"flags": []},
    {"run_at": datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"payload": [1, 2, 3], "queue_name": "batchy"},
]


def _via_function(conn: psycopg.Connection[Any], schema: str, task: str, **options: Any) -> Any:
    """The add_job SQL function called directly, as Node's addJob does."""
    statements = enqueue_statements_for(schema)
    payload = options.get("payload")
    params = (
        task,
        None if payload is None else json.dumps(payload),
        options.get("queue_name"),
        options.get("run_at"),
        options.get("max_attempts"),
        None,
        options.get("priority"),
        options.get("flags"),
        None,
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statements.add_job_sql, params)
        return cur.fetchone()


def _stable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in _VOLATILE}


@pytest.mark.parametrize("options", CASES)
def test_same_row_as_the_function(db: TestDatabase, options: dict[str, Any]) -> None:
    with db.connect() as conn:
        # The function goes first in one database and second in another, so that both
        # orders of "who registers the task and queue names" are compared.
        reference = _via_function(conn, db.schema, "fresh_task", **options)
        job = add_job(conn, "fresh_task", schema=db.schema, **options)
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"select * from {quote_identifier(db.schema)}._private_jobs where id = %s",
                (job.id,),
            )
            ours = cur.fetchone()
    assert ours is not None and reference is not None
    assert _stable(ours) == _stable(reference)
    if "run_at" in options:
        assert ours["run_at"] == reference["run_at"]


def test_first_use_of_names_matches_the_function(make_db: Any, template_db: str) -> None:
    options = {"queue_name": "new-queue", "flags": ["x"], "payload": {"k": 1}}
    rows = []
    for first_by_function in (True, False):
        db = make_db(template=template_db)
        with db.connect() as conn:
            if first_by_function:
                rows.append(_via_function(conn, db.schema, "t_new", **options))
            else:
                job = add_job(conn, "t_new", schema=db.schema, **options)
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(
                        f"select * from {quote_identifier(db.schema)}._private_jobs where id = %s",
                        (job.id,),
                    )
                    rows.append(cur.fetchone())
            names = conn.execute(
                f"select (select count(*) from {quote_identifier(db.schema)}._private_tasks),"
                f" (select count(*) from {quote_identifier(db.schema)}._private_job_queues)"
            ).fetchone()
            assert names == (1, 1)
    assert _stable(rows[0]) == _stable(rows[1])


def test_one_notification_with_count_one(db: TestDatabase) -> None:
    with db.connect() as listener, db.connect() as conn:
        listener.execute('listen "jobs:insert"')
        add_job(conn, "announced", schema=db.schema)
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert len(payloads) == 1
    message = json.loads(payloads[0])
    assert message["count"] == 1 and isinstance(message["r"], float)


def test_refusals_are_the_functions(db: TestDatabase) -> None:
    statements = enqueue_statements_for(db.schema)
    with db.connect() as conn:
        with pytest.raises(JobRejected, match=r"smallint|out of range"):
            statements.add_job(conn, ("t", "{}", None, None, 40000, None, None, None, None))
        with pytest.raises(JobRejected, match="longer than 128"):
            statements.add_job(conn, ("t", "{}", "q" * 129, None, None, None, None, None, None))
        count = conn.execute(
            f"select count(*) from {quote_identifier(db.schema)}._private_jobs"
        ).fetchone()
    assert count == (0,)


def test_inside_a_rolled_back_transaction_nothing_remains(db: TestDatabase) -> None:
    with db.connect() as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            add_job(conn, "t_rolled", queue_name="q_rolled", schema=db.schema)
            raise RuntimeError("roll back")
        counts = conn.execute(
            f"select (select count(*) from {quote_identifier(db.schema)}._private_jobs),"
            f" (select count(*) from {quote_identifier(db.schema)}._private_tasks"
            "  where identifier = 't_rolled')"
        ).fetchone()
    assert counts == (0, 0)


@pytest.mark.parametrize("contested", ["task", "queue"])
def test_concurrent_first_use_falls_back_to_the_function(db: TestDatabase, contested: str) -> None:
    """Another transaction registers the name while our statement waits on it.

    Our statement's snapshot predates that commit, so it cannot see the new row and
    inserts nothing; add_job must then call the function and still add the job.
    """
    schema = quote_identifier(db.schema)
    with db.connect() as holder, db.connect() as conn:
        if contested == "task":
            holder.execute("begin")
            holder.execute(f"insert into {schema}._private_tasks (identifier) values ('raced')")
        else:
            conn.execute(f"insert into {schema}._private_tasks (identifier) values ('raced')")
            holder.execute("begin")
            holder.execute(f"insert into {schema}._private_job_queues (queue_name) values ('rq')")
        pid = conn.info.backend_pid
        result: list[Any] = []

        def enqueue() -> None:
            result.append(add_job(conn, "raced", queue_name="rq", schema=db.schema))

        thread = threading.Thread(target=enqueue)
        thread.start()
        with db.connect() as watcher:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "select wait_event_type from pg_stat_activity where pid = %s", (pid,)
                ).fetchone()
                if waiting and waiting[0] == "Lock":
                    break
                time.sleep(0.01)
            else:
                pytest.fail("add_job never waited on the uncommitted name")
        holder.execute("commit")
        thread.join(timeout=30)
        assert result, "add_job did not return"
        job = result[0]
        assert (job.task_identifier, job.queue_name) == ("raced", "rq")
        assert job.job_queue_id is not None and job.task_id is not None
        stored = conn.execute(
            f"select j.id from {schema}._private_jobs as j"
            f" join {schema}._private_tasks as t on t.id = j.task_id"
            f" join {schema}._private_job_queues as q on q.id = j.job_queue_id"
            " where t.identifier = 'raced' and q.queue_name = 'rq'"
        ).fetchall()
    assert stored == [(job.id,)]
