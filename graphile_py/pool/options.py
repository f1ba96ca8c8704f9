"""How a worker pool behaves: its options, validated when created. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from graphile_py.db.migrations import DEFAULT_SCHEMA, check_identifier
from graphile_py.errors import ConfigurationError
from graphile_py.events import WorkerEvents

__all__ = ["ForbiddenFlags", "WorkerOptions"]

ForbiddenFlags = Sequence[str] | Callable[[], Sequence[str] | None] | None


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`WorkerPool` behaves. Times are in seconds."""

    schema: str = DEFAULT_SCHEMA
    #: Jobs run at once by this pool (one thread each).
    concurrency: int = 1
    #: How often idle workers look for jobs that no notification announces (run_at, retries).
    poll_interval: float = 2.0
    #: Connections for claiming and writing jobs; the LISTEN connection is one more.
    max_pool_size: int = 10
    #: False for pgBouncer in transaction mode: no server-side prepared statements.
    prepared_statements: bool = True
    #: After a graceful shutdown starts, set every running job's ``abort_event`` this late.
    graceful_shutdown_abort_timeout: float = 5.0
    #: After a graceful shutdown starts, fail jobs still running this late.
    shutdown_timeout: float = 30.0
    #: The stale-lock sweep runs every min..max seconds (randomised), first within 60 s.
    min_reset_locked_interval: float = 480.0
    max_reset_locked_interval: float = 600.0
    #: Skip jobs carrying any of these flags; a callable is asked before every fetch.
    forbidden_flags: ForbiddenFlags = None
    #: Use this machine's clock instead of the database's for "is the job due".
    use_node_time: bool = False
    #: Name of the worker thread for logs; only allowed with concurrency 1.
    worker_id: str | None = None
    #: Hooks called on pool, worker, job and cron events (see :class:`WorkerEvents`).
    events: WorkerEvents | None = None
    #: Fetch this many jobs per claim and hand them out from memory (None: one per claim).
    #: Fewer round trips; cached jobs count as locked by this pool until they run.
    local_queue_size: int | None = None
    #: Cached jobs not started within this time are handed back to the database.
    local_queue_ttl: float = 300.0
    #: Collect completions for this long and write them in one statement (None: at once).
    complete_job_batch_delay: float | None = None
    #: Collect failures for this long and write them in one statement (None: at once).
    fail_job_batch_delay: float | None = None
    #: Default time limit of a task run; per-task limits come from the TaskRegistry.
    #: When it passes, the job's ``abort_event`` is set; a task that still runs
    #: ``task_timeout_grace`` later is failed and its worker replaced.
    task_timeout: float | None = None
    task_timeout_grace: float = 1.0

    def __post_init__(self) -> None:
        check_identifier(self.schema)
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {self.concurrency}")
        if not (self.poll_interval > 0 and math.isfinite(self.poll_interval)):
            raise ConfigurationError(
                f"poll_interval must be a positive number of seconds, not {self.poll_interval}"
            )
        if self.max_pool_size < 1:
            raise ConfigurationError(f"max_pool_size must be at least 1, not {self.max_pool_size}")
        if self.worker_id is not None and self.concurrency > 1:
            raise ConfigurationError(
                "You must not set worker_id when concurrency > 1; each worker must have a"
                " unique identifier"
            )
        low, high = self.min_reset_locked_interval, self.max_reset_locked_interval
        if not (math.isfinite(low) and math.isfinite(high) and low > 0 and high >= low):
            raise ConfigurationError(
                f"Invalid values for min_reset_locked_interval ({low})/max_reset_locked_interval"
                f" ({high}): both must be positive and min <= max"
            )
        for name in (
            "graceful_shutdown_abort_timeout",
            "shutdown_timeout",
            "local_queue_ttl",
            "task_timeout_grace",
        ):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative")
        for name in ("complete_job_batch_delay", "fail_job_batch_delay"):
            value = getattr(self, name)
            if value is not None and not (0 <= value < math.inf):
                raise ConfigurationError(f"{name} must be None (off) or a number of seconds >= 0")
        if self.local_queue_size is not None and self.local_queue_size < 1:
            raise ConfigurationError(
                f"local_queue_size must be None (off) or at least 1, not {self.local_queue_size}"
            )
        if self.task_timeout is not None and not self.task_timeout > 0:
            raise ConfigurationError(f"task_timeout must be positive, not {self.task_timeout}")

    @property
    def batched_fetch(self) -> bool:
        """True when jobs are fetched several at a time into a local queue."""
        return self.local_queue_size is not None
