"""Injection attempts and the privilege model (issue 5, item 6).

Every string that reaches SQL is a bind parameter or a ``psycopg.sql.Identifier``: the
injection attempts below go through every string option of ``add_job``, ``add_jobs``,
``WorkerUtils``, the worker and the ``schema=`` parameter, come back byte for byte, and
leave every other table alone. A static check keeps f-strings and %-formatting out of
the SQL that graphile-py sends. The privilege model of docs/operations.md is run as
written: a role that may only EXECUTE a SECURITY DEFINER wrapper can enqueue and can read
nothing; a monitoring role reads the ``jobs`` view and no payload.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py import (
    DatabaseError,
    GraphileError,
    InvalidJobKeyMode,
    JobRejected,
    JobSpec,
    WorkerUtils,
    add_job,
    add_jobs,
    migrate,
)
from tests.reliability.helpers import REPO_ROOT, login_role, run_cli
from tests.support import TestDatabase
from tests.support.workers import Recorder, jobs_rows, make_pool

INJECTIONS = [
    "'; drop table public.gpy_victim; --",
    "'); delete from public.gpy_victim; --",
    '"; drop table public.gpy_victim; --',
    '"',
    "'",
    "\\",
    "\\'; select pg_sleep(5); --",
    "$1",
    "$$; drop table public.gpy_victim; $$",
    "%s",
    "%(pool)s",
    "{schema}",
    "/* unterminated",
    "-- comment",
    "ünïcödé 漢字 😀 \u2028 \u202e",
    " leading and trailing spaces ",
    "tab\tnew\nline\rreturn",
]

SCHEMA_INJECTIONS = [
    'gw"; drop table public.gpy_victim; --',
    "gw'; drop table public.gpy_victim; --",
    "gw $1 {schema} :GRAPHILE_WORKER_SCHEMA",
    'ünï "cödé" wörker',
    "back\\slash",
]


# -- a table that must survive, and a snapshot of every relation -----------------------------


def _relations(conn: psycopg.Connection[Any]) -> set[tuple[str, str]]:
    return set(
        conn.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname not like 'pg\\_%'"
            " and n.nspname <> 'information_schema'"
        ).fetchall()
    )


@pytest.fixture
def victim(db: TestDatabase) -> Iterator[None]:
    """public.gpy_victim with one row; afterwards it and every relation are as before."""
    with db.connect() as conn:
        conn.execute("create table public.gpy_victim (x int)")
        conn.execute("insert into public.gpy_victim values (1)")
        before = _relations(conn)
    yield
    _assert_untouched(db, before)


def _assert_untouched(db: TestDatabase, before: set[tuple[str, str]]) -> None:
    with db.connect() as conn:
        assert conn.execute("select x from public.gpy_victim").fetchall() == [(1,)]
        assert _relations(conn) == before


# -- every string option ---------------------------------------------------------------------


def _view_rows(db: TestDatabase) -> dict[int, dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select v.id, v.task_identifier, v.queue_name, v.key, v.flags, v.last_error,"
                " v.locked_by, p.payload::text as payload_text"
                " from {s}.jobs as v join {s}._private_jobs as p using (id)"
            ).format(s=sql.Identifier(db.schema))
        )
        return {row["id"]: row for row in cur.fetchall()}


def test_injection_attempts_through_add_job_and_add_jobs_are_stored_verbatim(
    db: TestDatabase, victim: None
) -> None:
    expected: dict[int, tuple[str, str, str, list[str], object]] = {}
    with db.connect() as conn, WorkerUtils(db.dsn, schema=db.schema) as utils:
        for n, text in enumerate(INJECTIONS):
            payload = {text: text, "list": [text], "nested": {"k": text}}
            flags = [text, f"flag{n}"]
            adders: list[Callable[[str], Any]] = [
                lambda key, text=text, payload=payload, flags=flags: add_job(
                    conn,
                    f"task{text}",
                    payload,
                    queue_name=f"q{text}",
                    job_key=key,
                    job_key_mode="replace",
                    flags=flags,
                    schema=db.schema,
                ),
                lambda key, text=text, payload=payload, flags=flags: add_jobs(
                    conn,
                    [
                        JobSpec(
                            f"task{text}", payload, queue_name=f"q{text}", job_key=key, flags=flags
                        )
                    ],
                    schema=db.schema,
                )[0],
                lambda key, text=text, payload=payload, flags=flags: utils.add_job(
                    f"task{text}", payload, queue_name=f"q{text}", job_key=key, flags=flags
                ),
                lambda key, text=text, payload=payload, flags=flags: utils.add_jobs(
                    [
                        JobSpec(
                            f"task{text}", payload, queue_name=f"q{text}", job_key=key, flags=flags
                        )
                    ]
                )[0],
            ]
            for index, adder in enumerate(adders):
                key = f"{text}#{index}"
                job = adder(key)
                assert (job.task_identifier, job.queue_name, job.key) == (
                    f"task{text}",
                    f"q{text}",
                    key,
                )
                assert job.payload == payload
                expected[job.id] = (f"task{text}", f"q{text}", key, flags, payload)
            with pytest.raises(InvalidJobKeyMode):
                add_job(conn, "t", job_key="k", job_key_mode=text, schema=db.schema)  # type: ignore[arg-type]

    rows = _view_rows(db)
    assert set(rows) == set(expected)
    for job_id, (identifier, queue, key, flags, payload) in expected.items():
        row = rows[job_id]
        assert (row["task_identifier"], row["queue_name"], row["key"]) == (identifier, queue, key)
        assert row["flags"] == dict.fromkeys(flags, True)
        assert row["payload_text"] == _compact(payload)


def _compact(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_injection_attempts_through_worker_utils_and_the_worker(
    db: TestDatabase, victim: None
) -> None:
    ident = sql.Identifier(db.schema)
    ran = Recorder()
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        jobs = {
            text: utils.add_job(f"task{text}", {"text": text}, job_key=text, flags=[text])
            for text in INJECTIONS
        }
        # remove_job: by key, exactly that one.
        first = INJECTIONS[0]
        removed = utils.remove_job(first)
        assert removed is not None and removed.id == jobs[first].id
        assert utils.remove_job(first) is None
        # permanently_fail_jobs: the reason is stored as given.
        for text in INJECTIONS[1:4]:
            [failed] = utils.permanently_fail_jobs([jobs[text].id], reason=text)
            assert failed.last_error == text
        # force_unlock_workers: pool ids are matched as values.
        with utils.connection() as conn:
            for text in INJECTIONS[4:8]:
                conn.execute(
                    sql.SQL(
                        "update {s}._private_jobs set locked_by = %s, locked_at = now()"
                        " where id = %s"
                    ).format(s=ident),
                    (f"pool{text}", jobs[text].id),
                )
        utils.force_unlock_workers([f"pool{text}" for text in INJECTIONS[4:6]])
        locked = {row["id"]: row["locked_by"] for row in jobs_rows(db)}
        assert [locked[jobs[text].id] for text in INJECTIONS[4:8]] == [
            None,
            None,
            f"pool{INJECTIONS[6]}",
            f"pool{INJECTIONS[7]}",
        ]
        utils.force_unlock_workers([f"pool{text}" for text in INJECTIONS[6:8]])
        later = datetime.now(UTC) + timedelta(days=1)
        utils.reschedule_jobs([jobs[INJECTIONS[8]].id], run_at=later, priority=3)
        utils.cleanup(["GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS"], task_identifiers_to_keep=INJECTIONS)
        # The worker: task identifiers and forbidden flags are values too.
        blocked = INJECTIONS[9]
        tasks = {
            f"task{text}": (lambda payload, helpers: ran.add(payload["text"]))
            for text in INJECTIONS
        }
        make_pool(db, tasks, once=True, forbidden_flags=[blocked]).run()

    runnable = set(INJECTIONS[4:]) - {INJECTIONS[8], blocked}
    assert sorted(ran.items) == sorted(runnable)
    left = {row["key"]: row for row in _view_rows(db).values()}
    assert set(left) == {*INJECTIONS[1:4], INJECTIONS[8], blocked}
    assert all(left[text]["last_error"] == text for text in INJECTIONS[1:4])


@pytest.mark.parametrize("schema", SCHEMA_INJECTIONS)
def test_injection_attempts_through_the_schema_name(
    make_db: Callable[..., TestDatabase], schema: str, tmp_path: Path
) -> None:
    target = make_db(schema=schema)
    with target.connect() as conn:
        conn.execute("create table public.gpy_victim (x int)")
        conn.execute("insert into public.gpy_victim values (1)")
    ran = Recorder()
    with WorkerUtils(target.dsn, schema=schema) as utils:  # migrates
        with target.connect() as conn:
            before = _relations(conn)
            assert conn.execute(
                "select count(*) from pg_namespace where nspname = %s", (schema,)
            ).fetchone() == (1,)
            add_job(conn, "direct", {"via": "add_job"}, queue_name="q", schema=schema)
            add_jobs(conn, [JobSpec("direct", {"via": "add_jobs"})], schema=schema)
        kept = utils.add_job("kept", job_key="k")
        utils.add_jobs([JobSpec("direct", {"via": "utils"}, queue_name="q")])
        utils.reschedule_jobs([kept.id], priority=5)
        [failed] = utils.permanently_fail_jobs([kept.id], "given up")
        assert failed.last_error == "given up"
        utils.force_unlock_workers(["pool-x"])
        make_pool(target, {"direct": lambda p, h: ran.add(p["via"])}, once=True).run()
        utils.cleanup(["DELETE_PERMAFAILED_JOBS", "GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS"])

    assert sorted(ran.items) == ["add_job", "add_jobs", "utils"]
    assert jobs_rows(target) == []
    # The command line takes the schema from -s, and from the environment.
    (tmp_path / "sec_tasks.py").write_text("registry = {'direct': lambda p, h: None}\n")
    for args in (
        ("migrate", "-c", target.dsn, "-s", schema),
        ("worker", "-c", target.dsn, "-s", schema, "--tasks", "sec_tasks:registry", "--once"),
        ("unlock", "-c", target.dsn, "-s", schema),
    ):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    _assert_untouched(target, before)


@pytest.mark.parametrize("schema", ["gw%s", "gw%%", "gw%(pool)s"])
def test_a_schema_name_with_a_percent_sign_works(
    make_db: Callable[..., TestDatabase], schema: str
) -> None:
    target = make_db(schema=schema)
    with target.connect() as conn:
        migrate(conn, schema=schema)
        add_job(conn, "t", {"n": 1}, schema=schema)
        names = conn.execute(
            "select nspname from pg_namespace where nspname like 'gw%%' order by nspname"
        ).fetchall()
    # The worker schema and its side schema (side_schema_for: the name + "_py"), each
    # exactly as given: no "%" doubled or lost on the way.
    assert names == [(schema,), (f"{schema}_py",)]
    seen = Recorder()
    make_pool(target, {"t": lambda p, h: seen.add(p)}, once=True).run()
    assert seen.items == [{"n": 1}]


# -- NUL -------------------------------------------------------------------------------------

NUL_OPTIONS = {
    "identifier": {"identifier": "a\x00b"},
    "queue_name": {"queue_name": "q\x00"},
    "job_key": {"job_key": "k\x00"},
    "flags": {"flags": ["f\x00"]},
}


@pytest.mark.parametrize("option", list(NUL_OPTIONS))
def test_a_nul_in_a_string_option_is_refused_cleanly(db: TestDatabase, option: str) -> None:
    arguments: dict[str, Any] = {"identifier": "t"} | NUL_OPTIONS[option]
    identifier = arguments.pop("identifier")
    with psycopg.connect(db.dsn) as conn:
        with pytest.raises(GraphileError, match="NUL"):
            add_job(conn, identifier, schema=db.schema, **arguments)
        assert conn.execute("select 1").fetchone() == (1,)  # the transaction is usable
        conn.commit()
    # add_jobs sends the specs as JSON, where the NUL is \u0000.
    with db.connect() as conn, pytest.raises(JobRejected, match=r"NUL|Unicode escape"):
        add_jobs(conn, [JobSpec(identifier, **arguments)], schema=db.schema)
    assert jobs_rows(db) == []


@pytest.mark.parametrize("option", list(NUL_OPTIONS))
def test_a_nul_in_a_string_option_is_a_rejected_job(db: TestDatabase, option: str) -> None:
    arguments: dict[str, Any] = {"identifier": "t"} | NUL_OPTIONS[option]
    identifier = arguments.pop("identifier")
    with psycopg.connect(db.dsn) as conn:
        with pytest.raises(JobRejected, match="NUL"):
            add_job(conn, identifier, schema=db.schema, **arguments)
        with pytest.raises(JobRejected, match="NUL"):
            add_jobs(conn, [JobSpec(identifier, **arguments)], schema=db.schema)
        assert conn.execute("select 1").fetchone() == (1,)  # nothing was sent


# -- statements are composed, never formatted ------------------------------------------------

_SQL_CALLS = {"execute", "executemany", "SQL", "compose", "c", "copy"}


def _formatted_strings(tree: ast.AST) -> Iterator[ast.AST]:
    """String-building expressions passed directly to a call that sends or composes SQL."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in _SQL_CALLS or not node.args:
            continue
        first = node.args[0]
        for part in ast.walk(first):
            if (
                (
                    isinstance(part, ast.JoinedStr)
                    and any(isinstance(value, ast.FormattedValue) for value in part.values)
                )
                or (
                    isinstance(part, ast.BinOp)
                    and isinstance(part.op, ast.Mod)
                    and isinstance(part.left, ast.Constant)
                    and isinstance(part.left.value, str)
                )
                or (
                    isinstance(part, ast.Call)
                    and isinstance(part.func, ast.Attribute)
                    and part.func.attr == "format"
                    and isinstance(part.func.value, ast.Constant)
                )
            ):
                yield part


def test_no_sql_is_built_with_f_strings_or_percent_formatting() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "graphile_py").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        offenders += [
            f"{path.relative_to(REPO_ROOT)}:{node.lineno}" for node in _formatted_strings(tree)
        ]
    assert offenders == []


def test_the_static_check_catches_formatted_sql() -> None:
    source = (
        "conn.execute(f'select * from {table}')\n"
        "cur.execute('select %s' % value)\n"
        "conn.execute('select {}'.format(value))\n"
        "sql.SQL(f'select {x}')\n"
        "conn.execute(sql.SQL('select {}').format(sql.Identifier(x)))\n"  # fine
        "conn.execute('select %s', (value,))\n"  # fine
    )
    assert len(list(_formatted_strings(ast.parse(source)))) == 4


# -- the privilege model ---------------------------------------------------------------------

OPERATIONS = REPO_ROOT / "docs" / "operations.md"


def _docs_privileges_sql() -> str:
    section = OPERATIONS.read_text().split("## Privileges", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    assert blocks, "docs/operations.md has no SQL in its Privileges section"
    return blocks[0]


def _for_test(text: str, db: TestDatabase, role: str) -> str:
    """The documented SQL for this test's role and worker schema."""
    schema = sql.Identifier(db.schema).as_string(None)
    role_name = sql.Identifier(role).as_string(None)
    return re.sub(r"\bgraphile_worker\.", schema + ".", re.sub(r"\bapp_user\b", role_name, text))


def _denied(conn: psycopg.Connection[Any], query: sql.Composable | str, *params: Any) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
        conn.execute(query, params or None)  # type: ignore[arg-type]
    return str(raised.value)


def test_the_documented_security_definer_wrapper_lets_a_role_enqueue_and_read_nothing(
    db: TestDatabase,
) -> None:
    s = sql.Identifier(db.schema)
    with login_role(db, "gpy_enqueuer") as (role, dsn):
        with db.connect() as owner:
            owner.execute(_for_test(_docs_privileges_sql(), db, role).encode())
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select app.enqueue_welcome_email(42, 'ada@example.com')")
            conn.execute("select app.enqueue_welcome_email(42, 'ada@example.org')")  # replaces
            for query in (
                sql.SQL("select payload from {}._private_jobs").format(s),
                sql.SQL("select * from {}.jobs").format(s),
                sql.SQL("select {}.add_job('anything')").format(s),
                sql.SQL("select {}.remove_job('welcome-email:42')").format(s),
            ):
                assert "permission denied" in _denied(conn, query)
            with pytest.raises(DatabaseError, match="permission denied"):
                add_job(conn, "anything", schema=db.schema)
        [row] = jobs_rows(db)
        assert row["key"] == "welcome-email:42"
        assert row["payload"] == {"user_id": 42, "email": "ada@example.org"}
        # The schema owner's worker runs it.
        seen = Recorder()
        make_pool(db, {"send_welcome_email": lambda p, h: seen.add(p)}, once=True).run()
        assert seen.items == [{"user_id": 42, "email": "ada@example.org"}]


def test_a_generic_wrapper_enqueues_any_task_but_still_reveals_no_payload(
    db: TestDatabase,
) -> None:
    s = sql.Identifier(db.schema)
    with login_role(db, "gpy_enqueuer") as (role, dsn):
        r = sql.Identifier(role)
        with db.connect() as owner:
            owner.execute("create schema if not exists app")
            owner.execute(
                sql.SQL(
                    "create function app.enqueue(identifier text, payload json)"
                    " returns bigint language sql volatile security definer"
                    " set search_path = pg_catalog, pg_temp"
                    " as $$ select (j).id from {s}.add_job(identifier, payload) as j $$"
                ).format(s=s)
            )
            owner.execute("revoke all on function app.enqueue(text, json) from public")
            owner.execute(sql.SQL("grant usage on schema app to {}").format(r))
            owner.execute(
                sql.SQL("grant execute on function app.enqueue(text, json) to {}").format(r)
            )
        secret = {"card": "4111 1111 1111 1111"}
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "select app.enqueue(%s, %s::json)", (INJECTIONS[0], _compact(secret))
            ).fetchone()
            assert row is not None and isinstance(row[0], int)
            for query in (
                sql.SQL("select payload from {}._private_jobs").format(s),
                sql.SQL("select count(*) from {}._private_jobs").format(s),
                sql.SQL("select * from {}.jobs").format(s),
            ):
                _denied(conn, query)
        [job] = jobs_rows(db)
        assert (job["id"], job["payload"]) == (row[0], secret)
        assert jobs_rows(db, "true")[0]["task_id"] is not None


def test_a_monitoring_role_reads_the_jobs_view_but_no_payload_and_cannot_enqueue(
    db: TestDatabase,
) -> None:
    s = sql.Identifier(db.schema)
    with db.connect() as conn:
        add_job(conn, "secret_task", {"secret": True}, schema=db.schema)
    with login_role(db, "gpy_monitoring") as (role, dsn):
        r = sql.Identifier(role)
        with db.connect() as owner:  # as documented
            owner.execute(sql.SQL("grant usage on schema {} to {}").format(s, r))
            owner.execute(sql.SQL("grant select on {}.jobs to {}").format(s, r))
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute(
                sql.SQL("select task_identifier from {}.jobs").format(s)
            ).fetchall() == [("secret_task",)]
            with pytest.raises(psycopg.errors.UndefinedColumn):
                conn.execute(sql.SQL("select payload from {}.jobs").format(s))
            _denied(conn, sql.SQL("select payload from {}._private_jobs").format(s))
            _denied(conn, sql.SQL("select {}.add_job('sneaky')").format(s))
            _denied(conn, sql.SQL("select {}.complete_jobs(array[1::bigint])").format(s))
    assert [row["task_id"] is not None for row in jobs_rows(db)] == [True]
