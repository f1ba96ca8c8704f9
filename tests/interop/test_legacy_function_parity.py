"""The pre-0.14 job API behaves like Node's at each step where it exists, and its rows
survive the migration to the current schema exactly as with Node's migrations.

At step k (1..10) the database has the old in-database job lifecycle: ``get_job``,
``complete_job``, ``fail_job``, the queue-counting and ``updated_at`` triggers, and the
``add_job`` / ``remove_job`` / admin functions of that era. A script using whatever
step k offers runs on a database with our migrations 1..k and on one with Node's files
1..k; results must be identical. Both are then migrated to the end (ours by
``migrate``, Node's by the Node CLI) and the carried-over rows compared, including
migration 11's refusal to run while a job is freshly locked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from graphile_py.db.migrate import migrate
from graphile_py.errors import LockedJobsBlockMigration, MigrationError
from tests.interop.node_schema import (
    DEFAULT_SCHEMA,
    ODD_SCHEMA,
    apply_upstream,
    node_schema_only,
)
from tests.interop.recorder import Recorder, compare_runs, entry, errors, recording, run_script
from tests.support import TestDatabase

pytestmark = pytest.mark.node

MakeDb = Callable[..., TestDatabase]
WORKER = "worker-0123456789"
OTHER_WORKER = "worker-9876543210"
# The step at which each add_job argument appeared.
_ARGUMENT_SINCE = {"job_key": 2, "priority": 4, "flags": 5, "job_key_mode": 7}


class Legacy:
    """Calls of the old API, shaped by what exists at ``step``."""

    def __init__(self, r: Recorder, step: int) -> None:
        self.r = r
        self.step = step

    def add_job(self, label: str, identifier: str, **options: Any) -> None:
        usable = {
            name: value
            for name, value in options.items()
            if self.step >= _ARGUMENT_SINCE.get(name, 1)
        }
        self.r.add_job(label, identifier, **usable)

    def ids(self, *tags: str) -> str:
        quoted = ", ".join(f"'{tag}'" for tag in tags)
        return f"array(select id from {{s}}.jobs where payload->>'tag' in ({quoted}) order by id)"

    def one_id(self, tag: str) -> str:
        return f"(select id from {{s}}.jobs where payload->>'tag' = '{tag}')"

    def get_job(
        self,
        label: str,
        worker: str = WORKER,
        *,
        tasks: list[str] | None = None,
        forbidden: list[str] | None = None,
        now: str | None = None,
    ) -> None:
        args = ["%s::text", "task_identifiers => %s::text[]"]
        params: list[Any] = [worker, tasks]
        if self.step >= 5:
            args.append("forbidden_flags => %s::text[]")
            params.append(forbidden)
        if self.step >= 9 and now is not None:
            args.append("now => %s::timestamptz")
            params.append(now)
        self.r.sql(label, "select * from {s}.get_job(" + ", ".join(args) + ")", params)

    def lock_stale(self, tag: str) -> None:
        self.r.sql(
            f"stale lock {tag}",
            "update {s}.jobs set locked_at = %s, locked_by = %s where payload->>'tag' = %s",
            [self.r.at(hours=-5), OTHER_WORKER, tag],
        )

    def dump(self) -> None:
        self.r.dump(("jobs", "id"), ("job_queues", "queue_name"))
        self.r.dump_sequences()


def legacy_scenario(step: int) -> Callable[[Recorder], None]:
    def script(r: Recorder) -> None:
        api = Legacy(r, step)
        api.add_job("queued", "t1", payload={"tag": "a"}, queue_name="q1", priority=1)
        api.add_job("queued 2", "t1", payload={"tag": "a2"}, queue_name="q1")
        api.add_job("no queue", "t2", payload={"tag": "b"})  # NOT NULL before step 3
        api.add_job("future", "t2", payload={"tag": "c"}, queue_name="q2", run_at=r.at(hours=1))
        api.add_job(
            "two attempts",
            "t3",
            payload={"tag": "d"},
            queue_name="q3",
            max_attempts=2,
            flags=["slow"],
        )
        api.add_job(
            "priority first",
            "t3",
            payload={"tag": "e"},
            queue_name="q4",
            priority=-5,
            flags=["fast"],
        )
        api.add_job("identifier too long", "i" * 129, payload={"tag": "long"}, queue_name="q5")
        api.add_job("queue too long", "t1", payload={"tag": "lq"}, queue_name="q" * 129)
        api.add_job("max_attempts 0", "t1", payload={"tag": "m0"}, queue_name="q5", max_attempts=0)
        if step >= 2:
            api.add_job("key too long", "t1", queue_name="q5", job_key="k" * 513)
            api.add_job("empty key", "t1", queue_name="q5", job_key="")

        # Claiming: priority order, queue locking, task filters, flags, caller's clock.
        api.get_job("get_job: first")
        api.get_job("get_job: next (q1 busy)")
        api.get_job("get_job: by task", tasks=["t1", "t2"])
        api.get_job("get_job: invalid worker id", "short")
        api.get_job("get_job: forbidden flags", OTHER_WORKER, forbidden=["slow"])
        api.get_job("get_job: future by caller clock", OTHER_WORKER, now=r.at(hours=2))
        api.get_job("get_job: nothing left")

        # Finishing: complete releases the queue, fail backs off and releases it too.
        r.sql(
            "complete_job", "select * from {s}.complete_job(%s, " + api.one_id("e") + ")", [WORKER]
        )
        r.sql(
            "fail_job", "select * from {s}.fail_job(%s, " + api.one_id("a") + ", 'oops')", [WORKER]
        )
        r.sql(
            "fail_job wrong worker",
            "select * from {s}.fail_job(%s, " + api.one_id("b") + ", 'nope')",
            [OTHER_WORKER],
        )
        r.sql(
            "fail_job NULL message",
            "select * from {s}.fail_job(%s, " + api.one_id("b") + ", NULL)",
            [WORKER],
        )
        r.sql("complete_job missing", "select * from {s}.complete_job(%s, -1)", [WORKER])
        api.get_job("get_job: after release")

        # The triggers: updated_at moves forward; queue rows follow their jobs.
        for n in (1, 2):
            r.sql(
                f"touch {n}",
                "update {s}.jobs set last_error = %s where payload->>'tag' = 'd'",
                [f"touch {n}"],
            )
        r.sql("move queue", "update {s}.jobs set queue_name = 'q9' where payload->>'tag' = 'c'")
        r.sql("delete job", "delete from {s}.jobs where payload->>'tag' = 'a2'")

        if step >= 2:
            api.add_job("key: new", "t5", payload={"tag": "k"}, job_key="k", queue_name="qk")
            api.add_job(
                "key: replace",
                "t5",
                payload={"tag": "k2"},
                job_key="k",
                queue_name="qk2",
                run_at=r.at(minutes=3),
            )
            api.add_job("key: keep queue", "t5", payload={"tag": "k3"}, job_key="k")
            api.get_job("get_job: keyed", tasks=["t5"])
            api.add_job(
                "key: replace running", "t5", payload={"tag": "k4"}, job_key="k", queue_name="qk"
            )
            api.add_job("remove target", "t6", payload={"tag": "r"}, job_key="r", queue_name="qr")
            r.sql("remove_job idle", "select * from {s}.remove_job('r')")
            r.sql("remove_job running", "select * from {s}.remove_job('k')")
            r.sql("remove_job missing", "select * from {s}.remove_job('none')")
            r.sql("remove_job NULL", "select * from {s}.remove_job(NULL)")
        if step >= 4:
            api.lock_stale("c")
            for name, call in (
                ("complete_jobs", "complete_jobs(" + api.ids("c", "k4", "x") + ")"),
                ("permanently_fail_jobs", "permanently_fail_jobs(" + api.ids("b", "a") + ")"),
                (
                    "permanently_fail_jobs message",
                    "permanently_fail_jobs(" + api.ids("d") + ", 'manual')",
                ),
                (
                    "reschedule_jobs",
                    "reschedule_jobs("
                    + api.ids("a", "b", "d")
                    + ", run_at => now() + interval '1 day', priority => 2, attempts => 0,"
                    " max_attempts => 3)",
                ),
                ("reschedule_jobs nothing", "reschedule_jobs(" + api.ids("a") + ")"),
            ):
                r.sql(name, "select * from {s}." + call)
        if step >= 7:
            api.add_job("mode: bogus", "t7", job_key="m", job_key_mode="bogus")
            api.add_job(
                "mode: bogus without key",
                "t7",
                payload={"tag": "mb"},
                job_key_mode="bogus",
                queue_name="qm",
            )
            api.add_job(
                "preserve: new",
                "t7",
                payload={"tag": "p"},
                job_key="p",
                run_at=r.at(hours=2),
                job_key_mode="preserve_run_at",
            )
            api.add_job(
                "preserve: keep",
                "t7",
                payload={"tag": "p2"},
                job_key="p",
                run_at=r.at(hours=5),
                job_key_mode="preserve_run_at",
            )
            api.add_job(
                "dedupe: new",
                "t8",
                payload={"tag": "u"},
                job_key="u",
                job_key_mode="unsafe_dedupe",
                queue_name="qu",
            )
            api.add_job(
                "dedupe: existing",
                "t9",
                payload={"tag": "u2"},
                job_key="u",
                job_key_mode="unsafe_dedupe",
            )
            api.get_job("get_job: dedupe target", tasks=["t8"])
            api.add_job(
                "dedupe: running",
                "t8",
                payload={"tag": "u3"},
                job_key="u",
                job_key_mode="unsafe_dedupe",
            )
        api.dump()

    return script


def _after_migration(r: Recorder) -> None:
    r.dump(
        ("_private_jobs", "id"),
        ("_private_tasks", "id"),
        ("_private_job_queues", "id"),
        ("jobs", "id"),
    )
    r.dump_sequences()


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 7, 9, 10])
def test_legacy_api_and_carry_over_match_node(
    make_db: MakeDb, node_worker: Path, step: int
) -> None:
    schema = ODD_SCHEMA if step == 10 else DEFAULT_SCHEMA
    ours_db, node_db = make_db(schema=schema), make_db(schema=schema)
    with ours_db.connect() as conn:
        migrate(conn, schema=schema, target=step)
    with node_db.connect() as conn:
        apply_upstream(conn, node_worker, schema, target=step)

    script = legacy_scenario(step)
    node = run_script(node_db, script, one_transaction=True)
    ours = run_script(ours_db, script, one_transaction=True)
    compare_runs(ours, node)
    # Guard against "identically broken": the claims and errors must be the intended ones.
    claimed = entry(ours, "get_job: first")["rows"][0]
    assert claimed["payload"] == {"tag": "e" if step >= 4 else "a"}
    assert errors(ours)["get_job: invalid worker id"] == ("P0001", None)
    if step >= 4:
        assert errors(ours)["identifier too long"] == ("GWBID", None)

    # Migration 11 refuses to run while a job is freshly locked, for both. (At step 1
    # only queues are locked; migration 2 copies their locks onto the jobs.)
    with ours_db.connect() as conn, pytest.raises(LockedJobsBlockMigration):
        migrate(conn, schema=schema)
    result = node_schema_only(node_worker, node_db.dsn, schema)
    assert result.returncode != 0
    assert "There are locked jobs present" in result.stdout + result.stderr
    for database in (ours_db, node_db):
        with database.connect() as conn:
            latest = conn.execute(
                sql.SQL("select max(id) from {}.migrations").format(sql.Identifier(schema))
            ).fetchone()
            assert latest == (10,)
            # Workers gone for good: their locks age past the four-hour horizon. (With
            # triggers off, so that updated_at keeps the script's values.)
            with conn.transaction():
                conn.execute("set local session_replication_role = replica")
                conn.execute(
                    sql.SQL(
                        "update {}.jobs set locked_at = locked_at - interval '10 hours'"
                        " where locked_at is not null"
                    ).format(sql.Identifier(schema))
                )

    if step < 4:
        # Before step 4 nothing stopped over-long names, keys or max_attempts < 1 from
        # being stored; migration 11's new CHECK constraints then reject those rows, and
        # must do so the same way for both.
        with ours_db.connect() as conn, pytest.raises(MigrationError) as failure:
            migrate(conn, schema=schema)
        assert failure.value.sqlstate == "23514"
        assert "job_queues_queue_name_check" in str(failure.value)
        result = node_schema_only(node_worker, node_db.dsn, schema)
        assert result.returncode != 0
        assert "job_queues_queue_name_check" in result.stdout + result.stderr
        for database in (ours_db, node_db):
            with database.connect() as conn:
                conn.execute(
                    sql.SQL(
                        "delete from {}.jobs where length(queue_name) > 128"
                        " or length(task_identifier) > 128 or length(key) > 512"
                        " or max_attempts < 1"
                    ).format(sql.Identifier(schema))
                )

    with ours_db.connect() as conn:
        migrate(conn, schema=schema)
    result = node_schema_only(node_worker, node_db.dsn, schema)
    assert result.returncode == 0, result.stdout + result.stderr

    # Timestamps stay relative to each script's now(). At step 1, migration 2 copies queue
    # locks onto jobs during the migration itself, and the updated_at trigger stamps
    # those rows with that moment.
    loose = frozenset({"updated_at"}) if step == 1 else frozenset()
    carried = {}
    for name, database, run in (("ours", ours_db, ours), ("node", node_db, node)):
        with recording(database, one_transaction=True, now=run["now"], loose_columns=loose) as r:
            _after_migration(r)
        carried[name] = {"calls": r.log, "notifications": r.notifications}
    compare_runs(carried["ours"], carried["node"])
    assert entry(carried["ours"], "dump _private_jobs")["rows"], "nothing was carried over"
