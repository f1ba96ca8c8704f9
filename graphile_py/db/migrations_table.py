"""The statements on a ``migrations`` table that :mod:`graphile_py.db.migrate` runs.

The worker schema and the side schema each have one, of the same shape, so one set
serves both. They raise psycopg's own errors: whether one means "not installed yet" or
"someone else ran this migration" is for the migrator to decide, from its SQLSTATE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from graphile_py.db.statement_set import Statement, StatementSet

__all__ = ["MIGRATION_ROW_INSERTED", "MigrationStatements"]

#: Added as a note to an error raised after a migration's row was inserted: such an
#: error is a real failure, never "someone else ran this migration".
MIGRATION_ROW_INSERTED = "graphile-py: migration row was inserted"


class MigrationStatements(StatementSet):
    """Probe, bootstrap and record migrations in one schema (worker or side)."""

    probe_sql = Statement(
        "select current_setting('server_version_num')::int as server_version_num,"
        " (select id from {schema}.migrations order by id desc limit 1) as latest,"
        " (select id from {schema}.migrations where breaking order by id desc limit 1)"
        " as latest_breaking"
    )
    bootstrap_sql = Statement(
        "create schema if not exists {schema};"
        " create table if not exists {schema}.migrations("
        "id int primary key, ts timestamptz default now() not null);"
        " alter table {schema}.migrations"
        " add column if not exists breaking boolean not null default false;"
    )
    mark_breaking_sql = Statement(
        "update {schema}.migrations set breaking = true where id = any(%s::int[])"
    )
    insert_migration_sql = Statement(
        "insert into {schema}.migrations (id, breaking) values (%s, %s)"
    )

    def probe_migrations(self, conn: psycopg.Connection[Any]) -> tuple[int, int | None, int | None]:
        """``(server_version_num, latest migration, latest breaking migration)``.

        Raises the raw psycopg error: the caller decides whether it means "not installed".
        """
        row = conn.execute(self.probe_sql, ()).fetchone()
        assert row is not None
        return int(row[0]), row[1], row[2]

    def install_migrations_table(
        self, conn: psycopg.Connection[Any], breaking_numbers: Sequence[int]
    ) -> None:
        """Create the schema and ``migrations`` table if missing; flag the breaking ones."""
        with conn.transaction():
            conn.execute(self.bootstrap_sql, ())
            conn.execute(self.mark_breaking_sql, (list(breaking_numbers),))

    def record_and_apply_migration(
        self,
        conn: psycopg.Connection[Any],
        number: int,
        breaking: bool,
        script: str,
        *,
        announce: bool = True,
    ) -> None:
        """In one transaction: claim the migration's row, run the script, announce it.

        The row goes in first so that a concurrent migrator blocks on it and then fails
        with a unique violation instead of running the script twice. ``announce`` sends
        ``worker:migrate``, which Node workers listen to: only the worker schema's
        migrations are theirs to hear of. Raises raw psycopg errors; a
        :data:`MIGRATION_ROW_INSERTED` note on the error tells whether the claim succeeded.
        """
        with conn.transaction():
            conn.execute(self.insert_migration_sql, (number, breaking))
            try:
                # No parameters: psycopg sends the multi-statement script as a simple query.
                conn.execute(script.encode("utf-8"))
                if announce:
                    conn.execute(
                        b"select pg_notify('worker:migrate', %s)",
                        (
                            json.dumps(
                                {"migrationNumber": number, "breaking": breaking},
                                separators=(",", ":"),
                            ),
                        ),
                    )
            except psycopg.Error as exc:
                exc.add_note(MIGRATION_ROW_INSERTED)
                raise
