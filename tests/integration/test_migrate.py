"""The migration runner on real databases: fresh, repeated, concurrent, too new, legacy."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import (
    IncompatibleSchema,
    LockedJobsBlockMigration,
    add_job,
    latest_known_migration,
    migrate,
)
from graphile_py.cli import main
from graphile_py.db.side_schema import (
    latest_known_side_migration,
    side_schema_for,
    side_schema_ready,
)
from tests.support import TestDatabase

BREAKING = {1, 3, 11, 13, 14, 16, 19}


def _migrations(conn: psycopg.Connection, schema: str) -> list[tuple[int, bool]]:
    return conn.execute(
        sql.SQL("select id, breaking from {}.migrations order by id").format(sql.Identifier(schema))
    ).fetchall()


def test_fresh_install_records_every_migration_and_announces_it(empty_db: TestDatabase) -> None:
    with empty_db.connect() as listener, empty_db.connect() as conn:
        listener.execute('LISTEN "worker:migrate"')
        report = migrate(conn, schema=empty_db.schema)
        notes = list(listener.notifies(timeout=1.0))

    assert report.previous is None
    assert report.applied == tuple(range(1, 21)) == tuple(range(1, latest_known_migration() + 1))
    with empty_db.connect() as conn:
        assert _migrations(conn, empty_db.schema) == [(n, n in BREAKING) for n in range(1, 21)]
    payloads = [note.payload for note in notes if note.channel == "worker:migrate"]
    assert payloads == [
        json.dumps({"migrationNumber": n, "breaking": n in BREAKING}, separators=(",", ":"))
        for n in range(1, 21)
    ]


def test_migrate_again_changes_nothing(db: TestDatabase) -> None:
    with db.connect() as conn:
        for _ in range(3):
            report = migrate(conn, schema=db.schema)
            assert report.previous == 20 and report.applied == () and report.warnings == ()
        assert add_job(conn, "works", schema=db.schema).id is not None


def test_concurrent_migrators_all_succeed(empty_db: TestDatabase) -> None:
    errors: list[BaseException] = []
    applied: list[tuple[int, ...]] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        try:
            with empty_db.connect() as conn:
                barrier.wait()
                applied.append(migrate(conn, schema=empty_db.schema).applied)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    # Each migration ran exactly once across all migrators.
    assert sorted(n for report in applied for n in report) == list(range(1, 21))
    with empty_db.connect() as conn:
        assert len(_migrations(conn, empty_db.schema)) == 20


def test_newer_non_breaking_migration_is_a_warning(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL("insert into {}.migrations (id, breaking) values (21, false)").format(
                sql.Identifier(db.schema)
            )
        )
        with caplog.at_level(logging.WARNING, logger="graphile_py.migrate"):
            report = migrate(conn, schema=db.schema)
    assert report.warnings and "revision 21" in report.warnings[0]
    assert "revision 21" in caplog.text


def test_newer_breaking_migration_is_refused(db: TestDatabase) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.migrations (id, breaking) values (21, false), (22, true)"
            ).format(sql.Identifier(db.schema))
        )
        with pytest.raises(IncompatibleSchema, match="breaking migration 22") as raised:
            migrate(conn, schema=db.schema)
    assert raised.value.exit_code == 57

    result = CliRunner().invoke(main, ["migrate", "-c", db.dsn, "--schema", db.schema])
    assert result.exit_code == 57
    assert "breaking migration 22" in result.output


def test_legacy_migrations_table_without_breaking_column_is_taken_over(
    empty_db: TestDatabase,
) -> None:
    schema = empty_db.schema
    with empty_db.connect() as conn:
        migrate(conn, schema=schema, target=1)
        ident = sql.Identifier(schema)
        conn.execute(sql.SQL("alter table {}.migrations drop column breaking").format(ident))
        report = migrate(conn, schema=schema)
        assert report.applied == tuple(range(2, 21))
        assert report.skipped == (1,)
        rows = dict(_migrations(conn, schema))
    assert rows[1] is True and rows[2] is False and rows[11] is True


def test_migration_11_refuses_to_run_with_locked_jobs(empty_db: TestDatabase) -> None:
    schema = empty_db.schema
    with empty_db.connect() as conn:
        migrate(conn, schema=schema, target=10)
        conn.execute(sql.SQL("select {}.add_job('locked_task')").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("update {}.jobs set locked_at = now(), locked_by = 'someone'").format(
                sql.Identifier(schema)
            )
        )
        with pytest.raises(LockedJobsBlockMigration, match="migration 11") as raised:
            migrate(conn, schema=schema)
        assert isinstance(raised.value.__cause__, psycopg.errors.DivisionByZero)
        assert max(n for n, _ in _migrations(conn, schema)) == 10


@pytest.mark.parametrize(
    "schema", ['My "odd" schema', "ünïcödé wörker", "with space", "back\\slash", "x" * 63]
)
def test_awkward_schema_names(make_db: Callable[..., TestDatabase], schema: str) -> None:
    target = make_db(schema=schema)
    with target.connect() as conn:
        report = migrate(conn, schema=schema)
        assert report.applied == tuple(range(1, 21))
        # The side schema's name derives from the awkward one (cut and hashed at 63 bytes).
        assert report.side_schema == side_schema_for(schema) != schema
        assert report.side_applied == tuple(range(1, latest_known_side_migration() + 1))
        assert side_schema_ready(conn, report.side_schema)
        job = add_job(conn, "task", {"a": 1}, queue_name="q", schema=schema)
        row = conn.execute(
            sql.SQL("select task_identifier, queue_name from {}.jobs where id = %s").format(
                sql.Identifier(schema)
            ),
            (job.id,),
        ).fetchone()
    assert row == ("task", "q")


def test_migrate_refuses_to_run_inside_a_transaction(db: TestDatabase) -> None:
    from graphile_py import ConfigurationError

    with psycopg.connect(db.dsn) as conn:
        conn.execute("select 1")
        with pytest.raises(ConfigurationError, match="inside a transaction"):
            migrate(conn, schema=db.schema)
