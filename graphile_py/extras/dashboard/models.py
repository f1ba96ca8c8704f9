"""The shapes only the dashboard's JSON API exchanges (pydantic models, hence OpenAPI schemas).

What it answers about jobs, queues, tasks, pools and cron comes from
:mod:`graphile_py.admin.views`, the shapes ``--json`` prints too; here are the requests,
the throughput history and the dashboard's own answers.

Every string that reaches the database is bounded and refuses NUL (PostgreSQL cannot
store it); job ids stop at 2**53 - 1, JavaScript's largest exact integer, so that an id
survives a round trip through the page (a sequence would take centuries to get there).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from graphile_py.admin.history import Outcome
from graphile_py.admin.records import JobState
from graphile_py.admin.views import JobOut, Moment
from graphile_py.extras.dashboard.sampler import Sample

__all__ = [
    "MAX_ID",
    "AttemptQuery",
    "BulkOut",
    "EnqueueIn",
    "ErrorOut",
    "HistoryOut",
    "HistoryPoint",
    "InfoOut",
    "JobListOut",
    "JobQuery",
    "RescheduleIn",
    "RetryFailed",
    "RetryIds",
]

#: The largest job id the API accepts.
MAX_ID = 2**53 - 1
NoNul = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NoNul)]


class JobListOut(BaseModel):
    """A page of jobs, newest first; pass ``next_before_id`` as ``before_id`` for the next."""

    jobs: list[JobOut]
    next_before_id: int | None


class HistoryPoint(BaseModel):
    """Events in the interval ending at ``t`` (``seconds`` long) and the counts then."""

    t: Moment
    seconds: float
    created: int
    completed: int
    failed: int
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed_total: int

    @classmethod
    def of(cls, sample: Sample) -> HistoryPoint:
        return cls(
            t=sample.taken_at,
            seconds=round(sample.seconds, 3),
            created=sample.created or 0,
            completed=sample.completed or 0,
            failed=sample.failed or 0,
            ready=sample.ready,
            scheduled=sample.scheduled,
            running=sample.running,
            retrying=sample.retrying,
            failed_total=sample.failed_total,
        )


class HistoryOut(BaseModel):
    """The sampler's history, for the throughput chart."""

    interval: float
    window: float
    bucket: float
    last_error: str | None
    points: list[HistoryPoint]


class InfoOut(BaseModel):
    """How this dashboard is set up (the page uses it to show or hide the buttons)."""

    version: str
    schema_name: str
    allow_actions: bool
    auth: list[str]
    sample_interval: float


class EnqueueIn(BaseModel):
    """A job to add, with graphile-worker's options."""

    model_config = ConfigDict(extra="forbid")

    task: Name
    payload: JsonValue = None
    queue: Name | None = None
    run_at: AwareDatetime | None = None
    max_attempts: Annotated[int, Field(ge=1, le=32767)] | None = None
    key: Annotated[str, Field(min_length=1, max_length=512, pattern=NoNul)] | None = None
    key_mode: Literal["replace", "preserve_run_at", "unsafe_dedupe"] | None = None
    priority: Annotated[int, Field(ge=-32768, le=32767)] | None = None
    flags: Annotated[list[Name], Field(max_length=100)] | None = None


class JobQuery(BaseModel):
    """The filters of ``GET /jobs``; every one given must match."""

    task: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    queue: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    state: JobState | None = None
    key: Annotated[str, Field(max_length=512, pattern=NoNul)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    before_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class AttemptQuery(BaseModel):
    """The filters of ``GET /history``; every one given must match."""

    task: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    queue: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    outcome: Outcome | None = None
    since: AwareDatetime | None = None
    job_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    before_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class RetryIds(BaseModel):
    """Retry these jobs."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=1000)]


class RetryFailed(BaseModel):
    """Retry every permanently failed job, of one task and/or queue if given."""

    model_config = ConfigDict(extra="forbid")

    all_failed: Literal[True]
    task: Name | None = None
    queue: Name | None = None


class RescheduleIn(BaseModel):
    """When the job should run next."""

    model_config = ConfigDict(extra="forbid")

    run_at: AwareDatetime


class ErrorOut(BaseModel):
    """Every error answer: a short machine-readable code and a message for people."""

    error: str
    message: str


class BulkOut(BaseModel):
    """The jobs an action changed, and those it left alone (running, or unknown)."""

    changed: list[int]
    skipped: list[int]
