"""``graphile-py migrate`` and ``graphile-py worker``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import psycopg

from graphile_py.cli.common import (
    CONNECTION_SETTINGS,
    GROUP_SETTINGS,
    connection_options,
    database,
    fail,
    failures,
    setting_options,
    settings_from,
)
from graphile_py.cli.group import main
from graphile_py.db import map_db_errors
from graphile_py.db.migrate import migrate as run_migrations
from graphile_py.runner import run_worker
from graphile_py.settings import SETTINGS
from graphile_py.tasks import load_task_map

__all__ = ["migrate", "worker"]


@main.command()
@connection_options
@click.pass_context
def migrate(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Install or upgrade the job queue schema and graphile-py's side schema, then exit."""
    settings = settings_from(ctx, config_file, flags)
    with failures(), database(settings) as conninfo:
        with map_db_errors("Connecting to the database"):
            # Never prepared: a migration's repeated statements would be, and fail
            # through a transaction-mode pooler.
            conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
        with conn:
            report = run_migrations(
                conn, schema=settings.worker.schema, side_schema=settings.worker.side_schema
            )
    applied = ", ".join(map(str, report.applied)) or "none needed"
    click.echo(f"Schema {settings.worker.schema!r} is up to date (migrations applied: {applied}).")
    side_applied = ", ".join(map(str, report.side_applied)) or "none needed"
    click.echo(
        f"Side schema {report.side_schema!r} is up to date (migrations applied: {side_applied})."
    )


#: The worker's own flags: every setting that is not a connection or a group option.
WORKER_SETTINGS = tuple(
    name for name in SETTINGS if name not in (*CONNECTION_SETTINGS, *GROUP_SETTINGS, "tasks")
)


@main.command()
@connection_options
@setting_options("tasks")
@click.option(
    "--once",
    is_flag=True,
    help="Run every job that is ready now (and those they add, if due), then exit 0; no cron.",
)
@setting_options(*WORKER_SETTINGS)
@click.pass_context
def worker(ctx: click.Context, /, config_file: Path | None, once: bool, **flags: Any) -> None:
    """Run jobs until stopped with Ctrl-C or SIGTERM (twice to force).

    Migrates the schema first, then runs the tasks of --tasks, and the recurring jobs
    of the crontab (not with --once). Exit status 0 after a stop; 1 on an error the
    message explains; 57 when the schema is newer than this version; 75 when the pool
    fenced itself (its heartbeat could not be written).

    \b
    Example:
      graphile-py worker --tasks myapp.tasks:registry -c postgresql://localhost/app --jobs 4
    """
    settings = settings_from(ctx, config_file, flags)
    if not settings.tasks:
        fail(
            "no tasks given. Pass --tasks module:attribute (for example --tasks"
            " myapp.tasks:registry), set GRAPHILE_PY_TASKS, or put tasks in graphile_py.toml."
        )
    with failures():
        tasks = load_task_map(settings.tasks)
        crontab = [] if once else settings.crontab_items()
        with database(settings) as conninfo:
            status = run_worker(
                tasks,
                conninfo=conninfo,
                options=settings.worker,
                once=once,
                crontab=crontab,
                metrics_port=settings.metrics_port,
                metrics_host=settings.metrics_host,
                metrics_interval=settings.metrics_interval,
            )
    if status:
        sys.exit(status)
