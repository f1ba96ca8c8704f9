"""graphile-py's optional per-task index on the jobs table, for a backlog of other tasks' jobs.

Node graphile-worker's only index for claiming, ``jobs_main_index``, is ordered by
``(priority, run_at)``. A pool that serves some task identifiers steps over every due
job of the others before it finds one of its own: with a million due jobs of a task no
Python pool serves (a Node backlog), each claim reads a million index entries. This
index leads with ``task_id``, so a claim reads only its own tasks' entries
(:mod:`graphile_py.db.claims` claims per task when the pool finds it valid at start).

It is never installed by default: it costs every insert and update of a job one more
index entry, Node neither needs nor knows it, and it is the one object of ours in the
worker schema (an index must live in its table's schema). Its name says it is ours;
nothing Node creates is altered. Installed and dropped ``CONCURRENTLY`` by default, so
job inserts and claims go on while it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from graphile_py.db.migrations import check_identifier
from graphile_py.db.translate import map_db_errors
from graphile_py.errors import ConfigurationError, SchemaNotInstalled

__all__ = [
    "TASK_INDEX_COLUMNS",
    "TASK_INDEX_NAME",
    "TaskIndexStatus",
    "drop_task_index",
    "install_task_index",
    "task_index_status",
    "task_index_usable",
]

#: The index's name in the worker schema: the prefix marks it as graphile-py's.
TASK_INDEX_NAME = "graphile_py_jobs_task_index"

#: What ``pg_get_indexdef`` says after the table's name, for the index as we build it.
TASK_INDEX_COLUMNS = (
    "USING btree (task_id, priority, run_at) INCLUDE (id, job_queue_id) WHERE (is_available = true)"
)

_STATUS_SQL = (
    "select i.indisvalid and i.indisready and i.indislive, pg_get_indexdef(i.indexrelid),"
    " pg_relation_size(i.indexrelid)"
    " from pg_index i join pg_class ic on ic.oid = i.indexrelid"
    " where i.indrelid = %s::regclass and ic.relname = %s"
)


@dataclass(frozen=True, slots=True)
class TaskIndexStatus:
    """Whether the per-task index is there, and whether claims can use it."""

    #: The worker schema whose ``_private_jobs`` table was looked at.
    schema: str
    #: True when an index of this name exists on the jobs table (valid or not).
    exists: bool
    #: True when it is built and the planner may use it (a failed ``CONCURRENTLY``
    #: build leaves an INVALID index behind, which costs writes and helps no claim).
    valid: bool
    #: True when its columns and condition are the ones graphile-py builds.
    matches: bool
    #: Its size on disk in bytes, when it exists.
    size_bytes: int | None
    #: Its definition as PostgreSQL prints it, when it exists.
    definition: str | None
    #: The index's name.
    name: str = TASK_INDEX_NAME

    @property
    def usable(self) -> bool:
        """True when a pool starting now would claim through it."""
        return self.exists and self.valid and self.matches


def _jobs_table(schema: str) -> str:
    check_identifier(schema)
    return sql.SQL("{}._private_jobs").format(sql.Identifier(schema)).as_string(None)


def task_index_status(conn: psycopg.Connection[Any], schema: str) -> TaskIndexStatus:
    """Look the index up. Raises :class:`SchemaNotInstalled` when the jobs table is absent."""
    table = _jobs_table(schema)
    with map_db_errors("Checking the per-task index"):
        found = conn.execute(b"select to_regclass(%s) is not null", (table,)).fetchone()
        if found is None or not found[0]:
            raise SchemaNotInstalled(
                f"there is no {table} table: the worker schema {schema!r} is not installed"
                " in this database (run 'graphile-py migrate', or check --schema)",
                schema=schema,
            )
        row = conn.execute(_STATUS_SQL.encode(), (table, TASK_INDEX_NAME)).fetchone()
    if row is None:
        return TaskIndexStatus(
            schema=schema,
            exists=False,
            valid=False,
            matches=False,
            size_bytes=None,
            definition=None,
        )
    valid, definition, size = row
    return TaskIndexStatus(
        schema=schema,
        exists=True,
        valid=bool(valid),
        matches=str(definition).endswith(" " + TASK_INDEX_COLUMNS),
        size_bytes=int(size),
        definition=str(definition),
    )


def task_index_usable(conn: psycopg.Connection[Any], schema: str) -> bool:
    """True when the index is there, valid and ours; False also when the schema is absent.

    Read-only, so safe inside a caller's transaction (a pool asks it at start).
    """
    try:
        return task_index_status(conn, schema).usable
    except SchemaNotInstalled:
        return False


def install_task_index(
    conn: psycopg.Connection[Any], schema: str, *, concurrently: bool = True
) -> tuple[TaskIndexStatus, bool]:
    """Build the index unless a valid one is there; return its status and whether it was built.

    An INVALID index left by a failed concurrent build, or one of this name with other
    columns, is dropped and built again. ``concurrently`` (the default) lets job inserts
    and claims go on during the build; without it the build is faster but blocks every
    insert and update of a job until it ends. ``conn`` must be in autocommit mode for a
    concurrent build (PostgreSQL refuses it inside a transaction).
    """
    _check_autocommit(conn, concurrently)
    before = task_index_status(conn, schema)
    if before.usable:
        return before, False
    if before.exists:
        drop_task_index(conn, schema, concurrently=concurrently)
    statement = sql.SQL("create index {} if not exists {} on {}.{} {}").format(
        sql.SQL("concurrently") if concurrently else sql.SQL(""),
        sql.Identifier(TASK_INDEX_NAME),
        sql.Identifier(schema),
        sql.Identifier("_private_jobs"),
        sql.SQL(TASK_INDEX_COLUMNS.replace("USING", "using", 1)),
    )
    with map_db_errors("Building the per-task index"):
        conn.execute(statement)
    after = task_index_status(conn, schema)
    return after, True


def drop_task_index(
    conn: psycopg.Connection[Any], schema: str, *, concurrently: bool = True
) -> bool:
    """Drop the index if it exists (valid or not); return True if it did.

    ``concurrently`` (the default) waits for running claims instead of blocking them.
    Pools that started with the index keep their claim statement, which stays correct
    without it (it is only slower); restart them to go back to the plain claim.
    """
    _check_autocommit(conn, concurrently)
    if not task_index_status(conn, schema).exists:
        return False
    statement = sql.SQL("drop index {} if exists {}.{}").format(
        sql.SQL("concurrently") if concurrently else sql.SQL(""),
        sql.Identifier(schema),
        sql.Identifier(TASK_INDEX_NAME),
    )
    with map_db_errors("Dropping the per-task index"):
        conn.execute(statement)
    return True


def _check_autocommit(conn: psycopg.Connection[Any], concurrently: bool) -> None:
    if concurrently and not conn.autocommit:
        raise ConfigurationError(
            "building or dropping the per-task index concurrently needs a connection in"
            " autocommit mode (PostgreSQL refuses it inside a transaction)"
        )
