"""The ``graphile-py`` command: a thin shell over settings, migrate and the runner.

Exit statuses: 0 success; 1 a configuration, task-loading or database error (the
message says what to change); 2 a malformed command line (click's usage errors); 57 the
database schema is newer than this worker supports.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import psycopg

from graphile_py.db import map_db_errors
from graphile_py.errors import EXIT_INCOMPATIBLE_SCHEMA, GraphileError, IncompatibleSchema
from graphile_py.logs import configure_logging
from graphile_py.migrate import migrate as run_migrations
from graphile_py.runner import run_worker
from graphile_py.settings import Settings, load_settings
from graphile_py.tasks import load_task_map

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

NO_CONNECTION_HELP = (
    "no database to connect to. Give a connection string with -c/--connection"
    " (for example -c postgresql://user:password@localhost:5432/app), set DATABASE_URL"
    " (or PGDATABASE and the other PG* variables), put database_url in graphile_py.toml,"
    " or pass --embedded to use a local PostgreSQL managed by graphile-py."
)


def _connection_options(function: F) -> F:
    options = [
        click.option(
            "-c",
            "--connection",
            "database_url",
            metavar="URL",
            help="PostgreSQL connection string [env: DATABASE_URL].",
        ),
        click.option(
            "-s",
            "--schema",
            "worker_schema",
            metavar="NAME",
            help="Schema of the job queue [env: GRAPHILE_WORKER_SCHEMA; default: graphile_worker].",
        ),
        click.option(
            "--embedded",
            is_flag=True,
            default=None,
            help="Use a local PostgreSQL kept in your user data directory"
            " (needs the 'embedded' extra).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help=f"A TOML settings file [default: ./{'graphile_py.toml'} if present].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="graphile-py")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="How much to log [env: GRAPHILE_PY_LOG_LEVEL; default: info].",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """graphile-py: PostgreSQL job queue, compatible with Node graphile-worker 0.18."""
    ctx.obj = {"log_level": log_level}


@main.command()
@_connection_options
@click.pass_context
def migrate(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Install or upgrade the job queue schema, then exit."""
    settings = _settings(ctx, config_file, flags)
    with _failures(), _database(settings) as conninfo:
        with map_db_errors("Connecting to the database"):
            conn = psycopg.connect(conninfo, autocommit=True)
        with conn:
            report = run_migrations(conn, schema=settings.worker_schema)
    applied = ", ".join(map(str, report.applied)) or "none needed"
    click.echo(f"Schema {settings.worker_schema!r} is up to date (migrations applied: {applied}).")


@main.command()
@_connection_options
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
    settings = _settings(ctx, config_file, flags)
    if not settings.tasks:
        _fail(
            "no tasks given. Pass --tasks module:attribute (for example --tasks"
            " myapp.tasks:registry), set GRAPHILE_PY_TASKS, or put tasks in graphile_py.toml."
        )
    with _failures():
        tasks = load_task_map(settings.tasks)
        options = settings.worker_options()
        with _database(settings) as conninfo:
            status = run_worker(tasks, conninfo=conninfo, options=options, once=once)
    if status:
        sys.exit(status)


def _settings(ctx: click.Context, config_file: Path | None, flags: dict[str, Any]) -> Settings:
    flags = {**flags, "log_level": (ctx.obj or {}).get("log_level")}
    try:
        settings = load_settings(flags, config_file=config_file)
    except GraphileError as exc:
        _fail(str(exc))
    configure_logging(getattr(logging, settings.log_level.upper()))
    return settings


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The connection string to use, starting the embedded server if asked to."""
    with ExitStack() as stack:
        if settings.embedded:
            from graphile_py.embedded import EmbeddedPostgres

            server = stack.enter_context(EmbeddedPostgres())
            yield server.start()
        elif settings.database_url:
            yield settings.database_url
        elif _libpq_environment():
            yield ""  # libpq reads PGDATABASE, PGHOST, ... itself
        else:
            _fail(NO_CONNECTION_HELP)


def _libpq_environment() -> bool:
    return bool(os.environ.get("PGDATABASE"))


@contextmanager
def _failures() -> Iterator[None]:
    """Turn our errors into a one-line message and the right exit status."""
    try:
        yield
    except IncompatibleSchema as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_INCOMPATIBLE_SCHEMA)
    except GraphileError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)
