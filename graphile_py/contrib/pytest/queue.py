"""Looking at the queue from a test: ``queued_jobs`` and ``assert_job_enqueued``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from graphile_py.admin.inspector import Inspector
from graphile_py.admin.records import MAX_LIST_LIMIT, JobFilter, JobRecord, JobState
from graphile_py.jobs import Job

__all__ = ["assert_job_enqueued", "contains", "queued_jobs"]

_NOT_SET = object()


def queued_records(
    inspector: Inspector, task: str | None = None, *, include_failed: bool = False
) -> list[JobRecord]:
    """Jobs in the table (of ``task``, when given), oldest first, with their state."""
    records = reversed(inspector.list_jobs(JobFilter(task=task, limit=MAX_LIST_LIMIT)))
    return [r for r in records if include_failed or r.state != JobState.FAILED]


def queued_jobs(
    inspector: Inspector, task: str | None = None, *, include_failed: bool = False
) -> list[Job]:
    """The jobs waiting to run (of ``task``, when given), oldest first.

    Running, scheduled and retrying jobs count as queued; permanently failed ones only
    with ``include_failed``.
    """
    return [r.job for r in queued_records(inspector, task, include_failed=include_failed)]


def contains(actual: object, expected: object) -> bool:
    """True when ``expected`` is a part of ``actual``: a dict's keys recursively, else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


def assert_job_enqueued(
    inspector: Inspector,
    task: str,
    *,
    payload: object = _NOT_SET,
    payload_contains: object = _NOT_SET,
    queue_name: object = _NOT_SET,
    job_key: object = _NOT_SET,
    count: int | None = None,
) -> list[Job]:
    """Assert that ``task`` has queued jobs matching every condition given; return them.

    ``payload`` must equal the job's payload, ``payload_contains`` be a part of it (dict
    keys compared recursively). With ``count`` exactly that many jobs must match, else at
    least one. The failure message lists what is queued.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not ours
    records = queued_records(inspector)
    matching = [
        r.job
        for r in records
        if r.job.task_identifier == task
        and (payload is _NOT_SET or r.job.payload == payload)
        and (payload_contains is _NOT_SET or contains(r.job.payload, payload_contains))
        and (queue_name is _NOT_SET or r.job.queue_name == queue_name)
        and (job_key is _NOT_SET or r.job.key == job_key)
    ]
    if (len(matching) == count) if count is not None else matching:
        return matching
    conditions = [
        f"{name}={value!r}"
        for name, value in (
            ("payload", payload),
            ("payload_contains", payload_contains),
            ("queue_name", queue_name),
            ("job_key", job_key),
        )
        if value is not _NOT_SET
    ]
    wanted = f"job for task {task!r}" + (f" with {', '.join(conditions)}" if conditions else "")
    found = f"found {len(matching)}" if count is not None else "found none"
    expected = f"expected {count} {wanted}" if count is not None else f"expected a {wanted}"
    raise AssertionError(f"{expected}, {found}.\n{describe_queue(records)}")


def describe_queue(records: Sequence[JobRecord], limit: int = 20) -> str:
    """What is queued, one job a line, for failure messages."""
    if not records:
        return "The queue is empty."
    lines = [f"Queued jobs ({len(records)}):"]
    for record in records[:limit]:
        job = record.job
        extra = "".join(
            f", {label} {value!r}"
            for label, value in (("queue", job.queue_name), ("key", job.key))
            if value is not None
        )
        payload = json.dumps(job.payload, ensure_ascii=False, default=str)
        if len(payload) > 200:
            payload = payload[:197] + "..."
        lines.append(f"  #{job.id} {job.task_identifier} {payload} ({record.state}{extra})")
    if len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more")
    return "\n".join(lines)
