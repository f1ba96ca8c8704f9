"""What a pool finds out at start about a transaction-mode pooler in its way.

A pooler such as PgBouncer in transaction mode cannot hold a LISTEN and (before 1.21)
cannot carry prepared statements. :func:`probe_pooler` checks both through the pool's
own connection strings, says in the log what it found and what to do, and returns what
the pool must change; the pool applies it before it opens its connections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from graphile_py.db import map_db_errors
from graphile_py.db.pooler import (
    PROBE_TIMEOUT,
    connect_kwargs,
    notifications_arrive,
    prepared_statements_work,
)
from graphile_py.db.side_schema import side_schema_ready
from graphile_py.pool.options import WorkerOptions

__all__ = ["PoolerFindings", "probe_pooler"]

logger = logging.getLogger("graphile_py.worker")


@dataclass(frozen=True, slots=True)
class PoolerFindings:
    """What the pool must change, as :func:`probe_pooler` found."""

    #: Poll this often instead, because notifications do not arrive; None if they do.
    poll_interval: float | None
    #: False when prepared statements are (or must be) off.
    prepared_statements: bool
    #: False when the connection is probably pooled: a session setting would leak.
    session_settings: bool
    #: The side schema whose claim_next claims single jobs (prepared statements off).
    claim_function_schema: str | None


def probe_pooler(options: WorkerOptions, conninfo: str, *, once: bool) -> PoolerFindings:
    """Check what a transaction-mode pooler would break, and say how to work around it.

    A job's NOTIFY must reach our LISTEN (on the listen URL, else the connection): if it
    does not, idle workers poll every ``fallback_poll_interval``. Prepared statements
    must work through the connection: if they do not, they are turned off, and single
    jobs are claimed through the side schema's ``claim_next``, whose plan the server
    keeps. Run-once pools do not listen, so they only check prepared statements.
    """
    listen = options.listen_conninfo
    heard = once or notifications_arrive(listen or conninfo, conninfo)
    poll: float | None = None
    if not heard:
        poll = min(options.poll_interval, options.fallback_poll_interval)
        logger.warning(
            "Notifications do not arrive: a NOTIFY sent through the connection did not"
            " reach a LISTEN on %s within %gs. %s New jobs will be found by polling"
            " every %gs (fallback_poll_interval) instead of at once. To be woken at"
            " once, give --listen-url (GRAPHILE_PY_LISTEN_URL) a direct connection to"
            " PostgreSQL or to a session-mode pool.",
            "the listen URL" if listen else "the same connection",
            PROBE_TIMEOUT,
            "The listen URL probably goes through a transaction-mode pooler too."
            if listen
            else "The connection probably goes through a transaction-mode pooler"
            " (PgBouncer with pool_mode = transaction), which cannot hold a LISTEN.",
            poll,
        )
    prepared = options.prepared_statements
    if prepared and not prepared_statements_work(conninfo):
        logger.warning(
            "Server-side prepared statements break through this connection (a"
            " transaction-mode pooler, such as PgBouncer before 1.21 or with"
            " max_prepared_statements = 0): prepared statements are turned off. Set"
            " prepared_statements = false (--no-prepared-statements) to skip this check"
        )
        prepared = False
    return PoolerFindings(
        poll_interval=poll,
        prepared_statements=prepared,
        session_settings=prepared and listen is None and heard,
        claim_function_schema=None if prepared else _claim_function_schema(options, conninfo),
    )


def _claim_function_schema(options: WorkerOptions, conninfo: str) -> str | None:
    """The side schema, if it is installed (with claim_next); else None, said in the log."""
    side = options.resolved_side_schema
    with (
        map_db_errors("Checking the side schema"),
        psycopg.connect(
            conninfo, autocommit=True, **connect_kwargs(prepared_statements=False)
        ) as conn,
    ):
        ready = side_schema_ready(conn, side)
    if ready:
        return side
    logger.info(
        "Prepared statements are off and the side schema %r is not installed (or is"
        " older than this graphile-py): each claim is planned again by the server."
        " Run `graphile-py migrate` to claim through its claim_next function",
        side,
    )
    return None
