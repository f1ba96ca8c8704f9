"""What ``add_job`` accepts as a connection, and the psycopg connection underneath it.

graphile-py speaks psycopg 3. Besides a psycopg connection or cursor, ``add_job`` takes a
SQLAlchemy 2 ``Session`` or ``Connection`` (and ``add_job_async`` an ``AsyncSession`` or
``AsyncConnection``) on the psycopg driver, and joins its transaction: the job commits or
rolls back with the session. SQLAlchemy is never imported here: its objects are
recognised by their module and unwrapped through its documented API
(``session.connection()``, ``connection.connection.driver_connection``,
``await conn.get_raw_connection()``), so ``import graphile_py`` stays free of it.

Anything else (psycopg2, asyncpg, a SQLAlchemy engine on another driver, a connection
string, None) is refused with :class:`~graphile_py.errors.UnsupportedConnection` before
anything is sent, naming what was passed and what would work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias, cast

import psycopg

from graphile_py.errors import UnsupportedConnection

if TYPE_CHECKING:
    # Types only: a user's mypy sees the real classes, and nothing is imported at run time.
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["AsyncTarget", "SyncTarget", "async_connection", "sync_connection"]

#: What :func:`graphile_py.add_job` and :func:`graphile_py.add_jobs` accept.
SyncTarget: TypeAlias = "psycopg.Connection[Any] | psycopg.Cursor[Any] | Session | SAConnection"
#: What :func:`graphile_py.add_job_async` and :func:`graphile_py.add_jobs_async` accept.
AsyncTarget: TypeAlias = (
    "psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any] | AsyncSession | SAAsyncConnection"
)

_ACCEPTED_SYNC = (
    "add_job/add_jobs accept a psycopg 3 Connection or Cursor, or a SQLAlchemy 2 Session or"
    " Connection whose engine uses the psycopg driver (postgresql+psycopg://)"
)
_ACCEPTED_ASYNC = (
    "add_job_async/add_jobs_async accept a psycopg 3 AsyncConnection or AsyncCursor, or a"
    " SQLAlchemy 2 AsyncSession or AsyncConnection whose engine uses the psycopg driver"
    " (postgresql+psycopg://)"
)
# SQLAlchemy's name for the driver of postgresql+psycopg:// engines, sync and async.
_PSYCOPG_DRIVERS = frozenset({"psycopg", "psycopg_async"})
# Thread- or task-local session registries (Flask-SQLAlchemy's db.session is one): calling
# one gives the current session.
_SCOPED = frozenset({"scoped_session", "async_scoped_session"})


def sync_connection(target: object) -> psycopg.Connection[Any]:
    """The psycopg connection behind ``target``, in the transaction ``target`` is in.

    A SQLAlchemy ``Session`` or ``Connection`` is begun if it has not begun yet (as its
    own first statement would), so that its ``commit()`` commits the job.
    """
    if isinstance(target, psycopg.Connection):
        return target
    if isinstance(target, psycopg.Cursor):
        return target.connection
    kind = _sqlalchemy_kind(target)
    if kind == "scoped_session":
        return sync_connection(target())  # type: ignore[operator]
    if kind in {"Session", "Connection"}:
        _check_driver(target, kind, sync=True)
        connection: Any = target
        if kind == "Session":
            connection = connection.connection()  # begins the session's transaction
        elif not connection.in_transaction():
            connection.begin()
        driver = connection.connection.driver_connection
        return cast(
            "psycopg.Connection[Any]", _checked(driver, psycopg.Connection, target, sync=True)
        )
    raise UnsupportedConnection(_refusal(target, sync=True))


async def async_connection(target: object) -> psycopg.AsyncConnection[Any]:
    """:func:`sync_connection` for the async variants."""
    if isinstance(target, psycopg.AsyncConnection):
        return target
    if isinstance(target, psycopg.AsyncCursor):
        return target.connection
    kind = _sqlalchemy_kind(target)
    if kind == "async_scoped_session":
        return await async_connection(target())  # type: ignore[operator]
    if kind in {"AsyncSession", "AsyncConnection"}:
        _check_driver(target, kind, sync=False)
        connection: Any = target
        if kind == "AsyncSession":
            connection = await target.connection()  # type: ignore[attr-defined]
        elif not connection.in_transaction():
            await connection.begin()
        raw = await connection.get_raw_connection()
        return cast(
            "psycopg.AsyncConnection[Any]",
            _checked(raw.driver_connection, psycopg.AsyncConnection, target, sync=False),
        )
    raise UnsupportedConnection(_refusal(target, sync=False))


def _sqlalchemy_kind(target: object) -> str | None:
    """ "Session", "Connection", "AsyncSession" or "AsyncConnection" for SQLAlchemy's, else None.

    Subclasses count (a project's own Session class): the first SQLAlchemy class in the
    MRO names the kind.
    """
    for cls in type(target).__mro__:
        module = cls.__module__
        if module == "sqlalchemy" or module.startswith("sqlalchemy."):
            name = cls.__name__
            if name in {"Session", "AsyncSession", "AsyncConnection"} | _SCOPED:
                return name
            if name == "Connection" and module.startswith("sqlalchemy.engine"):
                return name
            return f"other:{name}"
    return None


def _check_driver(target: Any, kind: str, *, sync: bool) -> None:
    """Refuse an engine on another driver before anything is begun on it."""
    if kind == "Session":
        dialect = target.get_bind().dialect
    elif kind == "AsyncSession":
        dialect = target.sync_session.get_bind().dialect
    else:
        dialect = target.dialect
    if dialect.name != "postgresql" or dialect.driver not in _PSYCOPG_DRIVERS:
        raise UnsupportedConnection(
            f"got a SQLAlchemy {kind} on the {dialect.name}+{dialect.driver} driver;"
            f" {_ACCEPTED_SYNC if sync else _ACCEPTED_ASYNC}. Create the engine with a"
            " postgresql+psycopg:// URL (psycopg 3 is installed with graphile-py)"
        )


def _checked(driver: object, expected: type, target: object, *, sync: bool) -> object:
    if not isinstance(driver, expected):
        raise UnsupportedConnection(
            f"the SQLAlchemy connection behind {_name(target)} is a {_name(driver)};"
            f" {_ACCEPTED_SYNC if sync else _ACCEPTED_ASYNC}"
        )
    return driver


def _name(value: object) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _refusal(target: object, *, sync: bool) -> str:
    """The message for a target we cannot use: what it is, what works, how to get there."""
    accepted = _ACCEPTED_SYNC if sync else _ACCEPTED_ASYNC
    module = type(target).__module__
    kind = _sqlalchemy_kind(target)
    hint = ""
    if target is None:
        hint = "; pass the connection (or session) whose transaction the job should join"
    elif isinstance(target, str | bytes):
        hint = (
            "; open a connection first (psycopg.connect(dsn)), or use"
            " WorkerUtils(dsn).add_job(...), which keeps a pool of its own"
        )
    elif sync and isinstance(target, psycopg.AsyncConnection | psycopg.AsyncCursor):
        hint = "; for an async connection use 'await add_job_async(...)'"
    elif sync and kind in {"AsyncSession", "AsyncConnection", "async_scoped_session"}:
        hint = f"; for a SQLAlchemy {kind} use 'await add_job_async(...)'"
    elif not sync and isinstance(target, psycopg.Connection | psycopg.Cursor):
        hint = "; for a sync connection use add_job(...)"
    elif not sync and kind in {"Session", "Connection", "scoped_session"}:
        hint = f"; for a SQLAlchemy {kind} use add_job(...)"
    elif kind is not None and "Engine" in kind:
        hint = (
            "; an Engine is not a transaction: pass a Session or a Connection"
            " (engine.connect(), or engine.begin())"
        )
    elif module.split(".")[0] == "psycopg2":
        hint = (
            "; psycopg2 is not supported: open the connection with psycopg 3"
            " (psycopg.connect), or use a postgresql+psycopg:// SQLAlchemy engine"
        )
    elif module.split(".")[0] == "asyncpg":
        hint = (
            "; asyncpg is not supported: use psycopg.AsyncConnection, or a"
            " postgresql+psycopg:// SQLAlchemy async engine"
        )
    what = "None" if target is None else _name(target)
    return f"got {what}: {accepted}{hint}"
