"""Bad input gets a clear error and leaves no partial state (issue 5, item 5).

What tests/integration/test_add_job.py, test_migrate.py, tests/unit/test_payload.py,
test_registry.py, test_cli.py and test_crontab.py already cover is not repeated here;
this adds the all-or-nothing behaviour of ``add_jobs``, the exact limits, the real
``graphile-py`` process on bad task modules, crontabs and connection strings, a role
without rights, a schema from a newer graphile-worker, and a property-based round trip
of payloads through ``add_job``/``add_jobs`` and the worker.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

from graphile_py import (
    ConfigurationError,
    ConnectError,
    DatabaseError,
    JobRejected,
    JobSpec,
    PayloadError,
    WorkerOptions,
    WorkerPool,
    WorkerUtils,
    add_job,
    add_jobs,
    migrate,
)
from graphile_py.db.enqueue import enqueue_statements_for
from graphile_py.jobs import encode_payload
from tests.reliability.helpers import login_role, run_cli
from tests.support import TestDatabase, dsn_for
from tests.support.workers import Recorder, jobs_rows, make_pool, running_pool, wait_for

JS_SAFE = 2**53 - 1


def _counts(db: TestDatabase) -> tuple[int, int, int]:
    """(jobs, task identifiers, named queues) in the worker schema."""
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL(
                "select (select count(*) from {s}._private_jobs),"
                " (select count(*) from {s}._private_tasks),"
                " (select count(*) from {s}._private_job_queues)"
            ).format(s=sql.Identifier(db.schema))
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _one_line_error(result: Any) -> str:
    """The CLI's error: exit status 1, one ``Error: ...`` line, no traceback.

    (Log records, such as "cron is disabled", may come before it.)
    """
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- add_jobs is all or nothing --------------------------------------------------------------

GOOD = [JobSpec("good", {"n": 1}, queue_name="good-q"), JobSpec("good_too", {"n": 2})]


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        (JobSpec("bad", {"when": datetime.now(UTC)}), PayloadError, "datetime"),
        (JobSpec("bad", {"x": float("inf")}), PayloadError, "JSON"),
        (JobSpec("bad", max_attempts=0), JobRejected, "at least 1"),
        (JobSpec("bad", max_attempts=-3), JobRejected, "at least 1"),
        (JobSpec("x" * 129), JobRejected, "longer than 128"),
        (JobSpec("bad", queue_name="q" * 129), JobRejected, "queue name"),
        (JobSpec("bad", job_key="k" * 513), JobRejected, "512"),
        (JobSpec("bad", priority=40000), JobRejected, "priority"),
    ],
    ids=[
        "datetime-payload",
        "infinite-float",
        "max-attempts-0",
        "max-attempts-negative",
        "long-identifier",
        "long-queue-name",
        "long-job-key",
        "priority-out-of-range",
    ],
)
def test_add_jobs_with_one_bad_spec_adds_nothing(
    db: TestDatabase, bad: JobSpec, error: type[Exception], text: str
) -> None:
    with db.connect() as conn, pytest.raises(error, match=text):
        add_jobs(conn, [*GOOD, bad], schema=db.schema)
    with WorkerUtils(db.dsn, schema=db.schema) as utils, pytest.raises(error, match=text):
        utils.add_jobs([bad, *GOOD])
    assert _counts(db) == (0, 0, 0)


def test_add_jobs_refused_by_the_database_adds_nothing(db: TestDatabase) -> None:
    statements = enqueue_statements_for(db.schema)
    with db.connect() as conn:
        # The same key twice in one call: refused by PostgreSQL, not by us.
        with pytest.raises(JobRejected) as raised:
            add_jobs(
                conn,
                [*GOOD, JobSpec("k", job_key="same"), JobSpec("k", job_key="same")],
                schema=db.schema,
            )
        assert raised.value.sqlstate == "21000"
        # Past the client-side checks, the database's own constraints hold, atomically.
        good = '{"identifier":"good","queue_name":"good-q"}'
        for bad in ('{"identifier":"bad","max_attempts":0}', '{"identifier":"' + "x" * 129 + '"}'):
            with pytest.raises(JobRejected) as raised:
                statements.add_jobs(conn, f"[{good},{bad}]", "[{},{}]", False)
            assert raised.value.sqlstate == "23514"
    assert _counts(db) == (0, 0, 0)


def test_a_refused_job_leaves_the_callers_transaction_usable(db: TestDatabase) -> None:
    with psycopg.connect(db.dsn) as conn:
        add_job(conn, "kept", schema=db.schema)
        with pytest.raises(JobRejected):
            add_jobs(conn, [JobSpec("bad", max_attempts=0)], schema=db.schema)
        with pytest.raises(PayloadError):
            add_job(conn, "bad", {1, 2}, schema=db.schema)
        conn.commit()
    assert [row["attempts"] for row in jobs_rows(db)] == [0]
    assert _counts(db) == (1, 1, 0)


# -- exact limits ----------------------------------------------------------------------------


def test_the_payload_limit_counts_utf8_bytes_and_is_inclusive(db: TestDatabase) -> None:
    payload = {"text": "é" * 10}  # 10 characters, 20 bytes
    size = len(encode_payload(payload).encode("utf-8"))
    with db.connect() as conn:
        add_job(conn, "t", payload, max_payload_bytes=size, schema=db.schema)
        add_jobs(conn, [JobSpec("t", payload)], max_payload_bytes=size, schema=db.schema)
        with pytest.raises(PayloadError, match=f"{size} bytes of JSON, over the limit of"):
            add_job(conn, "t", payload, max_payload_bytes=size - 1, schema=db.schema)
        with pytest.raises(PayloadError, match="over the limit"):
            add_jobs(
                conn,
                [JobSpec("t"), JobSpec("t", payload)],
                max_payload_bytes=size - 1,
                schema=db.schema,
            )
    assert _counts(db)[0] == 2


def test_identifier_and_queue_name_limits_are_128_characters_not_bytes(
    db: TestDatabase,
) -> None:
    identifier = "😀" * 128  # 512 bytes of UTF-8
    queue = "é" * 128
    seen = Recorder()
    with db.connect() as conn:
        add_job(conn, identifier, {"ok": True}, queue_name=queue, schema=db.schema)
        with pytest.raises(JobRejected, match="longer than 128"):
            add_job(conn, identifier + "😀", schema=db.schema)
        with pytest.raises(JobRejected, match="queue name"):
            add_job(conn, "t", queue_name=queue + "é", schema=db.schema)
    # The worker registers and runs a task with such a name.
    task = {identifier: lambda payload, helpers: seen.add(helpers.get_queue_name())}
    make_pool(db, task, once=True).run()
    assert seen.items == [queue]
    assert jobs_rows(db) == []


# -- the worker ------------------------------------------------------------------------------


def test_a_job_for_an_unknown_task_waits_for_a_worker_that_knows_it(db: TestDatabase) -> None:
    seen = Recorder()
    with db.connect() as conn:
        foreign = add_job(conn, "someone_elses", {"x": 1}, queue_name="shared", schema=db.schema)
        add_job(conn, "mine", "mine", queue_name="shared", schema=db.schema)
    with running_pool(db, {"mine": lambda payload, helpers: seen.add(payload)}, poll_interval=0.1):
        wait_for(lambda: seen.items == ["mine"], timeout=30)
        time.sleep(0.5)  # several polls that must not touch the foreign job
    [row] = jobs_rows(db)
    assert (row["id"], row["attempts"], row["locked_by"], row["last_error"]) == (
        foreign.id,
        0,
        None,
        None,
    )
    make_pool(db, {"someone_elses": lambda payload, helpers: seen.add(payload)}, once=True).run()
    assert seen.items == ["mine", {"x": 1}]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("def broken(:\n", "SyntaxError"),
        ("import gpy_no_such_dependency\n", "gpy_no_such_dependency"),
    ],
    ids=["raises", "syntax-error", "missing-dependency"],
)
def test_worker_refuses_a_task_module_that_fails_to_import(
    db: TestDatabase, tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "broken_tasks.py").write_text(source)
    result = run_cli(
        "worker", "-c", db.dsn, "-s", db.schema, "--tasks", "broken_tasks:registry", cwd=tmp_path
    )
    # One error line, then the module's own traceback (never graphile-py's frames): an
    # import that fails is the user's code, and where it failed is what they need.
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert "broken_tasks" in errors[0] and message in errors[0]
    assert "broken_tasks.py" in result.stderr and "graphile_py" not in result.stderr
    assert _counts(db) == (0, 0, 0)


def test_worker_refuses_a_bad_crontab_before_touching_the_database(
    empty_db: TestDatabase, tmp_path: Path
) -> None:
    (tmp_path / "ok_tasks.py").write_text("registry = {'nightly': lambda p, h: None}\n")
    (tmp_path / "crontab").write_text("# jobs\n0 4 * * * nightly\n* 24 * * * nightly ?id=two\n")
    result = run_cli(
        "worker",
        "-c",
        empty_db.dsn,
        "-s",
        empty_db.schema,
        "--tasks",
        "ok_tasks:registry",
        cwd=tmp_path,
    )
    line = _one_line_error(result)
    assert "Too large value '24'" in line and "line 3" in line
    with empty_db.connect() as conn:
        schemas = conn.execute(
            "select count(*) from pg_namespace where nspname = %s", (empty_db.schema,)
        ).fetchone()
    assert schemas == (0,), "the schema was installed although the worker refused to start"


# -- connection strings and rights -----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "target", "words"),
    [
        ("worker", "database", 'database "gpy_no_such_database" does not exist'),
        ("worker", "role", 'role "gpy_no_such_role" does not exist'),
        ("worker", "host", "nonexistent.invalid"),
        ("migrate", "database", 'database "gpy_no_such_database" does not exist'),
    ],
)
def test_wrong_connection_strings_are_one_line_errors(
    db: TestDatabase, tmp_path: Path, target: str, words: str, command: str
) -> None:
    (tmp_path / "ok_tasks.py").write_text("registry = {'t': lambda p, h: None}\n")
    dsn = {
        "database": dsn_for("gpy_no_such_database", db.dsn),
        "role": make_conninfo(db.dsn, user="gpy_no_such_role"),
        "host": make_conninfo(db.dsn, host="nonexistent.invalid"),
    }[target]
    extra = ["--tasks", "ok_tasks:registry"] if command == "worker" else []
    line = _one_line_error(run_cli(command, "-c", dsn, *extra, cwd=tmp_path))
    assert line.startswith("Error: Connecting to the database failed")
    assert words in line


def test_worker_pool_reports_a_wrong_database_at_once() -> None:
    started = time.monotonic()
    pool = WorkerPool({"t": lambda p, h: None}, conninfo=dsn_for("gpy_no_such_database"))
    with pytest.raises(ConnectError, match="does not exist"):
        pool.start()
    assert time.monotonic() - started < 15


def test_worker_utils_reports_a_wrong_database_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError) as raised:
        WorkerUtils(dsn_for("gpy_no_such_database"), connect_timeout=5)
    elapsed = time.monotonic() - started
    assert 'database "gpy_no_such_database" does not exist' in str(raised.value)
    assert elapsed < 4


def test_a_role_without_rights_gets_permission_errors_and_changes_nothing(
    db: TestDatabase, tmp_path: Path
) -> None:
    with db.connect() as conn:
        add_job(conn, "existing", schema=db.schema)
    before = _counts(db)
    with login_role(db, "gpy_norights") as (_, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(DatabaseError, match="permission denied") as raised:
                add_job(conn, "t", schema=db.schema)
            assert raised.value.sqlstate == "42501"
            with pytest.raises(DatabaseError, match="permission denied"):
                migrate(conn, schema=db.schema)
        with pytest.raises(DatabaseError, match="permission denied"):
            WorkerUtils(dsn, schema=db.schema, connect_timeout=10)
        started = time.monotonic()
        pool = WorkerPool(
            {"existing": lambda p, h: None},
            conninfo=dsn,
            options=WorkerOptions(schema=db.schema),
        )
        with pytest.raises(DatabaseError, match="permission denied"):
            pool.start()
        assert time.monotonic() - started < 15, "a permission error is not worth retrying"

        (tmp_path / "ok_tasks.py").write_text("registry = {'existing': lambda p, h: None}\n")
        worker = run_cli(
            "worker", "-c", dsn, "-s", db.schema, "--tasks", "ok_tasks:registry", cwd=tmp_path
        )
        assert "permission denied" in _one_line_error(worker)
    assert _counts(db) == before
    assert jobs_rows(db)[0]["attempts"] == 0


def test_a_role_that_may_not_create_the_schema_cannot_migrate(
    empty_db: TestDatabase, tmp_path: Path
) -> None:
    with login_role(empty_db, "gpy_nocreate") as (_, dsn):
        line = _one_line_error(run_cli("migrate", "-c", dsn, "-s", empty_db.schema, cwd=tmp_path))
    assert "permission denied" in line
    with empty_db.connect() as conn:
        assert conn.execute(
            "select count(*) from pg_namespace where nspname = %s", (empty_db.schema,)
        ).fetchone() == (0,)


# -- a database migrated by a newer graphile-worker ------------------------------------------


def test_worker_refuses_a_newer_breaking_schema_and_touches_no_job(
    db: TestDatabase, tmp_path: Path
) -> None:
    with db.connect() as conn:
        add_job(conn, "t", schema=db.schema)
        conn.execute(
            sql.SQL("insert into {}.migrations (id, breaking) values (21, true)").format(
                sql.Identifier(db.schema)
            )
        )
    (tmp_path / "ok_tasks.py").write_text("registry = {'t': lambda p, h: None}\n")
    result = run_cli(
        "worker",
        "-c",
        db.dsn,
        "-s",
        db.schema,
        "--tasks",
        "ok_tasks:registry",
        "--once",
        cwd=tmp_path,
    )
    assert result.returncode == 57, result.stderr
    assert "Traceback" not in result.stderr and "21" in result.stderr
    assert [(row["attempts"], row["locked_by"]) for row in jobs_rows(db)] == [(0, None)]


def test_worker_runs_on_a_newer_non_breaking_schema(db: TestDatabase) -> None:
    """A later graphile-worker may add columns and tables without a breaking migration."""
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL("insert into {}.migrations (id, breaking) values (21, false)").format(ident)
        )
        conn.execute(sql.SQL("alter table {}._private_jobs add column future text").format(ident))
        conn.execute(sql.SQL("create table {}._private_future (id int)").format(ident))
        add_job(conn, "t", {"n": 1}, queue_name="q", schema=db.schema)
    seen = Recorder()
    make_pool(db, {"t": lambda payload, helpers: seen.add(payload)}, once=True).run()
    assert seen.items == [{"n": 1}]
    assert jobs_rows(db) == []


# -- schema names ----------------------------------------------------------------------------


def test_a_schema_name_over_63_bytes_is_refused(db: TestDatabase) -> None:
    first, second = "q" * 63 + "_first", "q" * 63 + "_second"
    with db.connect() as conn:
        with pytest.raises(ConfigurationError):
            migrate(conn, schema=first)
        with pytest.raises(ConfigurationError):
            add_job(conn, "t", schema=second)


@pytest.mark.parametrize("schema", ["", "gw\x00x"], ids=["empty", "nul"])
def test_an_impossible_schema_name_is_a_configuration_error(db: TestDatabase, schema: str) -> None:
    with pytest.raises(ConfigurationError):
        WorkerOptions(schema=schema)
    with db.connect() as conn:
        with pytest.raises(ConfigurationError):
            migrate(conn, schema=schema)
        with pytest.raises(ConfigurationError):
            add_job(conn, "t", schema=schema)


# -- payloads round-trip exactly -------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-JS_SAFE, max_value=JS_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


def _canonical(value: object) -> str:
    """JSON text that tells 1, 1.0 and True apart, and keeps key order."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def test_random_payloads_round_trip_exactly_through_add_job_and_the_worker(
    db: TestDatabase,
) -> None:
    received: dict[int, Any] = {}
    stored = sql.SQL("select payload::text from {}._private_jobs where id = %s").format(
        sql.Identifier(db.schema)
    )

    def echo(payload: Any, helpers: Any) -> None:
        received[helpers.job.id] = payload

    with (
        running_pool(db, {"echo": echo}, concurrency=2, poll_interval=0.2),
        db.connect() as conn,
    ):

        @settings(
            max_examples=100,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(payload=json_values, batch=st.booleans())
        @example(payload={"big": 2**64 + 1, "tiny": 5e-324, "nul": "\x00"}, batch=False)
        @example(payload=["é", "😀", "\u2028", -0.0, 1e16], batch=True)
        @example(payload=None, batch=False)
        def round_trip(payload: Any, batch: bool) -> None:
            if batch and "\\u0000" in encode_payload(payload):
                batch = False  # add_jobs refuses U+0000: see the test after this one
            with conn.transaction():
                # Added and its stored text read in one transaction, before a worker
                # can take (and delete) it.
                if batch:
                    [job] = add_jobs(conn, [JobSpec("echo", payload)], schema=db.schema)
                else:
                    job = add_job(conn, "echo", payload, schema=db.schema)
                text = conn.execute(stored, (job.id,)).fetchone()
            expected = {} if payload is None else payload
            assert text == (encode_payload(payload),)  # stored verbatim
            assert _canonical(job.payload) == _canonical(expected)
            wait_for(lambda: job.id in received, timeout=30, interval=0.005)
            assert _canonical(received.pop(job.id)) == _canonical(expected)

        round_trip()
    assert jobs_rows(db) == []


@pytest.mark.parametrize("payload", [{"text": "a\x00b"}, {"\x00": 1}], ids=["value", "key"])
def test_add_jobs_accepts_every_payload_that_add_job_accepts(
    db: TestDatabase, payload: object
) -> None:
    with db.connect() as conn:
        single = add_job(conn, "t", payload, schema=db.schema)
        [batched] = add_jobs(conn, [JobSpec("t", payload)], schema=db.schema)
    assert batched.payload == single.payload == payload
