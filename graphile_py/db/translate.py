"""The one boundary where psycopg's errors become graphile-py's, and pool checkouts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
import psycopg.errors

from graphile_py.errors import (
    ConnectError,
    DatabaseError,
    InvalidJobKeyMode,
    JobRejected,
    SchemaNotInstalled,
)

__all__ = [
    "CONSTRAINT_MESSAGES",
    "ConnectionSource",
    "borrow",
    "map_db_errors",
    "translate_error",
]

# What a violated constraint means, in the words of someone adding a job.
CONSTRAINT_MESSAGES = {
    "tasks_identifier_check": "the task identifier is longer than 128 characters",
    "job_queues_queue_name_check": "the queue name is longer than 128 characters",
    "jobs_key_check": "the job key must be 1 to 512 characters long",
    "jobs_max_attempts_check": "max_attempts must be at least 1",
}

# What PostgreSQL says when a statement names a schema, table or function that is not
# there: the schema was never installed in this database, or its name is wrong.
_MISSING_OBJECT = {
    "3F000": re.compile(r'schema "(?P<schema>.+)" does not exist'),
    "42P01": re.compile(r'relation "(?P<schema>.+)\.(?P<name>[^."]+)" does not exist'),
    "42883": re.compile(r"function (?P<schema>[^\s(]+)\.(?P<name>\w+)\(.*does not exist"),
}


class ConnectionSource(Protocol):
    """What lends connections: a psycopg_pool ``ConnectionPool``, or a ``ConnectionLease``."""

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]: ...

    def putconn(self, conn: psycopg.Connection[Any]) -> None: ...

    def check(self) -> None: ...


@contextmanager
def borrow(pool: ConnectionSource) -> Iterator[psycopg.Connection[Any]]:
    """Check a connection out of ``pool`` for the block, translating pool timeouts."""
    with map_db_errors("Getting a database connection"):
        conn = pool.getconn()
    lost = False
    try:
        yield conn
    except (ConnectError, psycopg.OperationalError):
        lost = conn.broken or conn.closed
        raise
    finally:
        pool.putconn(conn)  # a broken connection is discarded here
        if lost:
            # The server probably closed every connection (a restart, a failover): test
            # the idle ones now, rather than let each caller fail on one in turn.
            pool.check()


@contextmanager
def map_db_errors(action: str, *, adding_jobs: bool = False) -> Iterator[None]:
    """Translate psycopg errors raised inside the block into graphile-py errors.

    ``action`` says what was being done, for the message. With ``adding_jobs`` errors that
    mean "this job is not acceptable" become :class:`JobRejected`.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise translate_error(exc, action, adding_jobs=adding_jobs) from exc


def translate_error(exc: psycopg.Error, action: str, *, adding_jobs: bool = False) -> Exception:
    """The graphile-py error that stands for ``exc`` (to be raised ``from exc``)."""
    sqlstate = exc.sqlstate
    diag_message = exc.diag.message_primary or str(exc).strip()
    constraint = exc.diag.constraint_name
    if sqlstate == "GWBKM":
        return InvalidJobKeyMode(sqlstate=sqlstate)
    advised = _advised(action, diag_message, sqlstate, constraint)
    if advised is not None:
        return advised
    if adding_jobs and sqlstate is not None and sqlstate[:2] in {"22", "23", "21"}:
        reason = CONSTRAINT_MESSAGES.get(constraint or "", diag_message)
        return JobRejected(
            f"{action} failed: {reason} [{sqlstate}]", sqlstate=sqlstate, constraint=constraint
        )
    if isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable
    ):
        return ConnectError(f"{action} failed: {diag_message}", sqlstate=sqlstate)
    suffix = f" [{sqlstate}]" if sqlstate else ""
    return DatabaseError(
        f"{action} failed: {diag_message}{suffix}", sqlstate=sqlstate, constraint=constraint
    )


def _advised(
    action: str, diag_message: str, sqlstate: str | None, constraint: str | None
) -> DatabaseError | None:
    """The error, with what to do, for mistakes a first-time user makes; else None."""
    missing = _MISSING_OBJECT.get(sqlstate or "")
    found = missing.fullmatch(diag_message) if missing else None
    if found is not None:
        return _not_installed(action, found, diag_message, sqlstate)
    advice = _STATE_HINTS.get(sqlstate or "")
    if advice is not None:
        return DatabaseError(
            f"{action} failed: {diag_message} [{sqlstate}]\n  {advice}",
            sqlstate=sqlstate,
            constraint=constraint,
        )
    # Only errors of connecting: libpq's own (no SQLSTATE), or 08, 28 and 3D.
    connecting = sqlstate is None or sqlstate[:2] in {"08", "28", "3D"}
    hint = _connection_hint(diag_message) if connecting else None
    if hint is not None:
        return ConnectError(f"{action} failed: {diag_message}\n  {hint}", sqlstate=sqlstate)
    return None


# What to do about errors whose cause is the caller's session, not the job.
_STATE_HINTS = {
    "25P02": "An earlier statement in this transaction failed, so PostgreSQL ignores the"
    " rest: roll the transaction back (conn.rollback()) and add the job in a new one.",
    "25006": "This session is read-only (a standby, or default_transaction_read_only):"
    " connect to the primary to add or change jobs.",
    "42501": "The database role lacks a privilege on the worker schema: grant it, or run"
    " as a role that has it (docs/operations.md, Privileges).",
}

# libpq's messages for the usual connection mistakes, and the fix. WHERE is where a
# connection string comes from, for the command line and for code.
_WHERE = "the connection string (-c/--connection, DATABASE_URL, or the conninfo you passed)"
_CONNECTION_HINTS = [
    (
        re.compile(r'database "(.+)" does not exist'),
        f"Create it (createdb {{0}}, or CREATE DATABASE) or fix the database name in {_WHERE}.",
    ),
    (
        re.compile(r'role "(.+)" does not exist'),
        f"No user {{0}} on that server: fix the user in {_WHERE}, or create the role.",
    ),
    (
        re.compile(r'password authentication failed for user "(.+)"'),
        f"Wrong password for {{0}}: check the password in {_WHERE}, PGPASSWORD or ~/.pgpass.",
    ),
    (
        re.compile(r"no password supplied|fe_sendauth"),
        f"The server asks for a password: give it in {_WHERE}"
        " (postgresql://user:password@host/db), PGPASSWORD or ~/.pgpass.",
    ),
    (
        re.compile(r"Connection refused|No such file or directory\s+Is the server running"),
        f"Nothing accepts connections there: start PostgreSQL, or fix the host and port in"
        f" {_WHERE}.",
    ),
    (
        # PgBouncer's words for a startup parameter it was not told to pass over.
        re.compile(r"unsupported startup parameter: (\S+)"),
        "A connection pooler (PgBouncer) refuses the startup parameter {0}: add"
        " `ignore_startup_parameters = {0}` to its [pgbouncer] section (the metrics"
        " sampler bounds its statements with it; docs/pgbouncer.md), or connect directly.",
    ),
    (
        re.compile(r"failed to resolve host|could not translate host name"),
        f"That host name does not resolve from here: fix the host in {_WHERE}.",
    ),
    (
        re.compile(r"timeout expired|timed out"),
        f"The server did not answer in time: check the host, the port and any firewall"
        f" between, and {_WHERE}.",
    ),
    (
        re.compile(r'missing "=" after|invalid connection option|invalid URI|invalid integer'),
        "A connection string is a URL (postgresql://user:password@host:5432/dbname) or"
        " key=value pairs (host=localhost port=5432 dbname=app user=app).",
    ),
]


def _connection_hint(message: str) -> str | None:
    """What to do about a failed connection, from libpq's words (None if not one)."""
    for pattern, hint in _CONNECTION_HINTS:
        found = pattern.search(message)
        if found is not None:
            return hint.format(*found.groups())
    return None


def _not_installed(
    action: str, found: re.Match[str], diag_message: str, sqlstate: str | None
) -> SchemaNotInstalled:
    schema = found.group("schema").strip('"')
    what = (
        f"the schema {schema!r} does not exist in this database"
        if sqlstate == "3F000"
        else f"the schema {schema!r} is not installed, or not fully, in this database"
    )
    return SchemaNotInstalled(
        f"{action} failed: {what} (PostgreSQL said: {diag_message} [{sqlstate}]). To"
        " install it, run 'graphile-py migrate' with the same connection and --schema,"
        " or start a worker (it migrates first), or call WorkerUtils(...).migrate();"
        " if your jobs live in another schema, pass that name instead (schema=...,"
        " --schema or GRAPHILE_WORKER_SCHEMA)",
        sqlstate=sqlstate,
        schema=schema,
    )
