"""How a worker pool behaves: its options, validated when created. No I/O here.

Each option that is also a setting of the command line is declared here once, with
:func:`~graphile_py.pool.declaration.setting`: its name, type, default, limits and help
text. The pool reads the attributes; ``graphile_py.settings`` derives the config-file
keys and environment variables, and ``graphile_py.cli`` the flags, from the same
declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from graphile_py.db.migrations import DEFAULT_SCHEMA, check_identifier
from graphile_py.db.side_schema import side_schema_for
from graphile_py.errors import ConfigurationError
from graphile_py.events import WorkerEvents
from graphile_py.pool.declaration import check_declared, declared, setting

__all__ = ["ForbiddenFlags", "WorkerOptions"]

ForbiddenFlags = Sequence[str] | Callable[[], Sequence[str] | None] | None


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`WorkerPool` behaves. Times are in seconds.

    ``concurrency`` is the command line's ``jobs``; every other setting has the same
    name there. The fields without a :func:`setting` exist for library use only, as
    does ``forbidden_flags`` as a function (asked before every claim).
    """

    schema: str = setting(
        DEFAULT_SCHEMA,
        help="The PostgreSQL schema holding the queue; every process sharing the queue"
        " must use the same one",
        name="worker_schema",
        key="schema",
        short="-s",
        env=("GRAPHILE_WORKER_SCHEMA",),
        metavar="NAME",
    )
    side_schema: str | None = setting(
        None,
        help="The schema of graphile-py's own tables (pool registry, job history), which"
        " Node never sees; derived from the worker schema unless given",
        metavar="NAME",
        default_help="derived",
    )
    concurrency: int = setting(
        1, help="Jobs to run at once (one worker thread each)", minimum=1, name="jobs", short="-j"
    )
    poll_interval: float = setting(
        2.0,
        help="How often idle workers look for jobs that no notification announces (due"
        " run_at, retries)",
        above=0,
        finite=True,
    )
    max_pool_size: int = setting(
        10,
        help="Database connections for claiming and recording jobs and for tasks; the"
        " LISTEN connection is one more",
        minimum=1,
        short="-m",
    )
    prepared_statements: bool = setting(
        True,
        help="Prepare statements on the server; turn off for PgBouncer in transaction mode"
        " (the worker turns them off itself when its start-up check finds such a pooler)",
    )
    listen_conninfo: str | None = setting(
        None,
        help="A direct (session) connection for LISTEN, when the connection goes through"
        " a transaction-mode pooler such as PgBouncer, which cannot deliver notifications",
        name="listen_url",
        metavar="URL",
        default_help="the connection's",
    )
    fallback_poll_interval: float = setting(
        0.5,
        help="How often idle workers look for jobs when the start-up check finds that"
        " notifications do not arrive (LISTEN through a transaction-mode pooler)",
        above=0,
        finite=True,
    )
    graceful_shutdown_abort_timeout: float = setting(
        5.0,
        help="After a graceful shutdown starts (SIGTERM, Ctrl-C), set every running job's"
        " abort_event this late",
        minimum=0,
    )
    shutdown_timeout: float = setting(
        30.0,
        help="After a graceful shutdown starts (SIGTERM, Ctrl-C), fail jobs still running"
        " this late",
        minimum=0,
    )
    min_reset_locked_interval: float = setting(
        480.0,
        help="The sweep that frees jobs locked by dead workers runs every min..max"
        " seconds (randomised), first within 60 s",
        above=0,
        finite=True,
    )
    max_reset_locked_interval: float = setting(
        600.0,
        help="See min_reset_locked_interval; must not be below it",
        above=0,
        finite=True,
    )
    forbidden_flags: ForbiddenFlags = setting(  # noqa: RUF009 - a dataclasses.field
        None,
        help="Skip jobs carrying any of these flags, leaving them to other workers",
        flag="--forbidden-flag",
        metavar="FLAG",
        default_help="none",
        value_type=list[str] | None,
    )
    use_node_time: bool = setting(
        False,
        help="Decide which jobs are due by this machine's clock, not the database's, and"
        " stamp it on jobs added through WorkerUtils and helpers",
    )
    #: Name of the worker thread for logs; only allowed with concurrency 1.
    worker_id: str | None = None
    #: Hooks called on pool, worker, job and cron events (see :class:`WorkerEvents`).
    events: WorkerEvents | None = None
    local_queue_size: int | None = setting(
        None,
        help="Fetch this many jobs per claim and hand them out from memory: fewer round"
        " trips, but fetched jobs stay locked by this process until they run",
        minimum=1,
    )
    local_queue_ttl: float = setting(
        300.0,
        help="Hand fetched jobs that no worker started within this time back to the database",
        minimum=0,
    )
    complete_job_batch_delay: float | None = setting(
        None,
        help="Collect successes for this long and record them in one statement (0: what"
        " arrives while the previous write runs)",
        minimum=0,
        finite=True,
    )
    fail_job_batch_delay: float | None = setting(
        None,
        help="Collect failures for this long and record them in one statement",
        minimum=0,
        finite=True,
    )
    task_timeout: float | None = setting(
        None,
        help="Time limit of a task run, unless the task sets its own: then the job's"
        " abort_event is set, and a task still running task_timeout_grace later is"
        " failed and its worker thread replaced",
        above=0,
        default_help="none",
    )
    task_timeout_grace: float = setting(
        1.0,
        help="How long a task past its time limit may still run before it is failed",
        minimum=0,
    )
    heartbeat_interval: float = setting(
        5.0,
        help="How often this pool records in the side schema that it is alive",
        above=0,
        finite=True,
    )
    heartbeat_timeout: float = setting(
        20.0,
        help="A pool whose heartbeat is older than this is declared lost and its jobs run"
        " again elsewhere; at least twice heartbeat_interval",
        above=0,
        finite=True,
    )
    history: bool = setting(
        False,
        help="Record every attempt this pool runs (outcome, error, timing) in the side"
        " schema's job history",
    )
    history_retention: float = setting(
        604800.0,
        help="Delete job history older than this (default 7 days)",
        above=0,
        finite=True,
    )
    history_payload_limit: int = setting(
        8192,
        help="Keep a job's payload in its history only up to this many bytes (0: never)",
        minimum=0,
        metavar="BYTES",
    )

    def __post_init__(self) -> None:
        check_identifier(self.schema)
        check_declared(self, _DECLARED)
        side_schema_for(self.schema, self.side_schema)  # refuses a bad or clashing name
        if self.worker_id is not None and self.concurrency > 1:
            raise ConfigurationError(
                "You must not set worker_id when concurrency > 1; each worker must have a"
                " unique identifier"
            )
        low, high = self.min_reset_locked_interval, self.max_reset_locked_interval
        if high < low:
            raise ConfigurationError(
                f"Invalid values for min_reset_locked_interval ({low})/max_reset_locked_interval"
                f" ({high}): both must be positive and min <= max"
            )
        if self.heartbeat_timeout < 2 * self.heartbeat_interval:
            raise ConfigurationError(
                f"heartbeat_timeout ({self.heartbeat_timeout:g}) must be at least twice"
                f" heartbeat_interval ({self.heartbeat_interval:g}), so that one late"
                " heartbeat does not get a live pool declared lost"
            )

    @property
    def resolved_side_schema(self) -> str:
        """The side schema's name: ``side_schema``, or the one derived from ``schema``."""
        return side_schema_for(self.schema, self.side_schema)

    @property
    def batched_fetch(self) -> bool:
        """True when jobs are fetched several at a time into a local queue."""
        return self.local_queue_size is not None


_DECLARED = declared(WorkerOptions)
