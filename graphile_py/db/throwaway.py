"""The statements behind the pytest plugin (graphile_py.contrib.pytest).

Throwaway databases (a template migrated once, a clone per test) and the inline mode's
"tell me when this transaction commits": a ``NOTIFY`` to a channel the same connection
listens on is delivered only at commit, and never after a rollback, so psycopg calls our
handler exactly when the jobs become visible to other connections.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from graphile_py.db.translate import map_db_errors

__all__ = [
    "INLINE_CHANNEL",
    "create_database",
    "drop_database",
    "notify_at_commit",
    "notify_at_commit_async",
]

#: The channel of the inline mode's commit signal (the payload is the jobs' ids).
INLINE_CHANNEL = "graphile_py:inline"

_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(INLINE_CHANNEL))
_NOTIFY = "SELECT pg_notify(%s, %s)"


def create_database(admin: psycopg.Connection[Any], name: str, *, template: str | None) -> None:
    """CREATE DATABASE ``name`` (a copy of ``template`` when given) on an autocommit connection."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with map_db_errors(f"Creating the test database {name!r}"):
        admin.execute(query)


def drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    """DROP DATABASE ``name``, disconnecting whoever is still connected (PostgreSQL 13+)."""
    query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with map_db_errors(f"Dropping the test database {name!r}"):
        admin.execute(query)


def notify_at_commit(conn: psycopg.Connection[Any], payload: str) -> None:
    """Have ``conn`` receive ``payload`` on :data:`INLINE_CHANNEL` when it commits."""
    with map_db_errors("Asking for the inline mode's commit signal"):
        conn.execute(_LISTEN)
        conn.execute(_NOTIFY, (INLINE_CHANNEL, payload))


async def notify_at_commit_async(conn: psycopg.AsyncConnection[Any], payload: str) -> None:
    """:func:`notify_at_commit` on an async connection."""
    with map_db_errors("Asking for the inline mode's commit signal"):
        await conn.execute(_LISTEN)
        await conn.execute(_NOTIFY, (INLINE_CHANNEL, payload))
