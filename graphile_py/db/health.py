"""The readiness probe's one query: which migrations the worker schema has.

Read-only, so a probe never installs or changes anything (unlike
:func:`graphile_py.db.migrate.migrate`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors

__all__ = ["HealthStatements", "SchemaVersion", "schema_version"]

#: ``(latest migration, latest breaking migration)``; both None when the table is empty.
SchemaVersion = tuple[int | None, int | None]


class HealthStatements(StatementSet):
    """The readiness probe's statement for one worker schema."""

    version_sql = Statement(
        "select max(id), max(id) filter (where breaking) from {schema}.migrations"
    )


def schema_version(conn: psycopg.Connection[Any], schema: str) -> SchemaVersion:
    """The newest migration recorded in ``schema``, and the newest breaking one.

    Raises :class:`graphile_py.errors.DatabaseError` (``sqlstate`` ``42P01`` when the
    schema or its migrations table does not exist) or
    :class:`graphile_py.errors.ConnectError`.
    """
    with map_db_errors("Reading the schema version"):
        row = conn.execute(HealthStatements.for_schema(schema).version_sql, ()).fetchone()
    assert row is not None
    return row[0], row[1]
