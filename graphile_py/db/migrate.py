"""Bring a worker schema up to date, exactly as graphile-worker 0.18.0 does (spec 2.2-2.4),
and its side schema (:mod:`graphile_py.db.side_schema`) with the same discipline.

Each schema has a ``migrations`` table; the worker schema's is state shared with Node
workers. Concurrency safety comes from its primary key alone: each migration runs in its
own transaction that inserts the migration's row *first*, so a second migrator blocks on
that row and then gets a unique violation, which means "someone else did it". There are
no advisory locks. Both schemas go through the same steps (:class:`_Track` says which
migrations, where, and how to word the version guard); only the worker schema's
migrations are announced on ``worker:migrate``, which Node listens to.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from graphile_py.db.migrations import DEFAULT_SCHEMA, Migration, load_migrations
from graphile_py.db.migrations_table import MIGRATION_ROW_INSERTED, MigrationStatements
from graphile_py.db.side_migrations import load_side_migrations
from graphile_py.db.side_schema import side_schema_for
from graphile_py.db.translate import translate_error
from graphile_py.errors import (
    ConfigurationError,
    DatabaseError,
    GraphileError,
    IncompatibleSchema,
    LockedJobsBlockMigration,
    MigrationError,
    UnsupportedPostgresVersion,
)

__all__ = ["MIN_SERVER_VERSION_NUM", "MigrationReport", "latest_known_migration", "migrate"]

logger = logging.getLogger("graphile_py.migrate")

MIN_SERVER_VERSION_NUM = 120000

# SQLSTATEs that mean another process created the same thing first.
_CLASH_CODES = frozenset({"23505", "42P06", "42P07", "42710"})
_INSUFFICIENT_PRIVILEGE = "42501"
# SQLSTATEs of the probe that mean the migrations table (or its breaking column) is missing.
_NOT_INSTALLED_CODES = frozenset({"42P01", "42703"})


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate` found and did."""

    #: The highest migration recorded before this call (None on a fresh database).
    previous: int | None
    #: The migrations this call ran, in order.
    applied: tuple[int, ...] = ()
    #: Migrations another process ran while this call was trying to.
    skipped: tuple[int, ...] = ()
    #: Non-fatal findings, such as a newer non-breaking schema (worker's, then side's).
    warnings: tuple[str, ...] = field(default=())
    #: The side schema installed or upgraded beside the worker schema.
    side_schema: str | None = None
    #: The highest side-schema migration recorded before this call.
    side_previous: int | None = None
    #: The side-schema migrations this call ran, in order.
    side_applied: tuple[int, ...] = ()
    #: Side-schema migrations another process ran while this call was trying to.
    side_skipped: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Track:
    """One schema's numbered migrations: where they go and how they are rendered."""

    schema: str
    migrations: tuple[Migration, ...]
    #: For the side schema: the worker schema it sits beside (None for the worker's own).
    worker_schema: str | None = None

    @property
    def is_side(self) -> bool:
        return self.worker_schema is not None

    def render(self, migration: Migration) -> str:
        if self.worker_schema is None:
            return migration.render(self.schema)
        return migration.render(self.worker_schema, side_schema=self.schema)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What migrating one track found and did."""

    previous: int | None
    applied: tuple[int, ...]
    skipped: tuple[int, ...]
    warnings: tuple[str, ...]


def latest_known_migration() -> int:
    """The highest migration number this version of graphile-py ships."""
    return load_migrations()[-1].number


def migrate(
    conn: psycopg.Connection[Any],
    *,
    schema: str = DEFAULT_SCHEMA,
    target: int | None = None,
    side_schema: str | None = None,
) -> MigrationReport:
    """Install or upgrade the worker schema on ``conn``, then its side schema.

    ``conn`` must not be inside a transaction; each migration gets its own. ``target``
    stops the worker schema after that migration number (for tests of intermediate
    schemas). ``side_schema`` names graphile-py's own schema; by default it derives from
    ``schema`` (see :func:`graphile_py.db.side_schema.side_schema_for`).

    Raises :class:`IncompatibleSchema` when either schema has a breaking migration newer
    than this worker knows (the CLI exits with status 57), :class:`UnsupportedPostgresVersion`
    below PostgreSQL 12, :class:`MigrationError` when a script fails, and
    :class:`ConfigurationError` for a side schema that is the worker schema.
    """
    side = side_schema_for(schema, side_schema)
    worker_track = _Track(schema, load_migrations())
    side_track = _Track(side, load_side_migrations(), worker_schema=schema)
    with _autocommit(conn):
        worker = _migrate_track(conn, worker_track, target)
        # The side schema is checked only once the worker schema is known to be usable.
        side_outcome = _migrate_side_track(conn, side_track)
    return MigrationReport(
        previous=worker.previous,
        applied=worker.applied,
        skipped=worker.skipped,
        warnings=worker.warnings + side_outcome.warnings,
        side_schema=side,
        side_previous=side_outcome.previous,
        side_applied=side_outcome.applied,
        side_skipped=side_outcome.skipped,
    )


def _migrate_track(conn: psycopg.Connection[Any], track: _Track, target: int | None) -> _Outcome:
    known = track.migrations
    wanted = [m for m in known if target is None or m.number <= target]
    statements = MigrationStatements.for_schema(track.schema)
    server_version, latest, latest_breaking = _probe_or_install(conn, statements, known)
    _check_server_version(server_version)
    applied: list[int] = []
    skipped: list[int] = []
    for migration in wanted:
        if latest is not None and migration.number <= latest:
            continue
        if _run_migration(conn, track, migration, statements):
            applied.append(migration.number)
        else:
            skipped.append(migration.number)
    if applied:
        if track.is_side:
            logger.info("Side schema %r migrations complete", track.schema)
        else:
            logger.info("Migrations complete")
    warnings = _version_guard(track, latest, latest_breaking, known[-1].number)
    return _Outcome(latest, tuple(applied), tuple(skipped), warnings)


def _migrate_side_track(conn: psycopg.Connection[Any], track: _Track) -> _Outcome:
    """The side schema's migrations; a role that may not create it gets a warning only.

    The worker schema is what enqueueing and Node need, and a DBA may have created it for
    an application role that has no CREATE on the database: that role must keep working.
    Its pools then run without heartbeats and history (they say so), under the 4-hour rule.
    """
    try:
        return _migrate_track(conn, track, None)
    except GraphileError as exc:
        if exc.sqlstate != _INSUFFICIENT_PRIVILEGE:
            raise
        warning = (
            f"Could not install graphile-py's side schema {track.schema!r}: {exc}. Heartbeats,"
            " rescue of lost pools and the job history stay off until a role that may create"
            " it (CREATE on the database) runs 'graphile-py migrate'."
        )
        logger.warning("%s", warning)
        return _Outcome(None, (), (), (warning,))


@contextmanager
def _autocommit(conn: psycopg.Connection[Any]) -> Iterator[None]:
    if conn.autocommit:
        yield
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ConfigurationError(
            "migrate() must not run inside a transaction: each migration commits on its own"
        )
    conn.autocommit = True
    try:
        yield
    finally:
        conn.autocommit = False


def _probe_or_install(
    conn: psycopg.Connection[Any], statements: MigrationStatements, known: tuple[Migration, ...]
) -> tuple[int, int | None, int | None]:
    for attempt in (1, 2):
        try:
            return statements.probe_migrations(conn)
        except psycopg.Error as exc:
            if attempt > 1 or exc.sqlstate not in _NOT_INSTALLED_CODES:
                raise _migration_error(exc, "Reading the migrations table") from exc
        # First contact (or a table from before 0.16 without `breaking`): bootstrap.
        version = _server_version(conn)
        _check_server_version(version)
        try:
            statements.install_migrations_table(conn, [m.number for m in known if m.breaking])
        except psycopg.Error as exc:
            if exc.sqlstate not in _CLASH_CODES:
                raise _migration_error(exc, "Installing the migrations table") from exc
            # Another process is bootstrapping at this very moment; look again shortly.
            time.sleep(0.4 + random.random() * 0.2)
            continue
        # Like graphile-worker, treat the database as having no migrations yet: rows that
        # do exist make their migrations fail the primary-key insert and get skipped.
        return version, None, None
    raise MigrationError("the migrations table could not be read after installing it")


def _server_version(conn: psycopg.Connection[Any]) -> int:
    try:
        row = conn.execute(b"select current_setting('server_version_num')::int").fetchone()
    except psycopg.Error as exc:
        raise _migration_error(exc, "Reading the server version") from exc
    assert row is not None
    return int(row[0])


def _check_server_version(version: int) -> None:
    if version < MIN_SERVER_VERSION_NUM:
        raise UnsupportedPostgresVersion(
            "graphile-py requires PostgreSQL v12.0 or greater"
            f" (detected `server_version_num` = {version})"
        )


def _run_migration(
    conn: psycopg.Connection[Any],
    track: _Track,
    migration: Migration,
    statements: MigrationStatements,
) -> bool:
    kind = "breaking" if migration.breaking else "backwards-compatible"
    name = f"{migration.name} of side schema {track.schema!r}" if track.is_side else migration.name
    logger.info("Running %s migration %s", kind, name)
    try:
        statements.record_and_apply_migration(
            conn,
            migration.number,
            migration.breaking,
            track.render(migration),
            announce=not track.is_side,
        )
    except psycopg.Error as exc:
        row_inserted = MIGRATION_ROW_INSERTED in getattr(exc, "__notes__", ())
        if not row_inserted and exc.sqlstate in _CLASH_CODES:
            logger.debug("Some other worker has performed migration %s; continuing.", name)
            return False
        if exc.sqlstate == "22012" and migration.number == 11 and not track.is_side:
            raise LockedJobsBlockMigration(
                "There are locked jobs present; migration 11 cannot complete. Please ensure"
                " all workers are shut down cleanly and all locked jobs and queues are"
                " unlocked before attempting this migration. To achieve this with minimal"
                " downtime, please consider using graphile-worker 0.13.0 to drain the queue.",
                sqlstate=exc.sqlstate,
            ) from exc
        raise _migration_error(exc, f"Migration {name}") from exc
    return True


def _migration_error(exc: psycopg.Error, action: str) -> Exception:
    translated = translate_error(exc, action)
    if type(translated) is DatabaseError:
        return MigrationError(translated.args[0], sqlstate=exc.sqlstate)
    return translated


def _version_guard(
    track: _Track, latest: int | None, latest_breaking: int | None, highest_known: int
) -> tuple[str, ...]:
    # As in graphile-worker, the values checked are those read before migrating.
    if track.is_side:
        return _side_version_guard(track.schema, latest, latest_breaking, highest_known)
    if latest_breaking is not None and highest_known < latest_breaking:
        raise IncompatibleSchema(
            f"Database is using Graphile Worker schema revision {latest} which includes"
            f" breaking migration {latest_breaking}, but the currently running worker only"
            f" supports up to revision {highest_known}. It would be unsafe to continue;"
            " please ensure all versions of Graphile Worker are compatible."
        )
    if latest is not None and highest_known < latest:
        message = (
            f"Database is using Graphile Worker schema revision {latest}, but the currently"
            f" running worker only supports up to revision {highest_known} which may or may"
            " not be compatible; continuing. Make sure every Graphile Worker and graphile-py"
            " process sharing this database is of a compatible version."
        )
        logger.warning(message)
        return (message,)
    return ()


def _side_version_guard(
    schema: str, latest: int | None, latest_breaking: int | None, highest_known: int
) -> tuple[str, ...]:
    if latest_breaking is not None and highest_known < latest_breaking:
        raise IncompatibleSchema(
            f"Database has graphile-py's side schema {schema!r} at revision {latest}, which"
            f" includes breaking migration {latest_breaking}, but the currently running"
            f" graphile-py only supports up to revision {highest_known}. It would be unsafe"
            " to continue; please upgrade graphile-py."
        )
    if latest is not None and highest_known < latest:
        message = (
            f"Database has graphile-py's side schema {schema!r} at revision {latest}, but the"
            f" currently running graphile-py only supports up to revision {highest_known}"
            " which may or may not be compatible; continuing. Make sure every graphile-py"
            " process sharing this database is of a compatible version."
        )
        logger.warning(message)
        return (message,)
    return ()
