"""``graphile-py task-index``: the optional per-task index, for a backlog of other tasks' jobs.

See :mod:`graphile_py.db.task_index` for what the index is and costs, and
docs/operations.md ("A backlog of other tasks' jobs") for when to install it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import psycopg

from graphile_py.cli.common import connection_options, database, failures, settings_from
from graphile_py.cli.group import main
from graphile_py.db.task_index import (
    TaskIndexStatus,
    drop_task_index,
    install_task_index,
    task_index_status,
)
from graphile_py.db.translate import map_db_errors

__all__ = ["task_index_drop", "task_index_group", "task_index_install", "task_index_status_cmd"]

_CONCURRENTLY = click.option(
    "--concurrently/--no-concurrently",
    default=True,
    show_default=True,
    help="Build or drop without blocking job inserts and claims (slower);"
    " --no-concurrently blocks every insert and update of a job until it is done.",
)


@main.group("task-index")
def task_index_group() -> None:
    """graphile-py's optional index of jobs by task, for pools facing other tasks' backlog.

    \b
    Node's claim index is ordered by (priority, run_at): with many due jobs of tasks a
    Python pool does not serve (a Node backlog), every claim of that pool steps over all
    of them. This index, graphile_py_jobs_task_index on _private_jobs (task_id, priority,
    run_at), lets pools started after it is built look up only their own tasks' jobs.
    Never installed by default: it costs every insert and update of a job one more index
    entry. Node neither uses nor minds it; nothing of Node's is altered.
    """


@contextmanager
def _connection(
    ctx: click.Context, config_file: Path | None, flags: dict[str, Any]
) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    settings = settings_from(ctx, config_file, flags)
    with failures(), database(settings) as conninfo:
        with map_db_errors("Connecting to the database"):
            conn = psycopg.connect(conninfo, autocommit=True)
        with conn:
            yield conn, settings.worker.schema


def _describe(status: TaskIndexStatus) -> str:
    where = f"{status.name} on {status.schema}._private_jobs"
    if not status.exists:
        return f"{where}: not installed (pools claim through Node's jobs_main_index)"
    size = f"{(status.size_bytes or 0) / 1024 / 1024:.1f} MB"
    if not status.valid:
        return (
            f"{where}: INVALID ({size}), left by a failed or interrupted concurrent build;"
            " it costs writes and helps no claim. Run 'graphile-py task-index install' to"
            " build it again, or 'drop' to remove it"
        )
    if not status.matches:
        return (
            f"{where}: present but not as graphile-py builds it ({status.definition});"
            " pools ignore it. 'install' rebuilds it"
        )
    return f"{where}: installed and valid ({size}); pools started since claim per task"


@task_index_group.command("status")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def task_index_status_cmd(
    ctx: click.Context, /, *, config_file: Path | None, as_json: bool, **flags: Any
) -> None:
    """Say whether the per-task index is installed and valid."""
    with _connection(ctx, config_file, flags) as (conn, schema), failures():
        status = task_index_status(conn, schema)
    if as_json:
        fields = ("name", "schema", "exists", "valid", "matches", "size_bytes", "definition")
        out = {name: getattr(status, name) for name in fields}
        click.echo(json.dumps({**out, "usable": status.usable}))
    else:
        click.echo(_describe(status))


@task_index_group.command("install")
@connection_options
@_CONCURRENTLY
@click.pass_context
def task_index_install(
    ctx: click.Context, /, *, config_file: Path | None, concurrently: bool, **flags: Any
) -> None:
    """Build the per-task index (an INVALID leftover is dropped and built again).

    Worker pools look for it when they start: restart running pools to use it.
    """
    with _connection(ctx, config_file, flags) as (conn, schema), failures():
        started = time.monotonic()
        status, built = install_task_index(conn, schema, concurrently=concurrently)
    if built:
        click.echo(f"Built in {time.monotonic() - started:.1f}s. {_describe(status)}.")
        click.echo("Restart running worker pools to claim through it.")
    else:
        click.echo(f"Nothing to do. {_describe(status)}.")


@task_index_group.command("drop")
@connection_options
@_CONCURRENTLY
@click.pass_context
def task_index_drop(
    ctx: click.Context, /, *, config_file: Path | None, concurrently: bool, **flags: Any
) -> None:
    """Drop the per-task index. Running pools stay correct (only slower): restart them."""
    with _connection(ctx, config_file, flags) as (conn, schema), failures():
        dropped = drop_task_index(conn, schema, concurrently=concurrently)
    if dropped:
        click.echo(f"Dropped graphile_py_jobs_task_index from {schema}._private_jobs.")
    else:
        click.echo(f"Nothing to do: {schema}._private_jobs has no graphile_py_jobs_task_index.")
