"""Working through a connection pooler such as PgBouncer in transaction mode.

A transaction-mode pooler lends a server connection to a client for one transaction at a
time, so nothing that lives in a server *session* survives from one statement to the
next: server-side prepared statements (psycopg prepares a statement on one server
connection and executes it on another, which has never heard of it), session settings
(``set``/``set_config(..., false)`` leak to whoever gets that server connection next) and
``LISTEN`` (the listening session goes back to the pool after one statement, and the
notifications go to whoever holds it then, or nowhere).

So graphile-py, told or finding that prepared statements break
(:func:`prepared_statements_work`), connects with :func:`connect_kwargs`
``(prepared_statements=False)``, and listens on a direct session connection if it is
given one. :func:`notifications_arrive` is the start-up check of that: it LISTENs on one
connection and NOTIFYs through another, the way a job is announced, and says whether the
notification arrived. (PgBouncer 1.21 and later can carry prepared statements in
transaction mode, with ``max_prepared_statements``; LISTEN never.)
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from graphile_py.db.translate import map_db_errors

__all__ = ["PROBE_TIMEOUT", "connect_kwargs", "notifications_arrive", "prepared_statements_work"]

#: How long the start-up check waits for its notification. A direct session hears it in
#: milliseconds (it is sent on commit); the wait only costs time when it never comes.
PROBE_TIMEOUT = 2.0


def connect_kwargs(*, prepared_statements: bool) -> dict[str, Any]:
    """psycopg connection arguments: prepare every statement on the server, or none.

    ``prepare_threshold=0`` prepares a statement on its first execution (the worker's
    statements run thousands of times); ``None`` never prepares, which is what a
    transaction-mode pooler needs.
    """
    return {"prepare_threshold": 0 if prepared_statements else None}


def prepared_statements_work(conninfo: str, *, rounds: int = 8, connect_timeout: int = 10) -> bool:
    """True unless server-side prepared statements break through ``conninfo``.

    Two clients take turns preparing and running statements (psycopg names them the same
    on every connection). Directly, each has its own session. Through a transaction-mode
    pooler that does not track prepared statements (PgBouncer before 1.21, or with
    ``max_prepared_statements = 0``) the second lands on the server connection the first
    just used, where the name is taken, or runs one that connection never prepared.
    """
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": connect_timeout,
        **connect_kwargs(prepared_statements=True),
    }
    with (
        map_db_errors("Checking whether prepared statements work"),
        psycopg.connect(conninfo, **kwargs) as one,
        psycopg.connect(conninfo, **kwargs) as two,
    ):
        try:
            for n in range(rounds):
                one.execute(b"select %s::int", (n,))
                two.execute(b"select %s::text", (str(n),))
        except (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName):
            return False
    return True


def notifications_arrive(
    listen_conninfo: str,
    notify_conninfo: str,
    *,
    timeout: float = PROBE_TIMEOUT,
    connect_timeout: int = 10,
) -> bool:
    """True if a NOTIFY sent through ``notify_conninfo`` reaches a LISTEN on ``listen_conninfo``.

    Two connections, as in real use (one process adds a job, another listens): through a
    transaction-mode pooler the LISTEN ends with its statement's transaction, and the
    notification, delivered to whichever session sent or holds it, never reaches the
    listener. Connection errors are raised as :class:`~graphile_py.errors.ConnectError`.
    The channel is unique to this call, so no other process hears it or is disturbed.
    """
    channel = f"graphile_py:probe:{secrets.token_hex(8)}"
    token = secrets.token_hex(8)
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": connect_timeout,
        "application_name": "graphile-py notification check",
        **connect_kwargs(prepared_statements=False),
    }
    with map_db_errors("Checking that notifications arrive"):
        listener = psycopg.connect(listen_conninfo, **kwargs)
        try:
            # Named, so that pg_stat_activity does not show it as a worker's LISTEN.
            listener.execute(
                sql.SQL("/* graphile-py start-up check */ LISTEN {}").format(
                    sql.Identifier(channel)
                )
            )
            with psycopg.connect(notify_conninfo, **kwargs) as sender:
                sender.execute(b"select pg_catalog.pg_notify(%s, %s)", (channel, token))
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                for notify in listener.notifies(timeout=remaining):
                    if notify.channel == channel and notify.payload == token:
                        return True
            return False
        finally:
            with contextlib.suppress(psycopg.Error):
                listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
            listener.close()
