"""How the admin commands show things: plain-text tables for people, JSON for scripts.

Times are shown in UTC. In JSON, times are ISO 8601 strings with their offset and
durations are seconds (``..._seconds``), so scripts never parse "3m".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from graphile_py.admin.inspector import (
    CronStatus,
    JobRecord,
    JobState,
    QueueStatus,
    QueueStatusReport,
    StateCounts,
)
from graphile_py.admin.utils import LockHolder
from graphile_py.jobs import Job

__all__ = [
    "action_json",
    "action_text",
    "age",
    "cron_json",
    "cron_table",
    "dumps",
    "job_details",
    "job_json",
    "jobs_table",
    "queue_json",
    "queues_table",
    "status_json",
    "status_text",
    "table",
    "when",
]

STATES = [state.value for state in JobState]


def dumps(value: Any) -> str:
    """JSON as the commands print it."""
    return json.dumps(value, indent=2, ensure_ascii=False)


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


def _seconds(delta: timedelta | None) -> float | None:
    return round(delta.total_seconds(), 3) if delta is not None else None


def _counts_json(counts: StateCounts) -> dict[str, int]:
    return {**{state: getattr(counts, state) for state in STATES}, "total": counts.total}


def _counts_row(counts: StateCounts) -> list[int]:
    return [getattr(counts, state) for state in STATES]


# -- status -------------------------------------------------------------------------------


def _pool_json(holder: LockHolder, now: datetime) -> dict[str, Any]:
    return {
        "pool_id": holder.pool_id,
        "jobs": holder.jobs,
        "queues": holder.queues,
        "oldest_lock": _iso(holder.oldest_lock),
        "age_seconds": _seconds(holder.age(now)),
    }


def queue_json(queue: QueueStatus) -> dict[str, Any]:
    """One named queue for ``--json``."""
    return {
        "name": queue.name,
        "counts": _counts_json(queue.counts),
        "locked_at": _iso(queue.locked_at),
        "locked_by": queue.locked_by,
    }


def status_json(report: QueueStatusReport) -> dict[str, Any]:
    """``graphile-py status --json``."""
    return {
        "taken_at": _iso(report.taken_at),
        "totals": _counts_json(report.totals),
        "oldest_ready_age_seconds": _seconds(report.oldest_ready_age),
        "tasks": [
            {
                "task": task.task,
                "counts": _counts_json(task.counts),
                "oldest_ready_age_seconds": _seconds(task.oldest_ready_age),
            }
            for task in report.tasks
        ],
        "queues": [queue_json(queue) for queue in report.queues],
        "locked_queues": [queue.name for queue in report.locked_queues],
        "pools": [_pool_json(holder, report.taken_at) for holder in report.pools],
    }


def status_text(report: QueueStatusReport) -> str:
    """``graphile-py status``: totals, then tables by task, locked queues and pools."""
    totals = report.totals
    parts = [
        f"{totals.total} jobs at {when(report.taken_at)}: "
        + ", ".join(f"{getattr(totals, state)} {state}" for state in STATES),
        f"Oldest ready job has waited {age(report.oldest_ready_age)}."
        if report.oldest_ready_age is not None
        else "No job is ready and waiting.",
    ]
    if report.tasks:
        parts.append(
            "\n"
            + table(
                ["task", *STATES, "oldest ready"],
                [[t.task, *_counts_row(t.counts), t.oldest_ready_age] for t in report.tasks],
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


def job_json(job: Job, state: JobState | None = None) -> dict[str, Any]:
    """Every field of a job (and its state, when known) for ``--json``."""
    data: dict[str, Any] = {"id": job.id}
    if state is not None:
        data["state"] = state.value
    data.update(
        {
            "task_identifier": job.task_identifier,
            "queue_name": job.queue_name,
            "payload": job.payload,
            "priority": job.priority,
            "run_at": _iso(job.run_at),
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "last_error": job.last_error,
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.updated_at),
            "key": job.key,
            "locked_at": _iso(job.locked_at),
            "locked_by": job.locked_by,
            "revision": job.revision,
            "flags": sorted(job.flag_names) or None,
        }
    )
    return data


def jobs_table(records: Sequence[JobRecord]) -> str:
    """A line per job, newest first, with the start of its last error."""
    if not records:
        return "No jobs match."
    return table(
        ["id", "state", "task", "queue", "attempts", "run at", "key", "last error"],
        [
            [
                r.job.id,
                r.state.value,
                r.job.task_identifier,
                r.job.queue_name,
                f"{r.job.attempts}/{r.job.max_attempts}",
                r.job.run_at,
                r.job.key,
                _shorten(r.job.last_error, 60),
            ]
            for r in records
        ],
    )


def job_details(record: JobRecord) -> str:
    """``graphile-py jobs show``: one field a line, then the payload and the last error."""
    data = job_json(record.job, record.state)
    payload, last_error = data.pop("payload"), data.pop("last_error")
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


def cron_json(status: CronStatus) -> dict[str, Any]:
    """One known cron identifier for ``--json``."""
    return {
        "identifier": status.identifier,
        "task": status.task,
        "known_since": _iso(status.known_since),
        "last_execution": _iso(status.last_execution),
        "next_run": _iso(status.next_run),
        "in_crontab": status.in_crontab,
    }


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
