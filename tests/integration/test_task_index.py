"""The opt-in per-task index and the claim that uses it (graphile-py task-index).

With many due jobs of a task no Python pool serves (a Node backlog), the plain claim
steps over all of them in Node's ``jobs_main_index``. With graphile_py_jobs_task_index
installed, a pool that finds it at start claims per task and never reads the others.
The plans are checked on their structure, never on a timing; the claim's behaviour
(order, named queues, batches, flags, exactly once) through real pools.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import JobSpec, WorkerUtils, add_jobs
from graphile_py.cli import main
from graphile_py.db.claims import ClaimStatements
from graphile_py.db.history import History
from graphile_py.db.side_schema import side_schema_for
from graphile_py.db.task_index import (
    TASK_INDEX_NAME,
    install_task_index,
    task_index_status,
    task_index_usable,
)
from graphile_py.errors import ConfigurationError
from tests.support import TestDatabase
from tests.support.workers import make_pool

BACKLOG = 120_000


def _cli(db: TestDatabase, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["task-index", *args, "-c", db.dsn, "--schema", db.schema], catch_exceptions=False
    )
    return result.exit_code, result.output


def _install(db: TestDatabase) -> None:
    with db.connect() as conn:
        status, built = install_task_index(conn, db.schema)
    assert built and status.usable


def _fill_backlog(db: TestDatabase, count: int = BACKLOG, task: str = "node_backlog") -> None:
    """``count`` due jobs of ``task``, written straight into the table (fast), analysed."""
    schema = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_tasks (identifier) values (%s) on conflict do nothing"
            ).format(schema),
            (task,),
        )
        conn.execute(
            sql.SQL(
                "insert into {s}._private_jobs (task_id, payload, run_at)"
                " select (select id from {s}._private_tasks where identifier = %s), '{{}}',"
                " now() - interval '1 hour' from generate_series(1, %s)"
            ).format(s=schema),
            (task, count),
        )
        conn.execute(sql.SQL("analyze {}._private_jobs").format(schema))


def _remaining(db: TestDatabase) -> list[tuple[str, Any]]:
    """(task identifier, payload) of every job left, in id order."""
    with db.connect() as conn:
        return conn.execute(
            sql.SQL(
                "select tasks.identifier, jobs.payload from {s}._private_jobs as jobs"
                " join {s}._private_tasks as tasks on tasks.id = jobs.task_id order by jobs.id"
            ).format(s=sql.Identifier(db.schema))
        ).fetchall()


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _job_scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (node["Node Type"], node.get("Index Name"))
        for node in _nodes(plan)
        if node.get("Relation Name") == "_private_jobs"
    ]


def _assert_per_task_plan(plan: dict[str, Any]) -> None:
    """Our tasks' jobs through the task index only, locked below each task's limit."""
    scans = _job_scans(plan)
    assert ("Index Scan", TASK_INDEX_NAME) in scans, scans
    # Besides the task index: the row updated (or deleted) by its primary key, nothing else.
    others = {scan for scan in scans if scan[1] != TASK_INDEX_NAME and scan[0] != "ModifyTable"}
    assert all(
        kind == "Index Scan" and (name or "").startswith("jobs_pkey") for kind, name in others
    ), scans
    # Limit -> LockRows -> ... -> the task index scan, inside the per-task loop: a job that
    # another pool holds is skipped within its task, and the next of that task is taken.
    limits = [node for node in _nodes(plan) if node["Node Type"] == "Limit"]
    assert any(
        child["Node Type"] == "LockRows"
        and any(n.get("Index Name") == TASK_INDEX_NAME for n in _nodes(child))
        for limit in limits
        for child in limit.get("Plans", [])
    ), json.dumps(plan)[:3000]
    # Every use of the index is bounded by one of our tasks (the priority probes too).
    for node in _nodes(plan):
        if node.get("Index Name") == TASK_INDEX_NAME:
            cond = node["Index Cond"]
            assert "task_id = wanted" in cond or "task_id = known" in cond, node


def _explain(conn: psycopg.Connection[Any], statement: bytes, params: dict[str, Any]) -> Any:
    """EXPLAIN ANALYZE of a claim, rolled back."""
    conn.execute("begin")
    try:
        (plan_json,) = conn.execute(
            b"explain (analyze, buffers, format json) " + statement, params
        ).fetchone()  # type: ignore[misc]
    finally:
        conn.execute("rollback")
    return (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]["Plan"]


def _as_prepared(statement: bytes) -> tuple[bytes, list[str]]:
    """The statement with $n for psycopg's named placeholders, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode()
        if name not in names:
            names.append(name)
        return b"$%d" % (names.index(name) + 1)

    text = re.sub(rb"%\((\w+)\)s", number, statement).replace(b"%%", b"%")
    return text, names


# -- the command ---------------------------------------------------------------------------


def test_command_installs_reports_and_drops(db: TestDatabase) -> None:
    code, out = _cli(db, "status")
    assert code == 0 and "not installed" in out
    code, out = _cli(db, "install")
    assert code == 0 and "Built in" in out and "installed and valid" in out, out
    code, out = _cli(db, "install")
    assert code == 0 and out.startswith("Nothing to do"), out
    code, out = _cli(db, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["usable"] and status["valid"] and status["matches"]
    assert status["definition"].endswith(
        "USING btree (task_id, priority, run_at) INCLUDE (id, job_queue_id)"
        " WHERE (is_available = true)"
    )
    code, out = _cli(db, "drop")
    assert code == 0 and out.startswith("Dropped"), out
    code, out = _cli(db, "drop", "--no-concurrently")
    assert code == 0 and out.startswith("Nothing to do"), out
    code, out = _cli(db, "install", "--no-concurrently")
    assert code == 0 and "Built in" in out
    with db.connect() as conn:
        assert task_index_usable(conn, db.schema)


def test_command_refuses_a_missing_schema(db: TestDatabase) -> None:
    for action in ("status", "install", "drop"):
        result = CliRunner().invoke(
            main, ["task-index", action, "-c", db.dsn, "--schema", "not_installed_here"]
        )
        assert result.exit_code == 1, result.output
        assert "worker schema 'not_installed_here' is not installed" in result.output
        assert "Traceback" not in result.output
    with db.connect() as conn:
        assert not task_index_usable(conn, "not_installed_here")


def test_concurrent_build_needs_autocommit(db: TestDatabase) -> None:
    with (
        psycopg.connect(db.dsn) as conn,
        pytest.raises(ConfigurationError, match="autocommit"),
    ):
        install_task_index(conn, db.schema)


def test_an_invalid_leftover_is_reported_and_rebuilt(db: TestDatabase) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index of that name behind."""
    _fill_backlog(db, 10)
    with db.connect() as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                sql.SQL("create unique index concurrently {} on {}._private_jobs (task_id)").format(
                    sql.Identifier(TASK_INDEX_NAME), sql.Identifier(db.schema)
                )
            )
        status = task_index_status(conn, db.schema)
        assert status.exists and not status.valid and not status.usable
    code, out = _cli(db, "status")
    assert "INVALID" in out
    code, out = _cli(db, "install")
    assert code == 0 and "installed and valid" in out, out
    with db.connect() as conn:
        assert task_index_usable(conn, db.schema)


# -- plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant", ["single", "batch", "single_flags", "batch_flags", "complete_first", "history"]
)
def test_claims_read_only_their_tasks_through_the_index(db: TestDatabase, variant: str) -> None:
    _fill_backlog(db)
    _install(db)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        ours = add_jobs(conn, [JobSpec("ours", {"n": n}) for n in range(3)], schema=db.schema)
        conn.execute(sql.SQL("analyze {}._private_jobs").format(sql.Identifier(db.schema)))
        ids = claims.register_task_identifiers(conn, ["ours", "also_ours"])
        params: dict[str, Any] = {
            "pool": "plan-test",
            "task_ids": "{" + ",".join(map(str, ids)) + "}",
            "limit": 10,
            "done": ours[0].id,
        }
        batch = variant.startswith("batch")
        flags = variant.endswith("flags")
        if flags:
            params["flags"] = ["f"]
        if variant == "history":
            history = History.for_schemas(db.schema, side_schema_for(db.schema), payload_limit=1000)
            params |= {"started": time.time(), "task": "ours", "payload_limit": 1000}
            statement = claims.complete_recording_and_claim_statement(
                history, flags=False, node_time=False, per_task=True
            )
        else:
            statement = claims.claim_statement(
                batch=batch,
                flags=flags,
                node_time=False,
                complete_first=variant == "complete_first",
                per_task=True,
            )
        plan = _explain(conn, statement, params)
        _assert_per_task_plan(plan)
        # Executed: no task's scan returned more than our 3 jobs, nor filtered any out:
        # the backlog's entries are never read.
        for node in _nodes(plan):
            if node.get("Index Name") == TASK_INDEX_NAME:
                assert node["Actual Rows"] <= 3 and node.get("Rows Removed by Filter", 0) == 0


def test_a_claim_reads_none_of_our_own_jobs_scheduled_for_later(db: TestDatabase) -> None:
    """With many of our own jobs due later (and none due), the per-task claim is a few
    index probes: each scan is bounded by (task, priority) and run_at <= now, where
    ``task_id = ?`` alone made a claim that found nothing read every scheduled job."""
    _install(db)
    schema = sql.Identifier(db.schema)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        ids = claims.register_task_identifiers(conn, ["ours"])
        conn.execute(
            sql.SQL(
                "insert into {s}._private_jobs (task_id, payload, run_at, priority)"
                " select %s, '{{}}', now() + interval '1 day', n %% 3"
                " from generate_series(1, 60000) as n"
            ).format(s=schema),
            (next(iter(ids)),),
        )
        conn.execute(sql.SQL("vacuum analyze {}._private_jobs").format(schema))
        (size,) = conn.execute(  # type: ignore[misc]
            "select pg_relation_size(%s::regclass) / current_setting('block_size')::int",
            (sql.Identifier(db.schema, TASK_INDEX_NAME).as_string(conn),),
        ).fetchone()
        params = {"pool": "plan-test", "task_ids": "{" + ",".join(map(str, ids)) + "}"}
        for batch in (False, True):
            statement = claims.claim_statement(
                batch=batch, flags=False, node_time=False, per_task=True
            )
            plan = _explain(conn, statement, {**params, "limit": 10})
            _assert_per_task_plan(plan)
            for node in _nodes(plan):
                if node.get("Index Name") == TASK_INDEX_NAME and node["Node Type"] == "Index Scan":
                    assert re.search(r"priority = wanted\w*\.priority", node["Index Cond"]), node
                    assert "run_at <=" in node["Index Cond"], node
            read = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
            assert size > 100 and read < 40, (read, size)
        assert claims.claim_jobs(conn, pool_id="p", task_ids=list(ids), per_task=True) == []


def test_the_generic_plan_uses_the_index(db: TestDatabase) -> None:
    """Pools run the claim as a prepared statement: its generic plan must be the good one."""
    _fill_backlog(db)
    _install(db)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        ids = claims.register_task_identifiers(conn, ["ours"])
        task_ids = "{" + ",".join(map(str, ids)) + "}"
        for batch in (False, True):
            text, names = _as_prepared(
                claims.claim_statement(batch=batch, flags=False, node_time=False, per_task=True)
            )
            name = f"claim_{int(batch)}"
            conn.execute(b"prepare " + name.encode() + b" as " + text)
            values = {"pool": "generic", "task_ids": task_ids, "limit": 10}
            args = ", ".join(
                f"{conn.execute('select quote_literal(%s::text)', (values[n],)).fetchone()[0]}"  # type: ignore[index]
                for n in names
            )
            conn.execute("set plan_cache_mode = force_generic_plan")
            (plan_json,) = conn.execute(
                f"explain (format json) execute {name}({args})".encode()
            ).fetchone()  # type: ignore[misc]
            _assert_per_task_plan(plan_json[0]["Plan"])
            # Left to choose, the server keeps the generic plan of the one-job claim after
            # its five custom ones. A batch (a LIMIT parameter) is planned for its values,
            # and stays cheap: under jit_above_cost, or JIT would take milliseconds.
            conn.execute("set plan_cache_mode = auto")
            for _ in range(8):
                conn.execute(f"execute {name}({args})".encode())
            row = conn.execute(
                "select generic_plans, custom_plans from pg_prepared_statements where name = %s",
                (name,),
            ).fetchone()
            assert row is not None
            if batch:
                (plan_json,) = conn.execute(
                    f"explain (format json) execute {name}({args})".encode()
                ).fetchone()  # type: ignore[misc]
                (jit_above,) = conn.execute(  # type: ignore[misc]
                    "select current_setting('jit_above_cost')::float8"
                ).fetchone()
                assert plan_json[0]["Plan"]["Total Cost"] < jit_above
            else:
                assert row[0] >= 1, row


# -- pools ---------------------------------------------------------------------------------


def test_a_pool_claims_per_task_in_priority_and_run_at_order(db: TestDatabase) -> None:
    _fill_backlog(db, 2000)
    _install(db)
    now = datetime.now(UTC)
    specs = [
        JobSpec("a", {"n": 1}, priority=5, run_at=now - timedelta(minutes=1)),
        JobSpec("b", {"n": 2}, priority=5, run_at=now - timedelta(minutes=2)),
        JobSpec("a", {"n": 3}, priority=-1, run_at=now - timedelta(seconds=1)),
        JobSpec("b", {"n": 4}, priority=0, run_at=now - timedelta(minutes=9)),
        JobSpec("a", {"n": 5}, priority=0, run_at=now - timedelta(minutes=3)),
        JobSpec("b", {"n": 6}, priority=-1, run_at=now - timedelta(seconds=30)),
        JobSpec("a", {"n": 7}, priority=0, run_at=now + timedelta(hours=1)),  # not due
    ]
    with db.connect() as conn:
        add_jobs(conn, specs, schema=db.schema)
    ran: list[int] = []
    tasks = {"a": lambda p, h: ran.append(p["n"]), "b": lambda p, h: ran.append(p["n"])}
    pool = make_pool(db, tasks, once=True, concurrency=1)
    assert pool.run() == 0
    assert pool._claims.per_task
    assert ran == [6, 3, 4, 5, 2, 1]
    assert Counter(task for task, _ in _remaining(db)) == {"node_backlog": 2000, "a": 1}


def test_without_the_index_the_pool_claims_as_before(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_jobs(conn, [JobSpec("a", {"n": n}) for n in range(3)], schema=db.schema)
    pool = make_pool(db, {"a": lambda p, h: None}, once=True)
    assert pool.run() == 0
    assert not pool._claims.per_task


def test_batches_never_hold_two_jobs_of_one_queue(db: TestDatabase) -> None:
    _install(db)
    claims = ClaimStatements(db.schema)
    with db.connect() as conn:
        specs = [JobSpec("a", {"q": n}, queue_name="serial") for n in range(4)]
        specs += [JobSpec("b", {"q": n}, queue_name="serial") for n in range(4)]
        specs += [JobSpec("a", {"free": n}) for n in range(3)]
        added = add_jobs(conn, specs, schema=db.schema)
        ids = claims.register_task_identifiers(conn, ["a", "b"])
        first = claims.claim_jobs(
            conn, pool_id="one", task_ids=list(ids), batch_size=20, per_task=True
        )
        queued = [job for job in first if job.job_queue_id is not None]
        assert len(queued) == 1 and queued[0].id == added[0].id
        assert len(first) == 4
        # The queue is now held by "one": another pool gets nothing of it, nor the rest.
        second = claims.claim_jobs(
            conn, pool_id="two", task_ids=list(ids), batch_size=20, per_task=True
        )
        assert second == []


def test_named_queues_stay_serial_and_flags_are_respected(db: TestDatabase) -> None:
    _fill_backlog(db, 1000)
    _install(db)
    with db.connect() as conn:
        # Distinct run_at: the queue's order across both tasks is then defined.
        start = datetime.now(UTC) - timedelta(minutes=1)
        specs = [
            JobSpec(
                "a" if n % 2 else "b",
                {"n": n},
                queue_name="serial",
                run_at=start + timedelta(seconds=n),
            )
            for n in range(12)
        ]
        specs += [JobSpec("a", {"n": 100 + n}, flags=["blocked"]) for n in range(3)]
        specs += [JobSpec("b", {"n": 200 + n}, flags=["fine"]) for n in range(3)]
        add_jobs(conn, specs, schema=db.schema)
    lock = threading.Lock()
    running: set[str] = set()
    overlaps: list[int] = []
    ran: list[int] = []

    def task(payload: dict[str, int], helpers: Any) -> None:
        with lock:
            if helpers.job.job_queue_id is not None and "serial" in running:
                overlaps.append(payload["n"])
            if helpers.job.job_queue_id is not None:
                running.add("serial")
        time.sleep(0.005)
        with lock:
            running.discard("serial")
            ran.append(payload["n"])

    pool = make_pool(
        db, {"a": task, "b": task}, once=True, concurrency=4, forbidden_flags=["blocked"]
    )
    assert pool.run() == 0
    assert pool._claims.per_task
    assert overlaps == []
    serial = [n for n in ran if n < 100]
    assert serial == list(range(12))
    assert sorted(n for n in ran if n >= 100) == [200, 201, 202]
    left = sorted(payload["n"] for task, payload in _remaining(db) if task == "a")
    assert left == [100, 101, 102]


def test_two_pools_run_each_job_exactly_once(db: TestDatabase) -> None:
    _fill_backlog(db, 5000)
    _install(db)
    with db.connect() as conn:
        specs = [
            JobSpec(
                ("a", "b", "c")[n % 3], {"n": n}, queue_name=f"q{n % 4}" if n % 7 == 0 else None
            )
            for n in range(600)
        ]
        add_jobs(conn, specs, schema=db.schema)
    seen: list[int] = []
    lock = threading.Lock()

    def task(payload: dict[str, int], helpers: Any) -> None:
        with lock:
            seen.append(payload["n"])

    tasks = {"a": task, "b": task, "c": task}
    pools = [
        make_pool(db, tasks, once=True, concurrency=4),
        make_pool(db, tasks, once=True, concurrency=4, local_queue_size=10),
    ]
    results: list[int] = []
    threads = [threading.Thread(target=lambda p=p: results.append(p.run())) for p in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [0, 0]
    assert all(pool._claims.per_task for pool in pools)
    assert sorted(seen) == list(range(600)), Counter(seen).most_common(3)
    assert Counter(task for task, _ in _remaining(db)) == {"node_backlog": 5000}


def test_history_is_recorded_by_the_per_task_claim(db: TestDatabase) -> None:
    _install(db)
    with db.connect() as conn:
        add_jobs(conn, [JobSpec("a", {"n": n}) for n in range(6)], schema=db.schema)
    pool = make_pool(db, {"a": lambda p, h: None}, once=True, concurrency=1, history=True)
    assert pool.run() == 0
    assert pool._claims.per_task
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL("select count(*) from {}.job_attempts where outcome = 'success'").format(
                sql.Identifier(side_schema_for(db.schema))
            )
        ).fetchone()
    assert row == (6,)


def test_without_prepared_statements_claims_go_through_claim_next_by_task(
    db: TestDatabase,
) -> None:
    _fill_backlog(db, 1000)
    _install(db)
    with db.connect() as conn:
        conn.execute(
            sql.SQL("alter database {} set track_functions = 'pl'").format(sql.Identifier(db.name))
        )
        specs = [JobSpec("a", {"n": n}, priority=-(n % 3)) for n in range(9)]
        specs += [JobSpec("b", {"n": 100 + n}, queue_name="serial") for n in range(3)]
        add_jobs(conn, specs, schema=db.schema)
    ran: list[int] = []
    tasks = {"a": lambda p, h: ran.append(p["n"]), "b": lambda p, h: ran.append(p["n"])}
    pool = make_pool(db, tasks, once=True, concurrency=1, prepared_statements=False)
    assert pool.run() == 0
    assert pool._claims.per_task
    assert pool._claims.claim_function_schema == side_schema_for(db.schema)
    assert sorted(ran) == sorted([*range(9), 100, 101, 102])
    assert ran.index(100) < ran.index(101) < ran.index(102)
    with db.connect() as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute(
            "select funcname, calls from pg_stat_user_functions where schemaname = %s",
            (side_schema_for(db.schema),),
        ).fetchall()
    calls: dict[str, int] = dict(row)
    assert calls.get("claim_next_by_task", 0) >= 9 and "claim_next" not in calls, calls


def test_worker_utils_installs_reports_and_drops(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        assert not utils.task_index_status().exists
        status = utils.install_task_index()
        assert status.usable and status.name == TASK_INDEX_NAME
        assert utils.task_index_status() == status
        assert utils.drop_task_index() and not utils.drop_task_index()
        assert utils.install_task_index(concurrently=False).usable
