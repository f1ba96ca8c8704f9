"""``graphile-py migrate`` and ``graphile-py worker``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import psycopg

from graphile_py.cli.common import (
    connection_options,
    database,
    fail,
    failures,
    settings_from,
)
from graphile_py.cli.group import main
from graphile_py.db import map_db_errors
from graphile_py.db.migrate import migrate as run_migrations
from graphile_py.runner import run_worker
from graphile_py.tasks import load_task_map

__all__ = ["migrate", "worker"]


@main.command()
@connection_options
@click.pass_context
def migrate(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Install or upgrade the job queue schema, then exit."""
    settings = settings_from(ctx, config_file, flags)
    with failures(), database(settings) as conninfo:
        with map_db_errors("Connecting to the database"):
            conn = psycopg.connect(conninfo, autocommit=True)
        with conn:
            report = run_migrations(conn, schema=settings.worker_schema)
    applied = ", ".join(map(str, report.applied)) or "none needed"
    click.echo(f"Schema {settings.worker_schema!r} is up to date (migrations applied: {applied}).")


@main.command()
@connection_options
@click.option(
    "-t",
    "--tasks",
    metavar="MODULE:ATTR",
    help="The task map: a TaskRegistry or dict, e.g. 'myapp.tasks:registry'"
    " [env: GRAPHILE_PY_TASKS].",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Jobs to run at once [default: 1].")
@click.option("--once", is_flag=True, help="Run every job that is ready now, then exit.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="How often idle workers look for due jobs [default: 2].",
)
@click.option(
    "-m", "--max-pool-size", type=click.IntRange(min=1), help="Database connections [default: 10]."
)
@click.option(
    "--no-prepared-statements",
    "no_prepared_statements",
    is_flag=True,
    default=None,
    help="Do not prepare statements (for pgBouncer in transaction mode).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM, how long running jobs may take before they are failed [default: 30].",
)
@click.option(
    "--local-queue-size",
    type=click.IntRange(min=1),
    help="Fetch this many jobs per claim and hand them out from memory [default: off].",
)
@click.option(
    "--complete-job-batch-delay",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Write completions in batches collected over this long [default: off].",
)
@click.option(
    "--fail-job-batch-delay",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Write failures in batches collected over this long [default: off].",
)
@click.option(
    "--task-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Time limit of a task run, unless the task sets its own [default: none].",
)
@click.option(
    "--forbidden-flag",
    "forbidden_flags",
    multiple=True,
    metavar="FLAG",
    help="Skip jobs with this flag (repeat for several).",
)
@click.option(
    "--use-node-time",
    is_flag=True,
    default=None,
    help="Decide which jobs are due by this machine's clock, not the database's.",
)
@click.option(
    "--local-queue-ttl",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Hand back cached jobs not started within this time [default: 300].",
)
@click.option(
    "--graceful-shutdown-abort-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM, set running jobs' abort_event after this long [default: 5].",
)
@click.option(
    "--crontab",
    metavar="FILE",
    help="Schedule recurring jobs from this crontab (ignored with --once)"
    " [default: ./crontab if it exists].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    metavar="PORT",
    help="Serve Prometheus /metrics and /healthz, /readyz on this port (0: any free one;"
    " needs the 'metrics' extra) [env: GRAPHILE_PY_METRICS_PORT; default: off].",
)
@click.option(
    "--metrics-host",
    metavar="ADDRESS",
    help="The address to serve metrics on [env: GRAPHILE_PY_METRICS_HOST;"
    " default: 127.0.0.1; 0.0.0.0 for every interface].",
)
@click.pass_context
def worker(
    ctx: click.Context,
    /,
    config_file: Path | None,
    once: bool,
    no_prepared_statements: bool | None,
    **flags: Any,
) -> None:
    """Run jobs until stopped with Ctrl-C or SIGTERM (twice to force)."""
    if no_prepared_statements:
        flags["prepared_statements"] = False
    flags["forbidden_flags"] = list(flags["forbidden_flags"]) or None
    settings = settings_from(ctx, config_file, flags)
    if not settings.tasks:
        fail(
            "no tasks given. Pass --tasks module:attribute (for example --tasks"
            " myapp.tasks:registry), set GRAPHILE_PY_TASKS, or put tasks in graphile_py.toml."
        )
    with failures():
        tasks = load_task_map(settings.tasks)
        crontab = []
        if not once:
            from graphile_py.cron.scheduler import (
                load_crontab_file,  # only continuous workers need it
            )

            if settings.crontab is not None and not Path(settings.crontab).is_file():
                fail(f"crontab file {settings.crontab!r} does not exist")
            crontab = load_crontab_file(settings.crontab or "crontab")
        options = settings.worker_options()
        with database(settings) as conninfo:
            status = run_worker(
                tasks,
                conninfo=conninfo,
                options=options,
                once=once,
                crontab=crontab,
                metrics_port=settings.metrics_port,
                metrics_host=settings.metrics_host,
                metrics_interval=settings.metrics_interval,
            )
    if status:
        sys.exit(status)
