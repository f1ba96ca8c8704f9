"""Commands for looking at the queue and fixing jobs: status, jobs, queues, cron.

They read through :class:`~graphile_py.Inspector`, print tables for people and, with
``--json``, one JSON document for scripts (the shapes of :mod:`graphile_py.admin.views`).
Retry, remove and reschedule go through the schema's own functions, so a job a live
worker holds is skipped (and reported), never changed under it.

None of them migrates: looking at a queue, or fixing a job in it, must not upgrade a
schema that other workers share. A missing or old schema is reported, with the advice to
run ``graphile-py migrate``, as the dashboard does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from graphile_py.admin.inspector import Inspector
from graphile_py.admin.records import MAX_LIST_LIMIT, JobFilter, JobState
from graphile_py.admin.views import (
    AttemptOut,
    CronOut,
    JobDetailOut,
    JobShowOut,
    JobTimelineOut,
    QueueOut,
    StatsOut,
)
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.cli import tables
from graphile_py.cli.common import connection_options, database, fail, failures, settings_from
from graphile_py.cli.group import main
from graphile_py.cli.times import from_now, parse_time
from graphile_py.errors import CrontabError
from graphile_py.jobs import Job

__all__ = [
    "JOB_ID",
    "cron_group",
    "echo_out",
    "jobs_group",
    "json_option",
    "open_inspector",
    "queues_group",
    "status",
]

F = TypeVar("F", bound=Callable[..., Any])
JOB_ID = click.IntRange(1, 2**63 - 1)  # a bigint identity: anything else is a typo


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        function
    )


def page_options(things: str) -> Callable[[F], F]:
    """``--limit`` and ``--before-id``: one page of a newest-first listing of ``things``."""

    def decorate(function: F) -> F:
        function = click.option(
            "--before-id",
            type=click.IntRange(min=1),
            default=None,
            metavar="ID",
            help=f"Only {things} with a smaller id (the next page: the last id shown).",
        )(function)
        return click.option(
            "--limit",
            type=click.IntRange(1, MAX_LIST_LIMIT),
            default=100,
            show_default=True,
            metavar="N",
            help=f"At most this many {things}.",
        )(function)

    return decorate


@contextmanager
def open_inspector(
    ctx: click.Context, config_file: Path | None, flags: dict[str, Any]
) -> Iterator[Inspector]:
    """An Inspector on the configured, already migrated database (never migrating it).

    Our errors become a message and exit 1 (57 for a schema newer than we can read).
    """
    settings = settings_from(ctx, config_file, flags)
    with (
        failures(),
        database(settings) as conninfo,
        WorkerUtils(
            conninfo,
            schema=settings.worker.schema,
            run_migrations=False,
            use_node_time=settings.worker.use_node_time,
            side_schema=settings.worker.side_schema,
            prepared_statements=settings.worker.prepared_statements,
        ) as utils,
    ):
        inspector = Inspector(utils)
        inspector.check_schema()
        yield inspector


def echo_out(as_json: bool, data: tables.JsonOut, text: str) -> None:
    click.echo(tables.dumps(data) if as_json else text)


# -- status -------------------------------------------------------------------------------


@main.command()
@connection_options
@json_option
@click.pass_context
def status(ctx: click.Context, /, *, config_file: Path | None, as_json: bool, **flags: Any) -> None:
    """Jobs by task and queue in each state, the oldest ready job, locks and pools.

    States: ready (due, never attempted), scheduled (due later), running (locked by a
    worker), retrying (failed, will run again), failed (no attempts left).
    """
    with open_inspector(ctx, config_file, flags) as inspector:
        report = inspector.status()
        services = inspector.task_services(report.tasks)
    echo_out(as_json, StatsOut.of(report, services), tables.status_text(report, services))


# -- jobs ---------------------------------------------------------------------------------


@main.group("jobs")
def jobs_group() -> None:
    """List, show, retry, remove and reschedule jobs."""


@jobs_group.command("list")
@connection_options
@click.option("--task", default=None, metavar="TASK", help="Only jobs of this task identifier.")
@click.option("--queue", default=None, metavar="QUEUE", help="Only jobs of this named queue.")
@click.option(
    "--state",
    type=click.Choice([state.value for state in JobState]),
    default=None,
    help="Only jobs in this state.",
)
@click.option("--key", default=None, metavar="KEY", help="Only the job with this job key.")
@page_options("jobs")
@json_option
@click.pass_context
def list_jobs(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    task: str | None,
    queue: str | None,
    state: str | None,
    key: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """List jobs, newest first."""
    where = JobFilter(
        task=task,
        queue=queue,
        state=JobState(state) if state else None,
        key=key,
        limit=limit,
        before_id=before_id,
    )
    with open_inspector(ctx, config_file, flags) as inspector:
        records = inspector.list_jobs(where)
        services = inspector.job_services(records)
    # Scripts get each job whole, payload included (the dashboard's pages leave it out).
    echo_out(
        as_json,
        [JobDetailOut.of(r.job, r.state, services.marks(r)) for r in records],
        tables.jobs_table(records, services),
    )


@jobs_group.command("show")
@connection_options
@click.argument("job_id", metavar="ID", type=JOB_ID)
@json_option
@click.pass_context
def show_job(
    ctx: click.Context, /, *, config_file: Path | None, job_id: int, as_json: bool, **flags: Any
) -> None:
    """Show every field of job ID, its payload and last error, and its recorded attempts.

    A job that is gone (it succeeded, or was removed) is shown from its history, when
    workers record one (--history).
    """
    with open_inspector(ctx, config_file, flags) as inspector:
        record = inspector.get_job(job_id)
        attempts = inspector.attempts(job_id, if_installed=True)
        services = inspector.job_services([record] if record is not None else [])
    if record is None and not attempts:
        fail(f"no job with id {job_id}")
    if record is None:
        gone = JobTimelineOut.of(job_id, False, attempts)
        echo_out(as_json, gone, tables.gone_job_text(job_id, attempts))
        return
    shown = JobShowOut.model_validate(
        {
            **JobDetailOut.of(record.job, record.state, services.marks(record)).model_dump(),
            "history": [AttemptOut.of(a) for a in attempts],
        }
    )
    text = tables.job_details(record, services) + "\n\n" + tables.timeline_text(attempts)
    echo_out(as_json, shown, text)


@jobs_group.command("retry")
@connection_options
@click.argument("job_ids", metavar="[ID]...", nargs=-1, type=JOB_ID)
@click.option(
    "--all-failed", is_flag=True, help="Retry every permanently failed job (see --task, --queue)."
)
@click.option(
    "--task", default=None, metavar="TASK", help="With --all-failed: only jobs of this task."
)
@click.option(
    "--queue", default=None, metavar="QUEUE", help="With --all-failed: only jobs of this queue."
)
@json_option
@click.pass_context
def retry_jobs(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    job_ids: tuple[int, ...],
    all_failed: bool,
    task: str | None,
    queue: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Run jobs now with their attempts reset to 0: the IDs given, or --all-failed.

    Jobs a worker is running are skipped and listed.
    """
    if all_failed == bool(job_ids):
        raise click.UsageError("give job IDs or --all-failed, not both or neither")
    if (task or queue) and not all_failed:
        raise click.UsageError("--task and --queue go with --all-failed")
    with open_inspector(ctx, config_file, flags) as inspector:
        if all_failed:
            retried = inspector.retry_failed(task=task, queue=queue)
            _report(inspector, "retried", retried, [], as_json=as_json)
        else:
            _act(inspector, "retried", job_ids, inspector.retry_jobs, as_json=as_json)


@jobs_group.command("remove")
@connection_options
@click.argument("job_ids", metavar="ID...", nargs=-1, type=JOB_ID, required=True)
@json_option
@click.pass_context
def remove_jobs(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    job_ids: tuple[int, ...],
    as_json: bool,
    **flags: Any,
) -> None:
    """Delete jobs. Jobs a worker is running are skipped and listed."""
    with open_inspector(ctx, config_file, flags) as inspector:
        _act(inspector, "removed", job_ids, inspector.remove_jobs, as_json=as_json)


@jobs_group.command("reschedule")
@connection_options
@click.argument("job_ids", metavar="ID...", nargs=-1, type=JOB_ID, required=True)
@click.option(
    "--run-at",
    "run_at",
    metavar="TIME",
    default=None,
    help="When they should run: ISO 8601 with a UTC offset (2030-01-01T09:00:00+00:00 or ...Z).",
)
@click.option(
    "--in",
    "delay",
    metavar="DURATION",
    default=None,
    help="Run them this long from now: 30s, 10m, 2h, 1d or combined (1h30m).",
)
@click.option(
    "--reset-attempts",
    is_flag=True,
    help="Also set their attempts to 0, so that permanently failed jobs run again.",
)
@json_option
@click.pass_context
def reschedule_jobs(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    job_ids: tuple[int, ...],
    run_at: str | None,
    delay: str | None,
    reset_attempts: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Change when jobs run. Jobs a worker is running are skipped and listed.

    As in graphile-worker, a job keeps its attempts: a permanently failed job (no
    attempts left) stays failed at its new time, and is listed as such. Add
    --reset-attempts to give it its attempts back, or use 'jobs retry' to run it now.
    """
    if (run_at is None) == (delay is None):
        raise click.UsageError("give exactly one of --run-at and --in")
    when = parse_time(run_at) if run_at is not None else from_now(delay or "")
    attempts = 0 if reset_attempts else None
    with open_inspector(ctx, config_file, flags) as inspector:
        _act(
            inspector,
            "rescheduled",
            job_ids,
            lambda ids: inspector.utils.reschedule_jobs(ids, run_at=when, attempts=attempts),
            as_json=as_json,
            extra={"run_at": when.isoformat(), "reset_attempts": reset_attempts},
        )


def _act(
    inspector: Inspector,
    verb: str,
    job_ids: Sequence[int],
    action: Callable[[list[int]], list[Job]],
    *,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """Check the jobs exist, act on them, and say which were skipped because held."""
    ids = list(dict.fromkeys(job_ids))
    existing = {record.job.id for record in inspector.get_jobs(ids)}
    missing = [job_id for job_id in ids if job_id not in existing]
    if missing:
        fail(f"no job with id {', '.join(map(str, missing))} (nothing was {verb})")
    done = action(ids)
    done_ids = {job.id for job in done}
    _report(
        inspector, verb, done, [i for i in ids if i not in done_ids], as_json=as_json, extra=extra
    )


def _report(
    inspector: Inspector,
    verb: str,
    done: list[Job],
    not_done: list[int],
    *,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    # The schema's functions skip a job only while a worker holds it; one that vanished
    # in the meantime (a worker finished it) is reported as gone.
    held = inspector.get_jobs(not_done) if not_done else []
    gone = sorted(set(not_done) - {record.job.id for record in held})
    # Rescheduling keeps attempts (graphile-worker's reschedule_jobs): say which jobs it
    # left permanently failed, rather than let "Rescheduled 1 job" suggest they will run.
    failed = [job for job in done if job.attempts >= job.max_attempts]
    if as_json:
        out = {**tables.action_json(verb, done, held, gone), **(extra or {})}
        if verb == "rescheduled":
            out["still_failed"] = [job.id for job in failed]
        click.echo(tables.dumps(out))
        return
    click.echo(tables.action_text(verb, done, held, gone))
    for job in failed if verb == "rescheduled" else ():
        click.echo(
            f"Job {job.id} is still permanently failed ({job.attempts} of"
            f" {job.max_attempts} attempts used): a new time does not give it attempts"
            f" back. To run it again: graphile-py jobs reschedule {job.id} --reset-attempts"
            f" --run-at TIME, or graphile-py jobs retry {job.id} (now)."
        )


# -- queues and cron ----------------------------------------------------------------------


@main.group("queues")
def queues_group() -> None:
    """Look at named queues."""


@queues_group.command("list")
@connection_options
@json_option
@click.pass_context
def list_queues(
    ctx: click.Context, /, *, config_file: Path | None, as_json: bool, **flags: Any
) -> None:
    """List every named queue: its jobs in each state, and who holds its lock."""
    with open_inspector(ctx, config_file, flags) as inspector:
        queues = inspector.list_queues()
    now = datetime.now(UTC)
    echo_out(as_json, [QueueOut.of(q) for q in queues], tables.queues_table(queues, now))


@main.group("cron")
def cron_group() -> None:
    """Look at recurring jobs."""


@cron_group.command("list")
@connection_options
@click.option(
    "--crontab",
    metavar="FILE",
    default=None,
    help="Compute next runs from this crontab [default: ./crontab if it exists].",
)
@json_option
@click.pass_context
def list_cron(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    crontab: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """List the cron identifiers the database knows: last execution and next run.

    Next runs (and tasks) come from the crontab the worker would read.
    """
    settings = settings_from(ctx, config_file, {**flags, "crontab": crontab})
    if settings.crontab is not None and not Path(settings.crontab).is_file():
        fail(
            f"crontab file {settings.crontab!r} does not exist: correct the path, or leave"
            " --crontab (and GRAPHILE_PY_CRONTAB) out to read ./crontab if it exists"
        )
    path = Path(settings.crontab or "crontab")
    text = None
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read crontab file '{path}': {exc}")
    with open_inspector(ctx, config_file, flags) as inspector:
        try:
            statuses = inspector.list_cron(text)
        except CrontabError as exc:
            fail(f"crontab file '{path}': {exc}")
    echo_out(as_json, [CronOut.of(s) for s in statuses], tables.cron_table(statuses))
