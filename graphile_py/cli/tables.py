"""How the admin commands show things: plain-text tables for people, JSON for scripts.

Times are shown in UTC. The JSON is that of :mod:`graphile_py.admin.views`, the shapes
the dashboard's API answers with too: times are ISO 8601 strings with their offset and
durations are seconds (``..._seconds``), so scripts never parse "3m".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from graphile_py.admin.history import HISTORY_OFF, AttemptRecord, HistoryPage
from graphile_py.admin.pools import PoolState, WorkersReport
from graphile_py.admin.records import (
    CronStatus,
    JobRecord,
    JobState,
    QueueStatus,
    QueueStatusReport,
    StateCounts,
)
from graphile_py.admin.served import Service, ServiceReport, TaskService
from graphile_py.admin.views import JobDetailOut
from graphile_py.jobs import Job
from graphile_py.logs import plural

__all__ = [
    "JsonOut",
    "action_json",
    "action_text",
    "age",
    "cron_table",
    "dumps",
    "gone_job_text",
    "history_table",
    "job_details",
    "jobs_table",
    "queues_table",
    "status_text",
    "table",
    "timeline_text",
    "when",
    "workers_text",
]

STATES = [state.value for state in JobState]


#: What the commands print as JSON: a view model, a list of them, or a plain dict.
JsonOut = BaseModel | Sequence[BaseModel] | dict[str, Any]


def dumps(value: JsonOut) -> str:
    """JSON as the commands print it (indented, non-ASCII kept as it is)."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers are right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
    ]
    numeric = [
        bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, timedelta):
        return age(value)
    return " ".join(str(value).split())  # one line per row, whatever the text holds


def when(moment: datetime | None) -> str:
    """A time as ``2026-01-01 12:00:00Z``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(delta: timedelta | None) -> str:
    """A duration as ``42s``, ``17m``, ``3.5h`` or ``2.0d``."""
    if delta is None:
        return "-"
    seconds = max(0.0, delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _counts_row(counts: StateCounts) -> list[int]:
    return [getattr(counts, state) for state in STATES]


# -- status -------------------------------------------------------------------------------


def status_text(report: QueueStatusReport, services: ServiceReport | None = None) -> str:
    """``graphile-py status``: totals, then tables by task, locked queues and pools.

    With ``services``, a warning for each task whose ready jobs no worker is known to
    serve, and a ``served`` column.
    """
    totals = report.totals
    parts = [
        f"{plural(totals.total, 'job')} at {when(report.taken_at)}: "
        + ", ".join(f"{getattr(totals, state)} {state}" for state in STATES),
        f"Oldest ready job has waited {age(report.oldest_ready_age)}."
        if report.oldest_ready_age is not None
        else "No job is ready and waiting.",
    ]
    verdicts = services.tasks if services is not None else {}
    for t in report.tasks:
        verdict = verdicts.get(t.task)
        if verdict is not None and verdict.unserved and t.counts.ready:
            parts.append(f"! Task {t.task!r} has {_jobs(t.counts.ready)} ready: {verdict.note}.")
    if report.tasks:
        served = ["served"] if services is not None else []
        parts.append(
            "\n"
            + table(
                ["task", *STATES, "oldest ready", *served],
                [
                    [
                        t.task,
                        *_counts_row(t.counts),
                        t.oldest_ready_age,
                        *([_served(verdicts.get(t.task))] if services is not None else []),
                    ]
                    for t in report.tasks
                ],
            )
        )
    busy = [q for q in report.queues if q.counts.total or q.locked_at is not None]
    if busy:
        parts.append("\n" + queues_table(busy, report.taken_at))
    if report.pools:
        parts.append(
            "\n"
            + table(
                ["pool", "jobs", "queues", "oldest lock"],
                [
                    [h.pool_id, h.jobs, h.queues, age(h.age(report.taken_at)) + " ago"]
                    for h in report.pools
                ],
            )
        )
    else:
        parts.append("\nNo worker pool holds a lock.")
    return "\n".join(parts)


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _served(verdict: TaskService | None) -> str | None:
    """The ``served`` cell: how many live pools, or why not."""
    if verdict is None:
        return None
    if verdict.service is Service.SERVED:
        count = len(verdict.pools)
        return f"{count} pool{'' if count == 1 else 's'}" if count else "yes"
    return {Service.UNSERVED: "NO", Service.UNATTEMPTED: "never tried", Service.UNKNOWN: "?"}[
        verdict.service
    ]


def queues_table(queues: Sequence[QueueStatus], now: datetime) -> str:
    """Named queues with their counts and lock holders."""
    if not queues:
        return "No named queues."
    return table(
        ["queue", *STATES, "locked by", "locked for"],
        [
            [
                q.name,
                *_counts_row(q.counts),
                q.locked_by,
                now - q.locked_at if q.locked_at is not None else None,
            ]
            for q in queues
        ],
    )


# -- jobs ---------------------------------------------------------------------------------


def jobs_table(records: Sequence[JobRecord], services: ServiceReport | None = None) -> str:
    """A line per job, newest first, with the start of its last error.

    A waiting job whose task no worker is known to serve has its state starred, and a
    line below the table says why, once per task.
    """
    if not records:
        return "No jobs match."
    marks = {r.job.id: services.marks(r) for r in records} if services is not None else {}
    notes = {verdict.task: verdict.note for verdict in marks.values() if verdict is not None}
    return table(
        ["id", "state", "task", "queue", "attempts", "run at", "key", "last error"],
        [
            [
                r.job.id,
                r.state.value + ("*" if marks.get(r.job.id) else ""),
                r.job.task_identifier,
                r.job.queue_name,
                f"{r.job.attempts}/{r.job.max_attempts}",
                r.job.run_at,
                r.job.key,
                _shorten(r.job.last_error, 60),
            ]
            for r in records
        ],
    ) + "".join(f"\n* task {task!r}: {note}." for task, note in notes.items())


def job_details(record: JobRecord, services: ServiceReport | None = None) -> str:
    """``graphile-py jobs show``: one field a line, then the payload and the last error."""
    mark = services.marks(record) if services is not None else None
    data = JobDetailOut.of(record.job, record.state, mark).model_dump(mode="json")
    if data["unserved"] is None:
        del data["unserved"]
    payload, last_error = data.pop("payload"), data.pop("last_error")
    data["flags"] = data["flags"] or None  # "-" when there are none
    width = max(len(key) for key in data)
    lines = [
        f"{key.ljust(width)}  {_cell(value) if value is not None else '-'}"
        for key, value in data.items()
    ]
    lines += ["", "payload:", json.dumps(payload, indent=2, ensure_ascii=False)]
    lines += ["", "last_error:", last_error if last_error is not None else "-"]
    return "\n".join(lines)


def _shorten(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def action_json(
    verb: str, done: Sequence[Job], held: Sequence[JobRecord], gone: Sequence[int]
) -> dict[str, Any]:
    """What ``jobs retry/remove/reschedule --json`` print: done, skipped (held), gone."""
    return {
        verb: [job.id for job in done],
        "skipped": [
            {"id": r.job.id, "locked_by": r.job.locked_by, "locked_at": _iso(r.job.locked_at)}
            for r in held
        ],
        "gone": list(gone),
    }


def action_text(
    verb: str, done: Sequence[Job], held: Sequence[JobRecord], gone: Sequence[int]
) -> str:
    """``Retried 2 jobs: 4, 5`` and a line for each job skipped because a worker holds it."""
    ids = ", ".join(str(job.id) for job in done)
    plural = "" if len(done) == 1 else "s"
    lines = [f"{verb.capitalize()} {len(done)} job{plural}" + (f": {ids}" if ids else ".")]
    lines += [
        f"Skipped job {r.job.id}: a worker holds it ({r.job.locked_by or 'unknown pool'},"
        f" since {when(r.job.locked_at)})."
        for r in held
    ]
    if gone:
        lines.append(f"Gone before it could be {verb}: {', '.join(map(str, gone))}.")
    return "\n".join(lines)


# -- cron ---------------------------------------------------------------------------------


def cron_table(statuses: Sequence[CronStatus]) -> str:
    """Known cron identifiers, their last execution and next run."""
    if not statuses:
        return "No cron identifier is known to the database yet."
    return table(
        ["identifier", "task", "last execution", "next run", "known since"],
        [
            [
                s.identifier,
                s.task if s.in_crontab is not False else "(not in the crontab)",
                s.last_execution,
                s.next_run,
                s.known_since,
            ]
            for s in statuses
        ],
    )


# -- workers and history ----------------------------------------------------------------------


_WORKER_COLUMNS = [
    *("pool", "state", "host", "pid", "version", "jobs", "heartbeat", "running"),
    *("succeeded", "failed", "started", "lost by"),
]


def workers_text(report: WorkersReport) -> str:
    """``graphile-py workers``: a line per registered pool, then unregistered lock holders."""
    alive = report.count(PoolState.ALIVE)
    parts = [f"{alive} pool{'' if alive == 1 else 's'} alive at {when(report.taken_at)}."]
    if report.pools:
        parts.append(
            "\n"
            + table(
                _WORKER_COLUMNS,
                [
                    [
                        p.id,
                        p.state.value,
                        p.hostname,
                        p.pid,
                        p.version,
                        p.concurrency,
                        age(p.heartbeat_age) + " ago",
                        p.running_jobs,
                        p.jobs_succeeded,
                        p.jobs_failed,
                        p.started_at,
                        _lost_by(p.lost_by, p.lost_at, p.jobs_rescued),
                    ]
                    for p in report.pools
                ],
            )
        )
    else:
        parts.append("No registered worker pool is running.")
    if report.unregistered:
        parts.append(
            "\nHolding locks without registering (Node or older graphile-py; their locks"
            " are released after 4 hours, or with graphile-py unlock):\n"
            + table(
                ["pool", "jobs", "queues", "oldest lock"],
                [
                    [h.pool_id, h.jobs, h.queues, age(h.age(report.taken_at)) + " ago"]
                    for h in report.unregistered
                ],
            )
        )
    return "\n".join(parts)


def _lost_by(pool: str | None, at: datetime | None, rescued: int | None) -> str | None:
    if pool is None:
        return None
    return f"{pool} at {when(at)} ({plural(rescued or 0, 'job')} released)"


def history_table(page: HistoryPage) -> str:
    """``graphile-py jobs history``: a line per attempt, newest first."""
    if not page.attempts:
        return "No attempt matches." if page.recorded else HISTORY_OFF + "."
    return table(
        ["id", "job", "task", "queue", "attempt", "outcome", "finished", "took", "pool", "error"],
        [
            [
                a.id,
                a.job_id,
                a.task_identifier,
                a.queue_name,
                f"{a.attempt}/{a.max_attempts}",
                a.outcome.value,
                a.finished_at,
                _took(a),
                a.pool_id,
                _shorten(a.error, 50),
            ]
            for a in page.attempts
        ],
    )


def _took(attempt: AttemptRecord) -> str:
    seconds = (attempt.finished_at - attempt.started_at).total_seconds()
    return f"{seconds:.3f}s" if seconds < 10 else age(attempt.finished_at - attempt.started_at)


def timeline_text(attempts: Sequence[AttemptRecord]) -> str:
    """A job's recorded attempts, oldest first, each with its whole error."""
    if not attempts:
        return "attempts recorded: none (job history is kept only by workers run with --history)"
    lines = ["attempts recorded:"]
    for a in attempts:
        lines.append(
            f"  #{a.attempt}/{a.max_attempts}  {a.outcome.value:<9} {when(a.started_at)}"
            f"  took {_took(a)}  on {a.pool_id}"
        )
        if a.error:
            lines += ["      " + line for line in a.error.splitlines()]
    return "\n".join(lines)


def gone_job_text(job_id: int, attempts: Sequence[AttemptRecord]) -> str:
    """``jobs show`` for a job that is gone: what its history says."""
    last = attempts[-1]
    head = [
        f"Job {job_id} no longer exists (it succeeded or was removed); its history:",
        f"task_identifier  {last.task_identifier}",
        f"queue_name       {last.queue_name or '-'}",
        f"key              {last.key or '-'}",
        "",
    ]
    return "\n".join(head) + timeline_text(attempts)
