"""Commands for operators: add a job, clean up, and unlock jobs held by dead workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from graphile_py.admin.served import add_job_warnings, task_known
from graphile_py.admin.views import PoolOut
from graphile_py.admin.worker_utils import CLEANUP_TASKS, CleanupReport, WorkerUtils
from graphile_py.cli.common import (
    CONNECTION_SETTINGS,
    connection_options,
    database,
    fail,
    failures,
    settings_from,
)
from graphile_py.cli.group import main
from graphile_py.jobs import JOB_KEY_MODES
from graphile_py.logs import plural
from graphile_py.settings import Settings

__all__ = ["add_job_command", "cleanup", "unlock"]


@contextmanager
def _utils(settings: Settings) -> Iterator[WorkerUtils]:
    with failures(), database(settings) as conninfo:
        utils = WorkerUtils(
            conninfo,
            schema=settings.worker.schema,
            side_schema=settings.worker.side_schema,
            use_node_time=settings.worker.use_node_time,
            prepared_statements=settings.worker.prepared_statements,
        )
        with utils:
            yield utils


@main.command("add-job")
@connection_options
@click.argument("task")
@click.option(
    "-p",
    "--payload",
    default=None,
    metavar="JSON",
    help="The payload as JSON, e.g. '{\"user_id\": 42}' [default: {}].",
)
@click.option(
    "-q",
    "--queue",
    "queue_name",
    default=None,
    metavar="NAME",
    help="A named queue: its jobs run one at a time, in order [default: none].",
)
@click.option(
    "--run-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z"]),
    default=None,
    metavar="TIME",
    help="When the job is due, with a UTC offset: 2030-01-01T09:00:00+00:00, ...Z, or"
    " '2030-01-01 09:00:00+02:00' [default: now].",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 32767),
    default=None,
    metavar="N",
    help="Attempts before the job fails permanently [default: 25].",
)
@click.option(
    "--job-key",
    default=None,
    metavar="KEY",
    help="A unique key: adding a job with the key of a pending one updates that job.",
)
@click.option(
    "--job-key-mode",
    type=click.Choice(JOB_KEY_MODES),
    default=None,
    help="With --job-key: replace the pending job (default), keep its run_at"
    " (preserve_run_at), or keep it as it is (unsafe_dedupe).",
)
@click.option(
    "--priority",
    type=click.IntRange(-32768, 32767),
    default=None,
    metavar="N",
    help="Jobs with a lower number run first [default: 0].",
)
@click.option(
    "--flag",
    "flags",
    multiple=True,
    metavar="FLAG",
    help="A flag that workers can skip with --forbidden-flag; repeat for several.",
)
@click.pass_context
def add_job_command(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    task: str,
    payload: str | None,
    flags: tuple[str, ...],
    **options: Any,
) -> None:
    """Add one job for TASK and print it as JSON."""
    connection = {key: options.pop(key) for key in CONNECTION_SETTINGS}
    settings = settings_from(ctx, config_file, connection)
    try:
        value = json.loads(payload) if payload is not None else None
    except ValueError as exc:
        fail(f"--payload is not valid JSON: {exc}")
    with _utils(settings) as utils, failures():
        known_before = task_known(utils, task)
        job = utils.add_job(task, value, flags=list(flags) or None, **options)
        for warning in add_job_warnings(utils, task, known_before=known_before):
            click.echo(f"warning: {warning}", err=True)
    click.echo(
        json.dumps(
            {
                "id": job.id,
                "task_identifier": job.task_identifier,
                "queue_name": job.queue_name,
                "run_at": job.run_at.isoformat() if job.run_at else None,
                "key": job.key,
                "revision": job.revision,
            }
        )
    )


@main.command()
@connection_options
@click.argument(
    "tasks", metavar="TASK...", nargs=-1, required=True, type=click.Choice(CLEANUP_TASKS)
)
@click.option(
    "--keep",
    "keep",
    multiple=True,
    metavar="TASK",
    help="With GC_TASK_IDENTIFIERS: a task identifier to keep even if no job uses it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_context
def cleanup(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    tasks: tuple[str, ...],
    keep: tuple[str, ...],
    as_json: bool,
    **connection: Any,
) -> None:
    """Run clean-up TASKS: DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES, GC_TASK_IDENTIFIERS.

    Prints what each one removed. GC_TASK_IDENTIFIERS is unsafe while workers run
    (they cache task ids).
    """
    settings = settings_from(ctx, config_file, connection)
    with _utils(settings) as utils, failures():
        report = utils.cleanup(tasks, task_identifiers_to_keep=keep)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(_cleanup_json(report)))
    else:
        click.echo("\n".join(_cleanup_lines(report)))


def _cleanup_json(report: CleanupReport) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if report.deleted_jobs is not None:
        out["DELETE_PERMAFAILED_JOBS"] = {
            "deleted_jobs": report.deleted_job_count,
            "by_task": dict(report.deleted_jobs),
        }
    if report.task_identifiers is not None:
        out["GC_TASK_IDENTIFIERS"] = {"removed": list(report.task_identifiers)}
    if report.queues is not None:
        out["GC_JOB_QUEUES"] = {"removed": list(report.queues)}
    return out


def _cleanup_lines(report: CleanupReport) -> list[str]:
    lines = []
    if report.deleted_jobs is not None:
        by_task = ", ".join(f"{task}: {n}" for task, n in report.deleted_jobs.items())
        count = plural(report.deleted_job_count, "permanently failed job")
        lines.append(
            f"DELETE_PERMAFAILED_JOBS: deleted {count}" + (f" ({by_task})" if by_task else "")
        )
    if report.task_identifiers is not None:
        names = ", ".join(report.task_identifiers)
        count = plural(len(report.task_identifiers), "unused task identifier")
        lines.append(f"GC_TASK_IDENTIFIERS: removed {count}" + (f": {names}" if names else ""))
    if report.queues is not None:
        names = ", ".join(report.queues)
        count = plural(len(report.queues), "empty queue")
        lines.append(f"GC_JOB_QUEUES: removed {count}" + (f": {names}" if names else ""))
    return lines


@main.command()
@connection_options
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=None,
    help="Unlock every pool whose oldest lock is at least this old.",
)
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="POOL_ID",
    help="Unlock this pool (an id from the list); repeat for several.",
)
@click.option("--yes", is_flag=True, help="Unlock without asking.")
@click.option("--json", "as_json", is_flag=True, help="Print the lock holders as JSON.")
@click.pass_context
def unlock(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    older_than: float | None,
    pools: tuple[str, ...],
    yes: bool,
    as_json: bool,
    **connection: Any,
) -> None:
    """List the worker pools holding locks; unlock those you name (dead ones only!).

    A pool that crashed (SIGKILL, lost machine) leaves its jobs locked until the
    4-hour stale-lock rule frees them. If you know it is dead, unlock it now with
    --pool POOL_ID, or every pool whose locks are old with --older-than SECONDS.
    Unlocking a live pool lets its running jobs run twice.
    """
    settings = settings_from(ctx, config_file, connection)
    with _utils(settings) as utils, failures():
        holders = utils.lock_holders()
        now = datetime.now(UTC)
        if as_json:
            click.echo(json.dumps([PoolOut.of(h, now).model_dump(mode="json") for h in holders]))
        else:
            _print_holders(holders, now)
        chosen = [
            h.pool_id
            for h in holders
            if h.pool_id in pools
            or (older_than is not None and h.age(now).total_seconds() >= older_than)
        ]
        unknown = sorted(set(pools) - {h.pool_id for h in holders})
        if unknown:
            click.echo(f"No locks held by: {', '.join(unknown)}", err=True)
        if not chosen:
            return
        if not yes and not click.confirm(
            f"Unlock the jobs and queues of {', '.join(chosen)}? Only do this if they are dead",
            err=True,
        ):
            fail("nothing unlocked")
        utils.force_unlock_workers(chosen)
    click.echo(f"Unlocked: {', '.join(chosen)}", err=as_json)


def _print_holders(holders: list[Any], now: datetime) -> None:
    if not holders:
        click.echo("No worker pool holds any lock.")
        return
    click.echo(f"{'pool':<26} {'jobs':>6} {'queues':>6}  oldest lock")
    for holder in holders:
        click.echo(
            f"{holder.pool_id:<26} {holder.jobs:>6} {holder.queues:>6}  "
            f"{_age(holder.age(now).total_seconds())} ago"
        )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
