"""The side schema on real databases: installed beside the worker schema, or absent.

``migrate()`` runs the side schema's migrations with the worker schema's discipline
(concurrent migrators, breaking flags, refusal of a newer breaking revision), never
announces them to Node, and everything but the registry and history works without it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import (
    ConfigurationError,
    IncompatibleSchema,
    Inspector,
    WorkerOptions,
    WorkerPool,
    WorkerUtils,
    add_job,
    migrate,
)
from graphile_py.cli import main
from graphile_py.db.side_migrations import load_side_migrations
from graphile_py.db.side_schema import (
    latest_known_side_migration,
    side_schema_for,
    side_schema_ready,
)
from tests.support import TestDatabase, unique_name


def side_of(database: TestDatabase) -> str:
    return side_schema_for(database.schema)


def side_migrations(conn: psycopg.Connection[Any], side: str) -> list[tuple[int, bool]]:
    return conn.execute(
        sql.SQL("select id, breaking from {}.migrations order by id").format(sql.Identifier(side))
    ).fetchall()


def tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind = 'r' order by 1",
        (schema,),
    ).fetchall()
    return [row[0] for row in rows]


def drop_side_schema(database: TestDatabase) -> None:
    with database.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(side_of(database))))


#: Every side migration this graphile-py ships, none breaking.
SIDE_NUMBERS = [migration.number for migration in load_side_migrations()]
ALL_SIDE_MIGRATIONS = [(number, False) for number in SIDE_NUMBERS]
assert list(range(1, len(SIDE_NUMBERS) + 1)) == SIDE_NUMBERS


def test_migrate_installs_the_side_schema_without_telling_node(empty_db: TestDatabase) -> None:
    side = side_of(empty_db)
    with empty_db.connect() as listener, empty_db.connect() as conn:
        listener.execute('LISTEN "worker:migrate"')
        report = migrate(conn, schema=empty_db.schema)
        notes = [note.payload for note in listener.notifies(timeout=1.0)]
        assert tables(conn, side) == ["job_attempts", "migrations", "pools"]
        assert side_migrations(conn, side) == ALL_SIDE_MIGRATIONS
        assert side_schema_ready(conn, side)
    assert report.side_schema == side
    assert report.side_previous is None and list(report.side_applied) == SIDE_NUMBERS
    # Only the worker schema's twenty migrations are announced on Node's channel.
    assert [json.loads(payload)["migrationNumber"] for payload in notes] == list(range(1, 21))

    with empty_db.connect() as conn:
        again = migrate(conn, schema=empty_db.schema)
    assert (again.side_previous, again.side_applied, again.warnings) == (SIDE_NUMBERS[-1], (), ())


def test_concurrent_migrators_install_the_side_schema_once(db: TestDatabase) -> None:
    # The worker schema is current; every migrator races on the side schema only.
    drop_side_schema(db)
    errors: list[BaseException] = []
    applied: list[tuple[int, ...]] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        try:
            with db.connect() as conn:
                barrier.wait()
                report = migrate(conn, schema=db.schema)
                assert report.applied == ()
                applied.append(report.side_applied)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(applied) == 8
    assert sorted(n for report in applied for n in report) == SIDE_NUMBERS
    with db.connect() as conn:
        assert side_migrations(conn, side_of(db)) == ALL_SIDE_MIGRATIONS


def test_concurrent_migrators_on_a_fresh_database_install_both_once(
    empty_db: TestDatabase,
) -> None:
    errors: list[BaseException] = []
    reports: list[Any] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        try:
            with empty_db.connect() as conn:
                barrier.wait()
                reports.append(migrate(conn, schema=empty_db.schema))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(n for report in reports for n in report.applied) == list(range(1, 21))
    assert sorted(n for report in reports for n in report.side_applied) == SIDE_NUMBERS


def test_a_newer_breaking_side_migration_is_refused(db: TestDatabase) -> None:
    side = side_of(db)
    newer = latest_known_side_migration() + 1
    with db.connect() as conn:
        conn.execute(
            sql.SQL("insert into {}.migrations (id, breaking) values (%s, true)").format(
                sql.Identifier(side)
            ),
            (newer,),
        )
        assert not side_schema_ready(conn, side)
        with pytest.raises(IncompatibleSchema, match=f"breaking migration {newer}") as raised:
            migrate(conn, schema=db.schema)
    assert raised.value.exit_code == 57
    assert "side schema" in str(raised.value)

    result = CliRunner().invoke(main, ["migrate", "-c", db.dsn, "--schema", db.schema])
    assert result.exit_code == 57, result.output
    assert f"breaking migration {newer}" in result.output


def test_a_newer_non_breaking_side_migration_is_a_warning(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    side = side_of(db)
    newer = latest_known_side_migration() + 1
    with db.connect() as conn:
        conn.execute(
            sql.SQL("insert into {}.migrations (id, breaking) values (%s, false)").format(
                sql.Identifier(side)
            ),
            (newer,),
        )
        assert side_schema_ready(conn, side)
        with caplog.at_level(logging.WARNING, logger="graphile_py.migrate"):
            report = migrate(conn, schema=db.schema)
    assert len(report.warnings) == 1
    assert f"side schema {side!r} at revision {newer}" in report.warnings[0]
    assert f"revision {newer}" in caplog.text
    assert report.side_previous == newer and report.side_applied == ()


def test_an_explicit_side_schema_from_the_library_and_the_cli(db: TestDatabase) -> None:
    with db.connect() as conn:
        report = migrate(conn, schema=db.schema, side_schema="Our side %s")
        assert list(report.side_applied) == SIDE_NUMBERS and report.applied == ()
        assert side_schema_ready(conn, "Our side %s")

    result = CliRunner().invoke(
        main, ["migrate", "-c", db.dsn, "--schema", db.schema, "--side-schema", "cli side"]
    )
    assert result.exit_code == 0, result.output
    # The last two lines (the log lines before them go to stderr).
    assert result.output.splitlines()[-2:] == [
        f"Schema {db.schema!r} is up to date (migrations applied: none needed).",
        "Side schema 'cli side' is up to date (migrations applied:"
        f" {', '.join(map(str, SIDE_NUMBERS))}).",
    ]
    result = CliRunner().invoke(main, ["migrate", "-c", db.dsn, "--schema", db.schema])
    assert result.exit_code == 0, result.output
    assert f"Side schema {side_of(db)!r} is up to date (migrations applied: none needed)." in (
        result.output
    )


def test_a_side_schema_equal_to_the_worker_schema_is_refused(empty_db: TestDatabase) -> None:
    with empty_db.connect() as conn:
        with pytest.raises(ConfigurationError, match="must not be the worker schema"):
            migrate(conn, schema=empty_db.schema, side_schema=empty_db.schema)
        # Refused before anything was created.
        assert tables(conn, empty_db.schema) == []
    result = CliRunner().invoke(
        main,
        ["migrate", "-c", empty_db.dsn, "-s", empty_db.schema, "--side-schema", empty_db.schema],
    )
    assert result.exit_code == 1
    assert "must not be the worker schema" in result.output


def test_side_schema_ready_reads_without_disturbing_a_transaction(db: TestDatabase) -> None:
    side = side_of(db)
    with psycopg.connect(db.dsn) as conn:  # not autocommit: inside a transaction
        conn.execute("select 1")
        assert side_schema_ready(conn, side)
        assert not side_schema_ready(conn, "no such schema")
        assert conn.execute("select 2").fetchone() == (2,)  # the transaction is not aborted
    with db.connect() as conn:
        conn.execute(
            sql.SQL("delete from {}.migrations").format(sql.Identifier(side))
        )  # installed, but older than this graphile-py
        assert not side_schema_ready(conn, side)


def test_a_database_without_the_side_schema_still_works(db: TestDatabase) -> None:
    drop_side_schema(db)
    ran: list[int] = []
    with db.connect() as conn:
        assert not side_schema_ready(conn, side_of(db))
        job = add_job(conn, "plain", {"n": 1}, schema=db.schema)
        add_job(conn, "plain", {"n": 2}, queue_name="q", schema=db.schema)
    # The read-only commands look at the worker schema alone.
    with WorkerUtils(db.dsn, schema=db.schema, run_migrations=False) as utils:
        Inspector(utils).check_schema()
        assert Inspector(utils).status().totals.ready == 2
    result = CliRunner().invoke(main, ["status", "-c", db.dsn, "-s", db.schema])
    assert result.exit_code == 0, result.output

    def plain(payload: Any, helpers: Any) -> None:
        ran.append(payload["n"])

    options = WorkerOptions(schema=db.schema)
    pool = WorkerPool({"plain": plain}, conninfo=db.dsn, options=options, once=True)
    assert pool.run() == 0
    assert sorted(ran) == [1, 2]
    with db.connect() as conn:
        assert not side_schema_ready(conn, side_of(db))  # nothing but migrate installs it
        left = conn.execute(
            sql.SQL("select count(*) from {}.jobs").format(sql.Identifier(db.schema))
        ).fetchone()
    assert left == (0,) and job.id is not None


def test_a_role_that_may_not_create_schemas_still_migrates_and_runs(
    db: TestDatabase, worker_schema: str
) -> None:
    """The worker schema was installed (before graphile-py had a side schema) by an admin
    for an application role without CREATE on the database. After the upgrade the role's
    migrate() warns about the side schema instead of failing, and its pool runs jobs
    (without heartbeats, under the 4-hour rule)."""
    drop_side_schema(db)
    role = unique_name("gpy_app").lower()
    with psycopg.connect(db.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        # The role owns the queue, as after an install it ran while it still had CREATE
        # (graphile-worker's tables have row security that only their owner bypasses).
        body = (
            "do $$ declare item record; begin"
            " execute format('alter schema %s owner to %I', {schema}, {role});"
            " for item in select c.oid::regclass as name, c.relkind from pg_class c"
            " where c.relnamespace = {schema}::regnamespace and c.relkind in ('r', 'v') loop"
            " execute format('alter %s %s owner to %I', case item.relkind when 'r'"
            " then 'table' else 'view' end, item.name, {role}); end loop;"
            " for item in select p.oid::regprocedure as name from pg_proc p"
            " where p.pronamespace = {schema}::regnamespace loop"
            " execute format('alter routine %s owner to %I', item.name, {role});"
            " end loop; end $$"
        )
        admin.execute(
            sql.SQL(body).format(
                schema=sql.Literal(sql.Identifier(worker_schema).as_string(None)),
                role=sql.Literal(role),
            )
        )
    try:
        conninfo = psycopg.conninfo.make_conninfo(db.dsn, user=role)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            report = migrate(conn, schema=worker_schema)
            add_job(conn, "t", {"n": 1}, schema=worker_schema)
        assert (report.applied, report.side_applied) == ((), ())
        assert any("Could not install graphile-py's side schema" in w for w in report.warnings)
        with psycopg.connect(db.dsn) as conn:
            assert not side_schema_ready(conn, side_of(db))
        seen: list[Any] = []
        pool = WorkerPool(
            {"t": lambda payload, helpers: seen.append(payload)},
            conninfo=conninfo,
            options=WorkerOptions(schema=worker_schema),
            once=True,
        )
        assert pool.run() == 0
        assert seen == [{"n": 1}]
    finally:
        with psycopg.connect(db.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(role)))
        other = psycopg.conninfo.make_conninfo(db.dsn, dbname="postgres")
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
