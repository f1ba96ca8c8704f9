"""What every graphile-py command shares: connection options, settings, error exits."""

from __future__ import annotations

import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from graphile_py.errors import EXIT_INCOMPATIBLE_SCHEMA, GraphileError, IncompatibleSchema
from graphile_py.logs import configure_logging
from graphile_py.settings import CONFIG_FILE_NAME, SETTINGS, KnownSetting, Settings, load_settings

__all__ = [
    "CONNECTION_SETTINGS",
    "GROUP_SETTINGS",
    "NO_CONNECTION_HELP",
    "connection_options",
    "database",
    "fail",
    "failures",
    "setting_options",
    "settings_from",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The settings every command takes (with ``--config``).
CONNECTION_SETTINGS = ("database_url", "worker_schema", "side_schema", "embedded")
#: The settings given before the command: ``graphile-py --log-level debug worker``.
GROUP_SETTINGS = ("log_level", "log_format")

NO_CONNECTION_HELP = (
    "no database to connect to. Give a connection string with -c/--connection"
    " (for example -c postgresql://user:password@localhost:5432/app), set DATABASE_URL"
    " (or PGDATABASE and the other PG* variables), put database_url in graphile_py.toml,"
    " or pass --embedded to use a local PostgreSQL managed by graphile-py."
)


def setting_options(*names: str) -> Callable[[F], F]:
    """Click options for these settings, in this order, as their declarations describe.

    Each option's keyword is the setting's name; an option not given is None, so that
    the environment and files can fill it in (see :func:`settings_from`).
    """
    options = [_click_option(SETTINGS[name]) for name in names]

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _click_option(known: KnownSetting) -> Callable[[F], F]:
    spec, base = known.declared.spec, known.declared.base_type
    notes = ["env: " + " or ".join(known.env_names)]
    text = spec.help
    kind: dict[str, Any] = {}
    if base is bool:
        # The flag sets the opposite of the default: --embedded, --no-prepared-statements.
        kind = {"is_flag": True, "flag_value": not known.declared.default}
        if known.declared.default:  # --no-...: say which way the flag goes
            notes.insert(0, "this flag turns it off")
    elif typing.get_origin(base) is list:
        kind = {"multiple": True, "metavar": spec.metavar}
        text += "; repeat the flag for several"
        notes[0] += ", a JSON array"
    elif typing.get_origin(base) is Literal:
        kind = {"type": click.Choice(typing.get_args(base))}
    elif base in (int, float):
        low = spec.above if spec.above is not None else spec.minimum
        limits: dict[str, Any] = {
            "min": low,
            "min_open": spec.above is not None,
            "max": spec.maximum,
        }
        if base is int:
            kind = {"type": click.IntRange(**limits), "metavar": spec.metavar or "N"}
        else:
            kind = {"type": click.FloatRange(**limits), "metavar": spec.metavar or "SECONDS"}
    else:
        kind = {"metavar": spec.metavar}
    if known.default_text and base is not bool:
        notes.append(f"default: {known.default_text}")
    return click.option(
        *known.flags, known.name, default=None, help=f"{text} [{'; '.join(notes)}].", **kind
    )


def connection_options(function: F) -> F:
    """The options every command takes: the database, the schema, the config file."""
    function = click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"A TOML settings file [default: ./{CONFIG_FILE_NAME} if present].",
    )(function)
    return setting_options(*CONNECTION_SETTINGS)(function)


def settings_from(ctx: click.Context, config_file: Path | None, flags: dict[str, Any]) -> Settings:
    """The settings of this command: its flags, the group's, then env and files."""
    given = {**(ctx.obj or {}), **flags}
    for name, value in given.items():
        if isinstance(value, tuple):  # a repeatable flag
            given[name] = list(value) or None
    try:
        settings = load_settings(given, config_file=config_file)
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
