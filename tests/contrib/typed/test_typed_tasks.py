"""Typed task payloads: registration, validation on a real worker, checked enqueueing.

The tasks run on a real worker pool against the real database; what a bad payload does to
the job (failed for good, or retried) is read back from the job's row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from graphile_py import (
    InvalidPayload,
    JobHelpers,
    PayloadError,
    PermanentFailure,
    TaskLoadError,
    TaskRegistry,
    WorkerEvents,
    add_job,
    add_jobs,
)
from graphile_py.db.side_schema import side_schema_for
from graphile_py.jobs import Job
from graphile_py.typed import TypedTask, payload_type_of
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, run_once


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Address(BaseModel):
    email: str
    name: str | None = None


class SendEmail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Address
    subject: str
    send_on: date
    priority: Priority = Priority.LOW
    tags: list[str] = Field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Resize:
    image_id: int
    width: int
    taken_at: datetime | None = None


# -- registration ---------------------------------------------------------------------------


def test_typed_functions_become_typed_tasks_and_untyped_ones_stay_as_they_are() -> None:
    registry = TaskRegistry()

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> None: ...

    @registry.task("images/resize", timeout=5, on_invalid="retry")
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    def plain(payload, helpers):  # type: ignore[no-untyped-def]
        return None

    def with_dict(payload: dict[str, Any], helpers: JobHelpers) -> None: ...

    assert registry.task(plain) is plain
    assert registry.task(with_dict) is with_dict
    assert registry["plain"] is plain  # the worker calls untyped tasks directly
    assert isinstance(send_email, TypedTask)
    assert (send_email.identifier, send_email.payload_model) == ("send_email", SendEmail)
    assert (resize.identifier, resize.payload_model, resize.on_invalid) == (
        "images/resize",
        Resize,
        "retry",
    )
    assert send_email.__name__ == "send_email"
    assert registry.timeouts == {"images/resize": 5}
    assert set(registry.typed) == {"send_email", "images/resize"}
    assert registry["send_email"] is not send_email  # the worker calls the validating runner
    assert sorted(registry) == ["images/resize", "plain", "send_email", "with_dict"]


def test_the_handle_is_still_the_function() -> None:
    registry = TaskRegistry()
    seen: list[SendEmail] = []

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> str:
        seen.append(payload)
        return "sent"

    message = SendEmail(to=Address(email="a@example.com"), subject="hi", send_on=date.today())
    assert send_email(message, None) == "sent"  # type: ignore[arg-type]
    assert seen == [message]


def test_string_annotations_are_resolved_at_registration() -> None:
    # This module has `from __future__ import annotations`: every annotation is a string.
    def task(payload: Resize, helpers: JobHelpers) -> None: ...

    assert payload_type_of(task) is Resize


def test_an_annotation_that_exists_only_for_type_checkers_leaves_the_task_untyped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A TypedDict imported under TYPE_CHECKING, say: the task ran untyped before typed
    # payloads existed, and must keep running.
    def task(payload: OnlyForTypeCheckers, helpers: JobHelpers) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    registry = TaskRegistry()
    with caplog.at_level("INFO", logger="graphile_py.tasks"):
        assert registry.task(task) is task
    assert "'OnlyForTypeCheckers' does not resolve at run time" in caplog.text
    assert registry.typed == {}


def test_only_the_payload_annotation_is_resolved() -> None:
    # helpers' annotation names something imported for type checkers only: no matter.
    def task(payload: Resize, helpers: NotImportedAtRunTime) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert payload_type_of(task) is Resize


def test_a_bad_on_invalid_is_refused() -> None:
    def task(payload: Resize, helpers: JobHelpers) -> None: ...

    with pytest.raises(TaskLoadError, match="on_invalid must be 'fail' or 'retry'"):
        TaskRegistry().task("t", on_invalid="ignore")(task)  # type: ignore[call-overload]


def test_payload_schemas_describe_each_typed_task() -> None:
    registry = TaskRegistry()
    registry.add("send_email", _noop_email)
    registry.add("untyped", lambda payload, helpers: None)
    schemas = registry.payload_schemas()
    assert list(schemas) == ["send_email"]
    schema = schemas["send_email"]
    assert schema["title"] == "SendEmail"
    assert schema["required"] == ["to", "subject", "send_on"]
    assert schema["properties"]["send_on"]["format"] == "date"
    assert "Address" in schema["$defs"]


def _noop_email(payload: SendEmail, helpers: JobHelpers) -> None: ...


# -- running on a real worker ---------------------------------------------------------------


def test_the_task_gets_a_validated_and_converted_payload(db: TestDatabase) -> None:
    registry = TaskRegistry()
    received: list[Any] = []

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> None:
        received.append(payload)

    @registry.task
    async def resize(payload: Resize, helpers: JobHelpers) -> None:
        await asyncio.sleep(0)
        received.append(payload)

    with db.connect() as conn:
        add_job(
            conn,
            "send_email",
            {"to": {"email": "a@example.com"}, "subject": "hi", "send_on": "2026-12-03"},
            schema=db.schema,
        )
        add_job(conn, "resize", {"image_id": "7", "width": 640}, schema=db.schema)
    assert run_once(db, registry) == 0

    email, image = sorted(received, key=lambda p: type(p).__name__, reverse=True)
    assert email == SendEmail(
        to=Address(email="a@example.com"), subject="hi", send_on=date(2026, 12, 3)
    )
    assert image == Resize(image_id=7, width=640)  # "7" converted, as pydantic does
    assert jobs_rows(db) == []


class FailureEvents(WorkerEvents):
    def __init__(self) -> None:
        self.failed: list[tuple[Job, BaseException]] = []
        self.lock = threading.Lock()

    def job_failed(self, worker_id: str, job: Job, error: BaseException, batch: Any) -> None:
        with self.lock:
            self.failed.append((job, error))


def test_an_invalid_payload_fails_the_job_for_good_naming_the_fields(db: TestDatabase) -> None:
    registry = TaskRegistry()
    calls: list[object] = []

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> None:
        calls.append(payload)

    with db.connect() as conn:
        job = add_job(
            conn,
            "send_email",
            {"to": {"name": "no email"}, "send_on": "not a date", "surprise": 1},
            schema=db.schema,
        )
    events = FailureEvents()
    assert run_once(db, registry, events=events) == 0

    assert calls == []
    [row] = jobs_rows(db)
    assert row["id"] == job.id
    # Failed permanently: no attempts left, so neither runtime will run it again.
    assert (row["attempts"], row["max_attempts"]) == (25, 25)
    assert row["locked_by"] is None
    message = row["last_error"]
    assert message.startswith("the payload of task 'send_email' is not a valid SendEmail: ")
    for field in ("to.email: Field required", "subject: Field required", "send_on: Input"):
        assert field in message
    assert "surprise: Extra inputs are not permitted" in message
    [(failed_job, error)] = events.failed
    assert failed_job.id == job.id
    assert isinstance(error, PermanentFailure)
    assert isinstance(error.__cause__, InvalidPayload)
    assert {tuple(e["loc"]) for e in error.__cause__.errors} >= {("to", "email"), ("subject",)}


def test_on_invalid_retry_fails_only_the_attempt(db: TestDatabase) -> None:
    registry = TaskRegistry()

    @registry.task("resize", on_invalid="retry")
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    with db.connect() as conn:
        add_job(conn, "resize", {"image_id": "x"}, schema=db.schema)
    events = FailureEvents()
    run_once(db, registry, events=events)

    [row] = jobs_rows(db)
    assert (row["attempts"], row["max_attempts"]) == (1, 25)
    assert row["run_at"] > datetime.now(UTC)  # retried later, with the usual backoff
    assert "image_id: Input should be a valid integer" in row["last_error"]
    assert "width: Field required" in row["last_error"]
    assert events.failed == []


@pytest.mark.parametrize("history", [False, True])
def test_a_task_raising_permanent_failure_is_not_retried(db: TestDatabase, history: bool) -> None:
    registry = TaskRegistry()
    ran: list[int] = []

    @registry.task
    def charge(payload: Any, helpers: JobHelpers) -> None:
        ran.append(helpers.job.attempts)
        raise PermanentFailure("card declined: do not retry")

    @registry.task
    def flaky(payload: Any, helpers: JobHelpers) -> None:
        raise RuntimeError("try again")

    with db.connect() as conn:
        charged = add_job(conn, "charge", {}, schema=db.schema, max_attempts=5)
        add_job(conn, "flaky", {}, schema=db.schema, max_attempts=5)
    run_once(db, registry, history=history)
    run_once(db, registry, history=history)  # nothing is ready: a permanent failure stays put

    rows = {row["id"]: row for row in jobs_rows(db)}
    assert ran == [1]
    # last_error's first line is the message (a traceback may follow it).
    assert rows[charged.id]["attempts"] == 5
    assert rows[charged.id]["last_error"].partition("\n")[0] == "card declined: do not retry"
    [other] = [row for job_id, row in rows.items() if job_id != charged.id]
    assert other["attempts"] == 1  # an ordinary failure keeps its retries
    if history:
        side = sql.Identifier(side_schema_for(db.schema))
        with db.connect() as conn:
            recorded = conn.execute(
                sql.SQL(
                    "select attempt, max_attempts, outcome, error from {}.job_attempts"
                    " where job_id = %s"
                ).format(side),
                (charged.id,),
            ).fetchall()
        [(attempt, limit, outcome, error)] = recorded
        assert (attempt, limit, outcome) == (1, 5, "failure")
        assert error.partition("\n")[0] == "card declined: do not retry"


def test_the_trace_context_key_never_reaches_a_model(db: TestDatabase) -> None:
    # SendEmail forbids extra keys: the "_trace" of an instrumented producer (ours or
    # graphile_worker_rs's) must not make its payloads invalid.
    registry = TaskRegistry()
    received: list[SendEmail] = []

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> None:
        received.append(payload)

    trace = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    with db.connect() as conn:
        payload = {"to": {"email": "a@b.c"}, "subject": "s", "send_on": "2026-01-01"}
        add_job(conn, "send_email", {**payload, "_trace": {**trace, "flags": 1}}, schema=db.schema)
    run_once(db, registry)
    assert [m.subject for m in received] == ["s"]
    assert jobs_rows(db) == []


# -- enqueueing through the handle ----------------------------------------------------------


def test_add_job_stores_the_payload_as_json_the_worker_accepts(db: TestDatabase) -> None:
    registry = TaskRegistry()
    received: list[SendEmail] = []

    @registry.task
    def send_email(payload: SendEmail, helpers: JobHelpers) -> None:
        received.append(payload)

    message = SendEmail(
        to=Address(email="a@example.com", name="Ann"),
        subject="hello",
        send_on=date(2026, 12, 24),
        priority=Priority.HIGH,
        tags=["x"],
    )
    with db.connect() as conn:
        job = send_email.add_job(conn, message, schema=db.schema, queue_name="mail", priority=3)
    assert (job.task_identifier, job.queue_name, job.priority) == ("send_email", "mail", 3)
    [row] = jobs_rows(db)
    assert row["payload"] == {
        "to": {"email": "a@example.com", "name": "Ann"},
        "subject": "hello",
        "send_on": "2026-12-24",
        "priority": "high",
        "tags": ["x"],
    }
    run_once(db, registry)
    assert received == [message]


def test_add_jobs_and_specs(db: TestDatabase) -> None:
    registry = TaskRegistry()

    @registry.task
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    taken = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with db.connect() as conn:
        jobs = resize.add_jobs(conn, [Resize(1, 10), Resize(2, 20, taken)], schema=db.schema)
        keyed = add_jobs(
            conn, [resize.spec(Resize(3, 30), job_key="img-3", priority=-1)], schema=db.schema
        )
    assert [job.task_identifier for job in [*jobs, *keyed]] == ["resize"] * 3
    rows = jobs_rows(db)
    assert [row["payload"] for row in rows] == [
        {"image_id": 1, "width": 10, "taken_at": None},
        {"image_id": 2, "width": 20, "taken_at": "2026-01-02T03:04:05Z"},
        {"image_id": 3, "width": 30, "taken_at": None},
    ]
    assert (rows[2]["key"], rows[2]["priority"]) == ("img-3", -1)


def test_async_add_job_and_add_jobs(db: TestDatabase) -> None:
    registry = TaskRegistry()

    @registry.task
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    async def enqueue() -> tuple[Job, list[Job]]:
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            one = await resize.add_job_async(conn, Resize(1, 10), schema=db.schema)
            return one, await resize.add_jobs_async(conn, [Resize(2, 20)], schema=db.schema)

    one, more = asyncio.run(enqueue())
    assert [one.id, *(job.id for job in more)] == [row["id"] for row in jobs_rows(db)]


def test_a_payload_of_the_wrong_type_is_refused_before_anything_is_sent(
    db: TestDatabase,
) -> None:
    registry = TaskRegistry()

    @registry.task
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    with db.connect() as conn:
        with pytest.raises(PayloadError, match="'resize' takes a Resize payload, not dict"):
            resize.add_job(conn, {"image_id": 1, "width": 2})  # type: ignore[arg-type]
        # A dataclass is not checked when built: add_job checks it as the worker would.
        with pytest.raises(InvalidPayload, match="width: Input should be a valid integer"):
            resize.add_job(conn, Resize(1, "wide"))  # type: ignore[arg-type]
        with pytest.raises(InvalidPayload):
            resize.add_jobs(conn, [Resize(1, 2), Resize(2, "wide")])  # type: ignore[arg-type]
    assert jobs_rows(db) == []


def test_a_typed_task_run_as_untyped_elsewhere_gets_plain_json(db: TestDatabase) -> None:
    """The payload is plain JSON: an untyped consumer (a Node worker, an older
    deployment) reads the same object."""
    registry = TaskRegistry()

    @registry.task
    def resize(payload: Resize, helpers: JobHelpers) -> None: ...

    seen: list[Any] = []
    with db.connect() as conn:
        resize.add_job(conn, Resize(5, 50), schema=db.schema)
    run_once(db, {"resize": lambda payload, helpers: seen.append(payload)})
    assert seen == [{"image_id": 5, "width": 50, "taken_at": None}]


def test_a_plain_dict_of_tasks_validates_typed_functions_too(db: TestDatabase) -> None:
    received: list[Any] = []

    def resize(payload: Resize, helpers: JobHelpers) -> None:
        received.append(payload)

    def plain(payload: Any, helpers: JobHelpers) -> None:
        received.append(payload)

    with db.connect() as conn:
        add_job(conn, "resize", {"image_id": "3", "width": 4}, schema=db.schema)
        add_job(conn, "plain", {"image_id": "3"}, schema=db.schema)
        bad = add_job(conn, "resize", {"width": "wide"}, schema=db.schema)
    run_once(db, {"resize": resize, "plain": plain})
    assert sorted(map(repr, received)) == sorted(
        map(repr, [Resize(image_id=3, width=4), {"image_id": "3"}])
    )
    [row] = jobs_rows(db)
    assert (row["id"], row["attempts"]) == (bad.id, 25)  # failed for good, as in a registry


def test_untyped_registries_never_load_pydantic() -> None:
    """pydantic is imported only once a typed task is registered."""
    code = (
        "import sys\n"
        "from graphile_py import TaskRegistry, run_once\n"
        "registry = TaskRegistry()\n"
        "@registry.task\n"
        "def untyped(payload: dict, helpers: object) -> None: ...\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
