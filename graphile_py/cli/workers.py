"""``graphile-py workers``: which worker pools are alive, on which host, doing what.

It reads the pool registry in graphile-py's side schema (Python pools register there and
send heartbeats); pools that hold locks without registering (Node, older graphile-py) are
listed apart. Like the other read-only commands, it never migrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from graphile_py.admin.views import WorkersOut
from graphile_py.cli import tables
from graphile_py.cli.common import connection_options
from graphile_py.cli.group import main
from graphile_py.cli.ops import echo_out, json_option, open_inspector

__all__ = ["workers"]


@main.command()
@connection_options
@click.option(
    "--all",
    "include_stopped",
    is_flag=True,
    help="Also list pools that stopped, and those lost more than a day ago.",
)
@json_option
@click.pass_context
def workers(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    include_stopped: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """List the live worker pools and those lost in the last day.

    For each: state (alive; overdue: its heartbeat is late and no pool has rescued it
    yet; lost: another pool released its jobs; stopped), host, pid, version, concurrency,
    heartbeat age, running jobs, and jobs succeeded and failed since it started.
    """
    with open_inspector(ctx, config_file, flags) as inspector:
        report = inspector.workers(include_stopped=include_stopped)
    echo_out(as_json, WorkersOut.of(report), tables.workers_text(report))
