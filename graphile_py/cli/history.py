"""``graphile-py jobs history`` and ``jobs replay``: what happened to jobs, and running one again.

The history is recorded by workers run with ``--history`` (attempts run by Node workers
are not recorded); these commands only read it, and replay adds one job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from graphile_py.admin.history import HistoryFilter, Outcome
from graphile_py.admin.records import JobState
from graphile_py.admin.views import AttemptListOut, ReplayOut
from graphile_py.cli import tables
from graphile_py.cli.common import connection_options, fail
from graphile_py.cli.ops import (
    JOB_ID,
    echo_out,
    jobs_group,
    json_option,
    open_inspector,
    page_options,
)
from graphile_py.cli.times import parse_duration, parse_time

__all__ = ["history", "replay"]


@jobs_group.command("history")
@connection_options
@click.option("--task", default=None, metavar="TASK", help="Only attempts of this task identifier.")
@click.option(
    "--queue", default=None, metavar="QUEUE", help="Only attempts of jobs in this named queue."
)
@click.option(
    "--outcome",
    type=click.Choice([outcome.value for outcome in Outcome]),
    default=None,
    help="Only attempts that ended so.",
)
@click.option(
    "--since",
    metavar="WHEN",
    default=None,
    help="Only attempts finished since then: a duration ago (30m, 2h, 1d) or an ISO 8601 time.",
)
@click.option(
    "--job", "job_id", type=JOB_ID, default=None, metavar="ID", help="Only attempts of this job."
)
@page_options("attempts")
@json_option
@click.pass_context
def history(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    task: str | None,
    queue: str | None,
    outcome: str | None,
    since: str | None,
    job_id: int | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """List recorded attempts, newest first (workers record them with --history)."""
    where = HistoryFilter(
        task=task,
        queue=queue,
        outcome=Outcome(outcome) if outcome else None,
        since=_since(since) if since is not None else None,
        job_id=job_id,
        limit=limit,
        before_id=before_id,
    )
    with open_inspector(ctx, config_file, flags) as inspector:
        page = inspector.history(where)
    echo_out(as_json, AttemptListOut.of(page, limit), tables.history_table(page))


def _since(text: str) -> datetime:
    """A duration ago (``2h``) or a time (``2030-01-01T09:00:00Z``)."""
    for parse in (_ago, parse_time):
        try:
            return parse(text, "'--since'")
        except click.BadParameter:
            pass
    raise click.BadParameter(
        f"{text!r} is neither a duration (30m, 2h, 1d) nor an ISO 8601 time with a UTC"
        " offset (2030-01-01T09:00:00Z)",
        param_hint="'--since'",
    )


def _ago(text: str, param_hint: str) -> datetime:
    return datetime.now(UTC) - parse_duration(text, param_hint)


@jobs_group.command("replay")
@connection_options
@click.argument("job_id", metavar="ID", type=JOB_ID)
@json_option
@click.pass_context
def replay(
    ctx: click.Context, /, *, config_file: Path | None, job_id: int, as_json: bool, **flags: Any
) -> None:
    """Add a new job with the task, payload and options of job ID.

    From the job while it exists (queue, priority, max attempts, flags); once it is gone,
    from its latest recorded attempt (queue and max attempts: priority and flags take
    their defaults). The job key is not copied. Refused when the history did not keep
    the payload (over history_payload_limit).
    """
    with open_inspector(ctx, config_file, flags) as inspector:
        done = inspector.replay(job_id)
        if done is None:
            fail(f"no job with id {job_id}, and no recorded attempt of it")
        record = inspector.get_job(done.job.id)
    state = record.state if record is not None else JobState.of(done.job)
    out = ReplayOut.of(job_id, done, state)
    source = "the job" if done.source == "job" else "its history"
    text = (
        f"Replayed job {job_id} as job {done.job.id} ({done.job.task_identifier}), from {source}."
    )
    if done.defaulted:
        text += f" Not in the history, so defaulted: {', '.join(done.defaulted)}."
    echo_out(as_json, out, text)
