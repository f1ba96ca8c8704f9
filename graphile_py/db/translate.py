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
    missing = _MISSING_OBJECT.get(sqlstate or "")
    found = missing.fullmatch(diag_message) if missing else None
    if found is not None:
        return _not_installed(action, found, diag_message, sqlstate)
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
