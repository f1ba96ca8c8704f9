"""The side schema: graphile-py's own tables, kept out of the schema Node shares.

The worker schema must stay exactly what graphile-worker's migrations make of it, so the
pool registry (heartbeats, rescue of lost pools) and the job history live in a schema of
their own beside it, with its own ``migrations`` table
(:mod:`graphile_py.db.side_migrations`). Its name derives from the worker schema's
(:func:`side_schema_for`) unless given. Everything except the registry and history works
without it, so a pool asks :func:`side_schema_ready` before using it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from graphile_py.db.migrations import (
    DEFAULT_SCHEMA,
    MAX_IDENTIFIER_BYTES,
    check_identifier,
    quote_identifier,
)
from graphile_py.db.migrations_table import MigrationStatements
from graphile_py.db.side_migrations import load_side_migrations
from graphile_py.db.translate import translate_error
from graphile_py.errors import ConfigurationError

__all__ = [
    "DEFAULT_SIDE_SCHEMA",
    "latest_known_side_migration",
    "side_schema_for",
    "side_schema_ready",
]

#: The side schema beside the default worker schema ``graphile_worker``.
DEFAULT_SIDE_SCHEMA = "graphile_py"

_SUFFIX = "_py"
# "_" + 8 hex digits of the worker schema's hash, before the suffix, when the name is cut.
_HASH_CHARS = 8


def side_schema_for(worker_schema: str, override: str | None = None) -> str:
    """The side schema's name for ``worker_schema``: ``override``, or one derived from it.

    Derived: ``graphile_py`` beside the default ``graphile_worker``, else
    ``<worker_schema>_py`` when that fits PostgreSQL's 63 bytes (and is not
    ``graphile_py``), else the worker schema's name cut (at a character boundary) to make
    room for ``_`` + 8 hex digits of its SHA-256 + ``_py``, so that no two worker schemas
    derive the same side schema.
    Raises :class:`ConfigurationError` for a name PostgreSQL would reject or truncate, and
    for a side schema that is the worker schema itself.
    """
    check_identifier(worker_schema)
    if override is not None:
        check_identifier(override)
        name = override
    elif worker_schema == DEFAULT_SCHEMA:
        name = DEFAULT_SIDE_SCHEMA
    elif (
        len((worker_schema + _SUFFIX).encode("utf-8")) <= MAX_IDENTIFIER_BYTES
        # "graphile" must not share the default queue's side schema.
        and worker_schema + _SUFFIX != DEFAULT_SIDE_SCHEMA
    ):
        name = worker_schema + _SUFFIX
    else:
        digest = hashlib.sha256(worker_schema.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        tail = f"_{digest}{_SUFFIX}"
        room = MAX_IDENTIFIER_BYTES - len(tail)
        # Cut bytes, then drop a partial character at the end: never half a code point.
        head = worker_schema.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        name = head + tail
    if name == worker_schema:
        raise ConfigurationError(
            f"the side schema must not be the worker schema {worker_schema!r}: graphile-py's"
            " own tables are kept out of the schema Node graphile-worker shares"
        )
    return name


def latest_known_side_migration() -> int:
    """The highest side-schema migration number this version of graphile-py ships."""
    return load_side_migrations()[-1].number


def side_schema_ready(conn: psycopg.Connection[Any], side_schema: str) -> bool:
    """True when ``side_schema`` is installed and at least at this graphile-py's revision.

    Only reads, and sends nothing that can fail when the schema is absent, so it is safe
    inside a caller's transaction. False also when the schema has a breaking migration
    newer than this graphile-py knows: its tables may no longer be what we expect.
    """
    table = f"{quote_identifier(side_schema)}.migrations"
    try:
        row = conn.execute(b"select to_regclass(%s) is not null", (table,)).fetchone()
        if row is None or not row[0]:
            return False
        _, latest, latest_breaking = MigrationStatements.for_schema(side_schema).probe_migrations(
            conn
        )
    except psycopg.Error as exc:
        raise translate_error(exc, "Checking the side schema") from exc
    known = latest_known_side_migration()
    if latest is None or latest < known:
        return False
    return latest_breaking is None or latest_breaking <= known
