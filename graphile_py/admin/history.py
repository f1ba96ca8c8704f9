"""What happened to a job: its recorded attempts, the history by filter, and replaying it.

With history on (``--history``), every attempt a Python pool runs is recorded in the side
schema's ``job_attempts``, with its outcome (:class:`Outcome`) and error, and kept for
``history_retention``; graphile-worker deletes a job that succeeds, so this is the only
trace of it. Attempts run by Node workers are not recorded.

A replay adds a new job with the task, payload and options of an old one: from the job
itself while it exists, else from its latest recorded attempt, which keeps the task,
payload, queue and ``max_attempts`` but not the priority or flags (the new job gets the
defaults) nor a payload over ``history_payload_limit`` (the replay is refused). The job
key is never copied: a new job with the old key would replace or merge with it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from graphile_py.admin.records import MAX_LIST_LIMIT, JobRecord
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.db.history_views import HistoryViewStatements
from graphile_py.errors import ConfigurationError, JobRejected
from graphile_py.jobs import Job

__all__ = [
    "HISTORY_OFF",
    "AttemptRecord",
    "HistoryFilter",
    "HistoryPage",
    "Outcome",
    "Replay",
    "read_history",
    "read_timeline",
    "replay_job",
]

#: What an operator is told when nothing was ever recorded.
HISTORY_OFF = (
    "No attempt has been recorded: job history is off unless the workers run with"
    " --history (history = true in graphile_py.toml)"
)


class Outcome(enum.StrEnum):
    """How an attempt ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    #: The pool stopped before the task finished and handed the job back.
    ABANDONED = "abandoned"
    #: The pool running it was declared lost (no heartbeat) and the job released.
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a job, as recorded when it finished (the payload is not included)."""

    id: int
    job_id: int
    task_identifier: str
    queue_name: str | None
    key: str | None
    #: False when the payload was over the size cap and not kept.
    payload_stored: bool
    payload_bytes: int
    attempt: int
    max_attempts: int
    pool_id: str
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    error: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AttemptRecord:
        """A record from a row of :class:`HistoryViewStatements`."""
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            task_identifier=row["task_identifier"],
            queue_name=row["queue_name"],
            key=row["key"],
            payload_stored=row["payload_stored"],
            payload_bytes=row["payload_bytes"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            pool_id=row["pool_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            outcome=Outcome(row["outcome"]),
            error=row["error"],
        )


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which attempts to list; every field that is set must match."""

    task: str | None = None
    queue: str | None = None
    outcome: Outcome | None = None
    #: Only attempts that finished at or after this time (timezone-aware).
    since: datetime | None = None
    job_id: int | None = None
    limit: int = 100
    #: Only attempts with a smaller id (keyset pagination, newest first).
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of attempts, newest first; ``recorded`` is False when history holds nothing."""

    attempts: Sequence[AttemptRecord]
    recorded: bool


@dataclass(frozen=True, slots=True)
class Replay:
    """The job a replay added, and where its task, payload and options came from."""

    job: Job
    source: Literal["job", "history"]
    #: Options the source did not keep, so the new job has their defaults.
    defaulted: tuple[str, ...]


def _views(utils: WorkerUtils) -> HistoryViewStatements:
    return HistoryViewStatements.for_schema(utils.schema, utils.side_schema)


def read_history(utils: WorkerUtils, where: HistoryFilter | None = None) -> HistoryPage:
    """Attempts matching ``where``, newest first.

    Raises :class:`~graphile_py.ConfigurationError` for a bad limit, outcome or time,
    and :class:`~graphile_py.DatabaseError` when the side schema is not installed.
    """
    where = where or HistoryFilter()
    outcome = _check(where)
    views = _views(utils)
    with utils.connection() as conn:
        rows = views.list_attempts(
            conn,
            task=where.task,
            queue=where.queue,
            outcome=outcome,
            since=where.since,
            job_id=where.job_id,
            before_id=where.before_id,
            limit=where.limit,
        )
        recorded = bool(rows) or views.any_attempt(conn)
    return HistoryPage(attempts=[AttemptRecord.of(row) for row in rows], recorded=recorded)


def read_timeline(utils: WorkerUtils, job_id: int) -> list[AttemptRecord]:
    """Every recorded attempt of job ``job_id``, oldest first (empty if none)."""
    with utils.connection() as conn:
        return [AttemptRecord.of(row) for row in _views(utils).timeline(conn, job_id)]


def replay_job(utils: WorkerUtils, job_id: int, current: JobRecord | None) -> Replay | None:
    """Add a new job like job ``job_id``: like ``current`` if it exists, else its history.

    Returns None when there is neither the job nor any recorded attempt of it. Raises
    :class:`~graphile_py.JobRejected` when only history is left and it did not keep the
    payload.
    """
    if current is not None:
        job = current.job
        added = utils.add_job(
            job.task_identifier,
            job.payload,
            queue_name=job.queue_name,
            priority=job.priority,
            max_attempts=job.max_attempts,
            flags=sorted(job.flag_names) or None,
        )
        return Replay(job=added, source="job", defaulted=())
    with utils.connection() as conn:
        last = _views(utils).last_attempt(conn, job_id)
    if last is None:
        return None
    if not last["payload_stored"]:
        raise JobRejected(
            f"job {job_id} is gone and its history did not keep its payload"
            f" ({last['payload_bytes']} bytes, over history_payload_limit), so it cannot be"
            " replayed; add the job again with its payload"
        )
    added = utils.add_job(
        last["task_identifier"],
        last["payload"],
        queue_name=last["queue_name"],
        max_attempts=last["max_attempts"],
    )
    return Replay(job=added, source="history", defaulted=("priority", "flags"))


def _check(where: HistoryFilter) -> str | None:
    """Validate a filter; return its outcome as the SQL string (or None)."""
    if isinstance(where.limit, bool) or not isinstance(where.limit, int):
        raise ConfigurationError(f"limit must be an integer, not {where.limit!r}")
    if not 1 <= where.limit <= MAX_LIST_LIMIT:
        raise ConfigurationError(f"limit must be between 1 and {MAX_LIST_LIMIT}, not {where.limit}")
    if where.since is not None and (where.since.tzinfo is None or where.since.utcoffset() is None):
        raise ConfigurationError("since must be a timezone-aware datetime (for example +00:00)")
    if where.outcome is None:
        return None
    try:
        return Outcome(where.outcome).value
    except ValueError:
        allowed = ", ".join(outcome.value for outcome in Outcome)
        raise ConfigurationError(
            f"unknown outcome {where.outcome!r}; expected one of: {allowed}"
        ) from None
