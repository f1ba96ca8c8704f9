"""The mistakes a first-time user makes get a clear error that names the problem and the fix.

Every test here runs against the real PostgreSQL, and each one failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg_pool import ConnectionPool

from graphile_py import (
    ConnectError,
    DatabaseError,
    GraphileError,
    JobRejected,
    JobSpec,
    PayloadError,
    SchemaNotInstalled,
    TaskLoadError,
    WorkerPool,
    WorkerUtils,
    add_job,
    add_job_async,
    add_jobs,
    add_jobs_async,
)
from graphile_py.cli import main
from graphile_py.cron.crontab import parse_crontab
from graphile_py.cron.scheduler import CronScheduler
from graphile_py.db.side_schema import side_schema_for
from graphile_py.db.translate import translate_error
from graphile_py.tasks import validate_task_map
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, run_once

HALF_EMOJI = "\ud83d"  # the first half of 😀's UTF-16 pair, alone


def _cli(db: TestDatabase, command: str, *args: str) -> tuple[int, str]:
    """Run ``graphile-py COMMAND -c DSN -s SCHEMA ARGS`` in-process."""
    result = CliRunner().invoke(main, [*command.split(), "-c", db.dsn, "-s", db.schema, *args])
    return result.exit_code, result.output


# -- 1. lone surrogates ----------------------------------------------------------------


def _assert_surrogate_error(error: BaseException, path: str) -> None:
    assert isinstance(error, GraphileError), repr(error)
    message = str(error)
    assert message.startswith(f"{path} is not valid Unicode: it holds a lone surrogate"), message
    assert "\\ud83d" in message and 'encode("utf-8", "replace")' in message
    assert not isinstance(error.__cause__, UnicodeEncodeError)


def test_add_job_refuses_a_lone_surrogate_naming_its_path(db: TestDatabase) -> None:
    payload = {"user": {"name": ["a", "b", "c", f"Smile {HALF_EMOJI}"]}}
    with db.connect() as conn:
        with pytest.raises(PayloadError) as info:
            add_job(conn, "greet", payload, schema=db.schema)
        _assert_surrogate_error(info.value, 'payload["user"]["name"][3]')
        with pytest.raises(PayloadError) as info:
            add_job(conn, "greet", {f"key{HALF_EMOJI}": 1}, schema=db.schema)
        _assert_surrogate_error(info.value, "a key of payload")
        with pytest.raises(PayloadError) as info:
            add_job(conn, "greet", HALF_EMOJI, schema=db.schema)
        _assert_surrogate_error(info.value, "payload")
        # The connection is still usable: nothing was sent.
        add_job(conn, "greet", {"name": "Smile 😀"}, schema=db.schema)
    assert [row["payload"] for row in jobs_rows(db)] == [{"name": "Smile 😀"}]


def test_add_jobs_names_the_spec_and_the_path(db: TestDatabase) -> None:
    specs = [JobSpec("greet", {"n": 1}), JobSpec("greet", {"n": 2, "name": ["ok", HALF_EMOJI]})]
    with db.connect() as conn, pytest.raises(PayloadError) as info:
        add_jobs(conn, specs, schema=db.schema)
    _assert_surrogate_error(info.value, 'specs[1].payload["name"][1]')
    assert jobs_rows(db) == []


def test_async_paths_refuse_a_lone_surrogate(db: TestDatabase) -> None:
    async def both() -> list[BaseException]:
        errors: list[BaseException] = []
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            for call in (
                add_job_async(conn, "greet", {"name": HALF_EMOJI}, schema=db.schema),
                add_jobs_async(conn, [JobSpec("greet", {"name": HALF_EMOJI})], schema=db.schema),
            ):
                try:
                    await call
                except BaseException as exc:
                    errors.append(exc)
        return errors

    first, second = asyncio.run(both())
    _assert_surrogate_error(first, 'payload["name"]')
    _assert_surrogate_error(second, 'specs[0].payload["name"]')
    assert jobs_rows(db) == []


def test_worker_utils_and_the_cli_refuse_a_lone_surrogate(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        with pytest.raises(PayloadError) as info:
            utils.add_job("greet", {"name": HALF_EMOJI})
        _assert_surrogate_error(info.value, 'payload["name"]')
        with pytest.raises(PayloadError):
            utils.add_jobs([JobSpec("greet", [HALF_EMOJI])])
    # The JSON escape on the command line decodes to the lone surrogate.
    code, output = _cli(db, "add-job", "greet", "--payload", '{"name": "\\ud83d"}')
    assert code == 1, output
    assert 'payload["name"] is not valid Unicode' in output and "Traceback" not in output
    assert jobs_rows(db) == []


@pytest.mark.parametrize(
    ("field", "options", "spec"),
    [
        ("the task identifier", {}, JobSpec(f"greet{HALF_EMOJI}")),
        ("queue_name", {"queue_name": HALF_EMOJI}, JobSpec("greet", queue_name=HALF_EMOJI)),
        ("job_key", {"job_key": HALF_EMOJI}, JobSpec("greet", job_key=HALF_EMOJI)),
        ("flags[1]", {"flags": ["a", HALF_EMOJI]}, JobSpec("greet", flags=["a", HALF_EMOJI])),
    ],
)
def test_names_and_keys_with_a_lone_surrogate_are_refused(
    db: TestDatabase, field: str, options: dict[str, Any], spec: JobSpec
) -> None:
    identifier = spec.identifier if field == "the task identifier" else "greet"
    with db.connect() as conn:
        with pytest.raises(JobRejected) as info:
            add_job(conn, identifier, {}, schema=db.schema, **options)
        assert str(info.value).startswith(f"{field} is not valid Unicode"), info.value
        with pytest.raises(JobRejected) as info:
            add_jobs(conn, [spec], schema=db.schema)
        assert str(info.value).startswith(f"{field} is not valid Unicode"), info.value
    assert jobs_rows(db) == []


def test_what_postgres_does_with_the_json_escape(db: TestDatabase) -> None:
    # Why refusing beats escaping: the json column stores "\ud83d" unchecked, but every
    # operator that reads it (and graphile-worker's own add_jobs) refuses it later.
    with db.connect() as conn:
        stored = conn.execute("""select '{"a": "\\ud83d"}'::json::text""").fetchone()
        assert stored == ('{"a": "\\ud83d"}',)
        for query in (
            """select '{"a": "\\ud83d"}'::json ->> 'a'""",
            """select '{"a": "\\ud83d"}'::jsonb""",
        ):
            with pytest.raises(psycopg.DataError, match="surrogate"):
                conn.execute(query)


def test_plain_non_ascii_payloads_still_pass(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_job(conn, "greet", {"name": "Zoë 😀"}, schema=db.schema)
        add_jobs(
            conn,
            [JobSpec("greet", {"name": "Zoë 😀", "n": n}) for n in range(3)],
            schema=db.schema,
        )
    assert {json.dumps(row["payload"], ensure_ascii=False) for row in jobs_rows(db)} >= {
        '{"name": "Zoë 😀"}'
    }


# -- 2. an unmigrated database, a wrong schema name -------------------------------------


def _assert_not_installed(error: BaseException, schema: str) -> None:
    assert isinstance(error, SchemaNotInstalled), repr(error)
    assert isinstance(error, DatabaseError)
    message = str(error)
    assert f"the schema {schema!r}" in message and "graphile-py migrate" in message, message
    assert "if your jobs live in another schema" in message
    assert error.schema == schema
    assert isinstance(error.__cause__, psycopg.Error)


def test_add_job_on_an_unmigrated_database_says_to_migrate(empty_db: TestDatabase) -> None:
    with empty_db.connect() as conn:
        for call in (
            lambda: add_job(conn, "greet", {}),
            lambda: add_job(conn, "greet", {}, job_key="k"),
            lambda: add_jobs(conn, [JobSpec("greet")]),
        ):
            with pytest.raises(SchemaNotInstalled) as info:
                call()
            _assert_not_installed(info.value, "graphile_worker")
        # A schema that exists but holds no worker tables says the same.
        conn.execute("create schema graphile_worker")
        with pytest.raises(SchemaNotInstalled) as info:
            add_job(conn, "greet", {})
        _assert_not_installed(info.value, "graphile_worker")
        assert "is not installed, or not fully" in str(info.value)

    async def on_async() -> None:
        async with await psycopg.AsyncConnection.connect(empty_db.dsn, autocommit=True) as aconn:
            await add_job_async(aconn, "greet", {}, schema="nowhere")

    with pytest.raises(SchemaNotInstalled) as info:
        asyncio.run(on_async())
    _assert_not_installed(info.value, "nowhere")


def test_a_wrong_schema_name_is_named(db: TestDatabase) -> None:
    with db.connect() as conn:
        with pytest.raises(SchemaNotInstalled) as info:
            add_job(conn, "greet", {}, schema="graphile_wrker")
        _assert_not_installed(info.value, "graphile_wrker")
        with pytest.raises(SchemaNotInstalled) as info:
            add_job(conn, "greet", {}, schema="Mixed Case")
        _assert_not_installed(info.value, "Mixed Case")
        with pytest.raises(SchemaNotInstalled) as info:
            add_job(conn, "greet", {}, schema="graphile_wrker", job_key="k")
        _assert_not_installed(info.value, "graphile_wrker")
        assert "does not exist in this database" in str(info.value)
    with WorkerUtils(db.dsn, schema="graphile_wrker", run_migrations=False) as utils:
        with pytest.raises(SchemaNotInstalled) as info:
            utils.complete_jobs([1])
        _assert_not_installed(info.value, "graphile_wrker")


# -- 3. jobs reschedule on a permanently failed job --------------------------------------


def _failed_job(db: TestDatabase, task: str = "flaky") -> int:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        job = utils.add_job(task, {"n": 1}, max_attempts=3)
        utils.permanently_fail_jobs([job.id], "gave up")
    return job.id


def test_reschedule_says_a_failed_job_stays_failed(db: TestDatabase) -> None:
    failed = _failed_job(db)
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        ready = utils.add_job("fine").id
    code, output = _cli(db, "jobs reschedule", str(failed), str(ready), "--in", "0s")
    assert code == 0, output
    assert output.startswith("Rescheduled 2 jobs"), output
    assert f"Job {failed} is still permanently failed (3 of 3 attempts used)" in output
    assert f"graphile-py jobs reschedule {failed} --reset-attempts" in output
    assert f"Job {ready} is" not in output
    row = next(row for row in jobs_rows(db) if row["id"] == failed)
    assert (row["attempts"], row["last_error"]) == (3, "gave up")  # graphile-worker's rule

    code, output = _cli(db, "jobs reschedule", str(failed), "--in", "0s", "--json")
    assert code == 0, output
    printed = json.loads(output)
    assert printed["rescheduled"] == [failed] and printed["still_failed"] == [failed]
    assert printed["reset_attempts"] is False


def test_reschedule_with_reset_attempts_makes_it_runnable(db: TestDatabase) -> None:
    failed = _failed_job(db)
    code, output = _cli(
        db, "jobs reschedule", str(failed), "--in", "0s", "--reset-attempts", "--json"
    )
    assert code == 0, output
    printed = json.loads(output)
    assert printed["rescheduled"] == [failed] and printed["still_failed"] == []
    row = jobs_rows(db)[0]
    assert (row["attempts"], row["max_attempts"]) == (0, 3)
    code, output = _cli(db, "jobs list", "--json")
    assert [job["state"] for job in json.loads(output)] == ["ready"], output


# -- 4. cleanup says what it removed ----------------------------------------------------


def test_cleanup_reports_what_each_task_removed(db: TestDatabase) -> None:
    _failed_job(db, "flaky")
    _failed_job(db, "flaky")
    _failed_job(db, "other")
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        utils.add_job("kept", queue_name="busy")
        done = utils.add_job("finished", queue_name="old-queue")
        utils.complete_jobs([done.id])
    code, output = _cli(
        db, "cleanup", "GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"
    )
    assert code == 0, output
    assert output.splitlines() == [
        "DELETE_PERMAFAILED_JOBS: deleted 3 permanently failed jobs (flaky: 2, other: 1)",
        "GC_TASK_IDENTIFIERS: removed 3 unused task identifiers: finished, flaky, other",
        "GC_JOB_QUEUES: removed 1 empty queue: old-queue",
    ]
    code, output = _cli(db, "cleanup", "GC_JOB_QUEUES", "DELETE_PERMAFAILED_JOBS", "--json")
    assert code == 0, output
    assert json.loads(output) == {
        "DELETE_PERMAFAILED_JOBS": {"deleted_jobs": 0, "by_task": {}},
        "GC_JOB_QUEUES": {"removed": []},
    }
    code, output = _cli(db, "cleanup", "GC_JOB_QUEUES")
    assert output.strip() == "GC_JOB_QUEUES: removed 0 empty queues", output
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        report = utils.cleanup(["GC_TASK_IDENTIFIERS"], task_identifiers_to_keep=["kept"])
    assert report.task_identifiers == () and report.deleted_jobs is None and report.queues is None


# -- 5. a task module that fails to import, and --tasks given the wrong thing -----------


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("gpy_first_")]:
        del sys.modules[name]


def _worker_error(db: TestDatabase, spec: str) -> str:
    result = CliRunner().invoke(main, ["worker", "-c", db.dsn, "-s", db.schema, "--tasks", spec])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info
    return result.stderr


def test_an_import_error_shows_the_module_and_its_traceback(
    db: TestDatabase, task_dir: Path
) -> None:
    path = task_dir / "gpy_first_boom.py"
    path.write_text("import json\n\nRATE = 1 / 0\nregistry = {}\n")
    error = _worker_error(db, "gpy_first_boom:registry")
    first = error.splitlines()[0]
    assert first == (
        "Error: importing the task module 'gpy_first_boom' failed:"
        f" ZeroDivisionError: division by zero (at {path}:3)"
    )
    assert "Traceback (most recent call last):" in error
    assert f'File "{path}", line 3, in <module>' in error and "RATE = 1 / 0" in error
    assert "<frozen" not in error and "importlib" not in error and "tasks.py" not in error


def test_a_syntax_error_points_at_file_and_line(db: TestDatabase, task_dir: Path) -> None:
    path = task_dir / "gpy_first_syntax.py"
    path.write_text("registry = {}\n\ndef broken(:\n    pass\n")
    error = _worker_error(db, "gpy_first_syntax:registry")
    assert error.startswith(
        f"Error: importing the task module 'gpy_first_syntax' failed: {path}:3:12: SyntaxError:"
    ), error
    assert "def broken(:" in error


def test_a_missing_dependency_is_named(db: TestDatabase, task_dir: Path) -> None:
    (task_dir / "gpy_first_dep.py").write_text("import gpy_absent_dependency\n")
    error = _worker_error(db, "gpy_first_dep:registry")
    assert "it imports 'gpy_absent_dependency', which is not installed" in error
    assert sys.executable in error and "line 1, in <module>" in error


def test_tasks_pointing_at_the_wrong_thing_name_the_task_maps(
    db: TestDatabase, task_dir: Path
) -> None:
    (task_dir / "gpy_first_ok.py").write_text(
        "from graphile_py import TaskRegistry\n"
        "jobs = TaskRegistry()\n"
        "@jobs.task\n"
        "def hello(payload, helpers):\n    return None\n"
    )
    (task_dir / "gpy_first_none.py").write_text("def hello(payload, helpers):\n    return None\n")
    hint = "the module's task maps: --tasks gpy_first_ok:jobs"
    for spec, problem in [
        ("gpy_first_ok", "--tasks must look like 'module:attribute'"),
        ("gpy_first_ok:registry", "has no attribute 'registry'"),
        ("gpy_first_ok:hello", "must be a TaskRegistry or a dict of identifier -> function"),
    ]:
        error = _worker_error(db, spec)
        assert problem in error and hint in error, error
    error = _worker_error(db, "gpy_first_none:hello")
    assert "the module defines no TaskRegistry or dict of tasks" in error, error
    assert "--tasks gpy_first_none:registry" in error


# -- 8. last_error keeps the traceback ---------------------------------------------------


def _parse_address(text: str) -> str:
    if "@" not in text:
        raise ValueError(f"not an email address: {text!r}")
    return text


def _send(payload: Any, helpers: Any) -> None:
    _parse_address(payload["to"])


async def _send_async(payload: Any, helpers: Any) -> None:
    await asyncio.sleep(0)
    try:
        _parse_address(payload["to"])
    except ValueError as exc:
        raise RuntimeError("could not send") from exc


def _deep(n: int) -> None:
    # A long traceback: each level re-raises, so every level adds a chained traceback.
    try:
        if n == 0:
            raise KeyError("bottom")
        _deep(n - 1)
    except Exception as exc:
        raise RuntimeError(f"level {n}") from exc


def _history_errors(db: TestDatabase) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            sql.SQL("select error from {}.job_attempts order by id").format(
                sql.Identifier(side_schema_for(db.schema))
            )
        ).fetchall()
    return [row[0] for row in rows]


def test_last_error_has_the_message_then_the_traceback(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        sync_id = utils.add_job("send", {"to": "nobody"}).id
        async_id = utils.add_job("send_async", {"to": "nobody"}).id
        deep_id = utils.add_job("deep").id
    run_once(
        db,
        {"send": _send, "send_async": _send_async, "deep": lambda p, h: _deep(100)},
        history=True,
    )
    rows = {row["id"]: row["last_error"] for row in jobs_rows(db)}

    sync_error = rows[sync_id]
    message, _, trace = sync_error.partition("\n\n")
    assert message == "not an email address: 'nobody'"  # the first line, as Node stores it
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: not an email address: 'nobody'"
    assert f'File "{__file__}"' in trace and "in _send" in trace and "in _parse_address" in trace
    assert "execution.py" not in trace and "run_task" not in trace

    async_error = rows[async_id]
    assert async_error.startswith("could not send\n\nTraceback (most recent call last):\n")
    assert "The above exception was the direct cause" in async_error
    assert async_error.endswith("RuntimeError: could not send")
    assert "asyncio" not in async_error and "concurrent" not in async_error

    deep_error = rows[deep_id]
    assert len(deep_error) <= 8000 + 100
    assert deep_error.startswith("level 100\n\nTraceback (most recent call last):\n  ... (")
    assert "lines left out) ..." in deep_error and deep_error.endswith("RuntimeError: level 100")
    assert 'raise RuntimeError(f"level {n}") from exc' in deep_error.splitlines()[-2]

    # The job history's error column holds the same text.
    assert sorted(_history_errors(db)) == sorted(rows.values())


# -- 6. a good crontab is confirmed at start ---------------------------------------------


def test_cron_start_logs_the_items_it_schedules(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    items = parse_crontab("0 4 * * * nightly ?id=nightly_report\n*/15 * * * * poll\n")
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        db.dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    )
    caplog.set_level(logging.INFO, logger="graphile_py.cron")
    with pool:
        for chosen, expected in [
            (items, "Cron: scheduling 2 items (UTC): nightly_report, poll"),
            (items[1:], "Cron: scheduling 1 item (UTC): poll"),
        ]:
            scheduler = CronScheduler(chosen, pool=pool, schema=db.schema)
            scheduler.start()
            try:
                assert scheduler.wait_until_running(30)
            finally:
                scheduler.stop()
            assert expected in caplog.messages, caplog.messages


# -- 7. counts are worded right ----------------------------------------------------------


def test_status_says_1_job_not_1_jobs(db: TestDatabase) -> None:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        job = utils.add_job("only_one")
    code, output = _cli(db, "status")
    assert code == 0 and output.startswith("1 job at "), output
    code, output = _cli(db, "jobs retry", str(job.id))
    assert code == 0 and output.startswith(f"Retried 1 job: {job.id}"), output


# -- 9. connection mistakes say what to fix ----------------------------------------------


@pytest.mark.parametrize(
    ("conninfo", "said", "fix"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/postgres",
            "Connection refused",
            "Nothing accepts connections there: start PostgreSQL, or fix the host and port",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/gpy_no_such_database",
            'database "gpy_no_such_database" does not exist',
            "Create it (createdb gpy_no_such_database, or CREATE DATABASE)",
        ),
        (
            "postgresql://gpy_no_such_role@127.0.0.1:5432/postgres",
            'role "gpy_no_such_role" does not exist',
            "No user gpy_no_such_role on that server",
        ),
        (
            "postgresql://postgres@gpy-no-such-host.invalid/postgres",
            "gpy-no-such-host.invalid",
            "That host name does not resolve from here",
        ),
        (
            "localhost/app",
            'missing "=" after "localhost/app"',
            "A connection string is a URL (postgresql://user:password@host:5432/dbname)",
        ),
    ],
)
def test_connection_mistakes_name_the_fix(conninfo: str, said: str, fix: str) -> None:
    with pytest.raises(ConnectError) as info:
        WorkerUtils(conninfo, connect_timeout=5)
    message = str(info.value)
    assert said in message and fix in message, message
    assert isinstance(info.value.__cause__, psycopg.Error)
    result = CliRunner().invoke(main, ["status", "-c", conninfo])
    assert result.exit_code == 1 and fix in result.stderr, result.output


def test_password_failures_name_the_fix() -> None:
    # The shared server trusts every local user, so libpq's own words stand in here.
    for said, fix in [
        ('password authentication failed for user "app"', "Wrong password for app"),
        ("fe_sendauth: no password supplied", "The server asks for a password"),
    ]:
        error = translate_error(psycopg.OperationalError(said), "Connecting to the database")
        assert isinstance(error, ConnectError) and fix in str(error), error


def test_a_misnamed_option_suggests_the_right_one(db: TestDatabase) -> None:
    with db.connect() as conn:
        with pytest.raises(TypeError) as info:
            add_job(conn, "greet", {}, queueName="mail", schema=db.schema)  # type: ignore[call-arg]
        assert "queueName (did you mean queue_name?)" in str(info.value)
        with pytest.raises(TypeError) as info:
            add_job(conn, "greet", {}, max_retries=3, schema=db.schema)  # type: ignore[call-arg]
        assert "max_retries (did you mean max_attempts?)" in str(info.value)
        assert "the options are flags, job_key, job_key_mode, max_attempts" in str(info.value)
    assert jobs_rows(db) == []


def test_a_task_with_the_wrong_signature_is_refused_before_any_job_runs(
    db: TestDatabase, task_dir: Path
) -> None:
    (task_dir / "gpy_first_sig.py").write_text(
        "def send(payload):\n    return None\n\nregistry = {'send': send}\n"
    )
    error = _worker_error(db, "gpy_first_sig:registry")
    assert (
        "task 'send' in gpy_first_sig:registry must accept two arguments, (payload, helpers),"
        " but send(payload) does not"
    ) in error, error
    with pytest.raises(TaskLoadError, match=r"must accept two arguments"):
        WorkerPool({"send": lambda payload: None}, conninfo=db.dsn)  # type: ignore[arg-type, misc]
    # Extra parameters with defaults, *args and helpers named _ are all fine.
    validate_task_map({"a": lambda p, h, retries=3: None, "b": lambda *args: None})


def test_run_at_given_as_text_is_refused_with_the_fix(db: TestDatabase) -> None:
    with db.connect() as conn:
        for run_at in ("2030-01-01T09:00:00Z", date(2030, 1, 1)):
            with pytest.raises(JobRejected) as info:
                add_job(conn, "greet", {}, run_at=run_at, schema=db.schema)  # type: ignore[arg-type]
            assert str(info.value).startswith("run_at must be a timezone-aware datetime, not")
            assert "datetime.fromisoformat(" in str(info.value)
            with pytest.raises(JobRejected):
                add_jobs(conn, [JobSpec("greet", run_at=run_at)], schema=db.schema)  # type: ignore[arg-type]
    assert jobs_rows(db) == []


def test_session_problems_say_what_to_do(db: TestDatabase) -> None:
    with psycopg.connect(db.dsn) as conn:  # in a transaction, as an application would be
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1 / 0")
        with pytest.raises(DatabaseError) as info:
            add_job(conn, "greet", {}, schema=db.schema)
        assert info.value.sqlstate == "25P02"
        assert "roll the transaction back (conn.rollback())" in str(info.value)
        conn.rollback()
        conn.execute("set transaction read only")
        with pytest.raises(DatabaseError) as info:
            add_job(conn, "greet", {}, schema=db.schema)
        assert info.value.sqlstate == "25006" and "connect to the primary" in str(info.value)
        conn.rollback()
        # Created and dropped inside this transaction: nothing is left on the server.
        role = sql.Identifier(f"gpy_first_hour_{uuid.uuid4().hex[:12]}")
        conn.execute(sql.SQL("create role {}").format(role))
        try:
            conn.execute(sql.SQL("set local role {}").format(role))
            with pytest.raises(DatabaseError) as info:
                add_job(conn, "greet", {}, schema=db.schema)
            assert info.value.sqlstate == "42501" and "lacks a privilege" in str(info.value)
        finally:
            conn.rollback()
    assert jobs_rows(db) == []
