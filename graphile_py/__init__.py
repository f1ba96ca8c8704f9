"""graphile-py: a PostgreSQL job queue that shares its database with Node graphile-worker.

Enqueue with :func:`add_job` inside your own transaction (or :class:`WorkerUtils` when
you have no connection at hand), register tasks on a :class:`TaskRegistry`, and run them
with ``graphile-py worker --tasks module:registry`` or :func:`run_worker`.
"""

import typing as _typing

__all__ = [
    "CLEANUP_TASKS",
    "EXIT_FENCED",
    "EXIT_INCOMPATIBLE_SCHEMA",
    "CleanupTask",
    "CombinedEvents",
    "ConfigurationError",
    "ConnectError",
    "CronItem",
    "CronScheduler",
    "CronStatus",
    "CrontabError",
    "DatabaseError",
    "EmbeddedPostgresError",
    "EmbeddedPostgresUnavailable",
    "GraphileError",
    "IncompatibleSchema",
    "Inspector",
    "InvalidJobKeyMode",
    "InvalidPayload",
    "Job",
    "JobFilter",
    "JobHelpers",
    "JobKeyMode",
    "JobOptions",
    "JobRecord",
    "JobRejected",
    "JobSpec",
    "JobState",
    "LockHolder",
    "LockedJobsBlockMigration",
    "MetricsServer",
    "MigrationError",
    "MigrationReport",
    "PayloadError",
    "PermanentFailure",
    "QueueStatus",
    "QueueStatusReport",
    "SchemaNotInstalled",
    "StateCounts",
    "TaskFunction",
    "TaskIndexStatus",
    "TaskLoadError",
    "TaskRegistry",
    "TaskStatus",
    "TypedTask",
    "UnsupportedConnection",
    "UnsupportedPostgresVersion",
    "WorkerError",
    "WorkerEvents",
    "WorkerMetrics",
    "WorkerOptions",
    "WorkerPool",
    "WorkerUtils",
    "add_job",
    "add_job_async",
    "add_jobs",
    "add_jobs_async",
    "combine_events",
    "cron_item",
    "latest_known_migration",
    "load_crontab_file",
    "load_task_map",
    "migrate",
    "parse_crontab",
    "run_once",
    "run_worker",
    "serve_metrics",
]

if _typing.TYPE_CHECKING:
    from graphile_py.admin.inspector import Inspector
    from graphile_py.admin.records import (
        CronStatus,
        JobFilter,
        JobRecord,
        JobState,
        QueueStatus,
        QueueStatusReport,
        StateCounts,
        TaskStatus,
    )
    from graphile_py.admin.worker_utils import (
        CLEANUP_TASKS,
        CleanupTask,
        LockHolder,
        WorkerUtils,
    )
    from graphile_py.cron.crontab import CronItem, cron_item, parse_crontab
    from graphile_py.cron.scheduler import CronScheduler, load_crontab_file
    from graphile_py.db.migrate import MigrationReport, latest_known_migration, migrate
    from graphile_py.db.task_index import TaskIndexStatus
    from graphile_py.enqueue import add_job, add_job_async, add_jobs, add_jobs_async
    from graphile_py.errors import (
        EXIT_FENCED,
        EXIT_INCOMPATIBLE_SCHEMA,
        ConfigurationError,
        ConnectError,
        CrontabError,
        DatabaseError,
        EmbeddedPostgresError,
        EmbeddedPostgresUnavailable,
        GraphileError,
        IncompatibleSchema,
        InvalidJobKeyMode,
        InvalidPayload,
        JobRejected,
        LockedJobsBlockMigration,
        MigrationError,
        PayloadError,
        PermanentFailure,
        SchemaNotInstalled,
        TaskLoadError,
        UnsupportedConnection,
        UnsupportedPostgresVersion,
        WorkerError,
    )
    from graphile_py.events import CombinedEvents, WorkerEvents, combine_events
    from graphile_py.extras.metrics.collectors import WorkerMetrics
    from graphile_py.extras.metrics.server import MetricsServer, serve_metrics
    from graphile_py.jobs import Job, JobKeyMode, JobOptions, JobSpec
    from graphile_py.pool.options import WorkerOptions
    from graphile_py.pool.pool import WorkerPool
    from graphile_py.runner import run_once, run_worker
    from graphile_py.tasks import JobHelpers, TaskFunction, TaskRegistry, load_task_map
    from graphile_py.typed import TypedTask

# Every name loads from its module on first use: a process imports only what it uses.
# `graphile-py worker --once` must not pay for the inspector, WorkerUtils, cron or
# pydantic, whose imports took longer than the run itself on an empty queue. Metrics
# need the optional `metrics` extra. (tests/unit/test_public_api.py gets every name.)
_MODULES = {
    "graphile_py.admin.inspector": ("Inspector",),
    "graphile_py.admin.records": (
        "CronStatus",
        "JobFilter",
        "JobRecord",
        "JobState",
        "QueueStatus",
        "QueueStatusReport",
        "StateCounts",
        "TaskStatus",
    ),
    "graphile_py.admin.worker_utils": ("CLEANUP_TASKS", "CleanupTask", "LockHolder", "WorkerUtils"),
    "graphile_py.cron.crontab": ("CronItem", "cron_item", "parse_crontab"),
    "graphile_py.cron.scheduler": ("CronScheduler", "load_crontab_file"),
    "graphile_py.db.migrate": ("MigrationReport", "latest_known_migration", "migrate"),
    "graphile_py.db.task_index": ("TaskIndexStatus",),
    "graphile_py.enqueue": ("add_job", "add_job_async", "add_jobs", "add_jobs_async"),
    "graphile_py.errors": (
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
    ),
    "graphile_py.events": ("CombinedEvents", "WorkerEvents", "combine_events"),
    "graphile_py.extras.metrics.collectors": ("WorkerMetrics",),
    "graphile_py.extras.metrics.server": ("MetricsServer", "serve_metrics"),
    "graphile_py.jobs": ("Job", "JobKeyMode", "JobOptions", "JobSpec"),
    "graphile_py.pool.options": ("WorkerOptions",),
    "graphile_py.pool.pool": ("WorkerPool",),
    "graphile_py.runner": ("run_once", "run_worker"),
    "graphile_py.tasks": ("JobHelpers", "TaskFunction", "TaskRegistry", "load_task_map"),
    "graphile_py.typed": ("TypedTask",),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'graphile_py' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
