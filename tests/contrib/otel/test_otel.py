"""OpenTelemetry: producer span -> job -> consumer span, with the real SDK and worker.

Spans are read back with the SDK's in-memory exporter; jobs are added to, and run from,
the real database by a real worker pool (and, once, by the real Node graphile-worker).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from graphile_py import (
    JobHelpers,
    JobRejected,
    JobSpec,
    PermanentFailure,
    TaskRegistry,
    add_job,
    add_job_async,
    add_jobs,
)
from graphile_py.contrib import otel
from graphile_py.events import TRACING
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, run_once


@dataclass
class Traces:
    """What the instrumentation exported, and the application's own tracer."""

    exporter: InMemorySpanExporter
    tracer: trace.Tracer

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def spans() -> Iterator[Traces]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=provider)
    try:
        yield Traces(exporter, provider.get_tracer("the application"))
    finally:
        otel.uninstrument()
    assert TRACING.tracer is None


def by_name(exporter: Traces, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def carried(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "flags": int(context.trace_flags),
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def test_producer_span_job_consumer_span_linked(db: TestDatabase, spans: Traces) -> None:
    registry = TaskRegistry()
    received: list[Any] = []

    @registry.task
    def send_email(payload: Any, helpers: JobHelpers) -> None:
        received.append(payload)
        with spans.tracer.start_as_current_span("smtp"):
            pass

    with spans.tracer.start_as_current_span("POST /signup") as request, db.connect() as conn:
        job = add_job(
            conn, "send_email", {"to": "a@example.com"}, schema=db.schema, queue_name="mail"
        )
    [producer] = by_name(spans, "add_job send_email")
    assert producer.kind == SpanKind.PRODUCER
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "graphile_worker",
        "messaging.operation.type": "send",
        "messaging.operation.name": "add_job",
        "messaging.destination.name": "send_email",
        "messaging.message.id": str(job.id),
    }
    # The context travels in the stored payload, in graphile_worker_rs's format.
    [row] = jobs_rows(db)
    assert row["payload"] == {"to": "a@example.com", "_trace": carried(producer)}

    run_once(db, registry, worker_id="worker-otel")

    assert received == [{"to": "a@example.com"}]  # the task never sees "_trace"
    [consumer] = by_name(spans, "process send_email")
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.parent is None  # a trace of its own...
    [link] = consumer.links
    assert link.context.span_id == producer.context.span_id  # ...linked to the producer
    assert link.context.trace_id == producer.context.trace_id
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "graphile_worker",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "send_email",
        "messaging.message.id": str(job.id),
        "messaging.client.id": "worker-otel",
        "messaging.graphile_worker.attempt": 1,
        "messaging.graphile_worker.max_attempts": 25,
        "messaging.graphile_worker.priority": 0,
        "messaging.graphile_worker.queue_name": "mail",
    }
    assert consumer.status.status_code == StatusCode.UNSET
    [smtp] = by_name(spans, "smtp")  # the task's own spans are the consumer's children
    assert smtp.parent is not None
    assert smtp.parent.span_id == consumer.context.span_id
    assert smtp.context.trace_id == consumer.context.trace_id


def test_every_attempt_gets_a_span_and_failures_are_recorded(
    db: TestDatabase, spans: Traces
) -> None:
    registry = TaskRegistry()

    @registry.task
    def flaky(payload: Any, helpers: JobHelpers) -> None:
        if helpers.job.attempts == 1:
            raise ValueError("smtp timeout")
        raise PermanentFailure("mailbox does not exist")

    with db.connect() as conn:
        job = add_job(conn, "flaky", {"n": 1}, schema=db.schema, max_attempts=5)
    [producer] = by_name(spans, "add_job flaky")
    run_once(db, registry)
    with db.connect() as conn:  # make the retry due now
        conn.execute(
            sql.SQL("update {}._private_jobs set run_at = now() - interval '1s'").format(
                sql.Identifier(db.schema)
            )
        )
    run_once(db, registry)

    first, second = sorted(
        by_name(spans, "process flaky"),
        key=lambda s: (s.attributes or {})["messaging.graphile_worker.attempt"],
    )
    for attempt, span in enumerate((first, second), start=1):
        attributes = span.attributes or {}
        assert attributes["messaging.graphile_worker.attempt"] == attempt
        assert attributes["messaging.message.id"] == str(job.id)
        assert [link.context.span_id for link in span.links] == [producer.context.span_id]
        assert span.status.status_code == StatusCode.ERROR
    assert first.status.description == "smtp timeout"
    assert (first.attributes or {})["error.type"] == "ValueError"
    assert (first.attributes or {})["messaging.graphile_worker.will_retry"] is True
    [event] = first.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert (event.attributes or {})["exception.message"] == "smtp timeout"
    assert second.status.description == "mailbox does not exist"
    assert (second.attributes or {})["messaging.graphile_worker.will_retry"] is False
    [row] = jobs_rows(db)
    assert row["attempts"] == 5
    assert row["last_error"].partition("\n")[0] == "mailbox does not exist"


def test_async_tasks_run_inside_their_consumer_span(db: TestDatabase, spans: Traces) -> None:
    registry = TaskRegistry()

    @registry.task
    async def fetch(payload: Any, helpers: JobHelpers) -> None:
        await asyncio.sleep(0)
        with spans.tracer.start_as_current_span("http GET"):
            await asyncio.sleep(0)

    async def enqueue() -> None:
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            await add_job_async(conn, "fetch", {"url": "x"}, schema=db.schema)

    asyncio.run(enqueue())
    [producer] = by_name(spans, "add_job fetch")
    run_once(db, registry)
    [consumer] = by_name(spans, "process fetch")
    [inner] = by_name(spans, "http GET")
    assert inner.parent is not None
    assert inner.parent.span_id == consumer.context.span_id
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]


def test_add_jobs_is_one_producer_span_for_the_batch(db: TestDatabase, spans: Traces) -> None:
    registry = TaskRegistry()
    received: list[Any] = []
    registry.add("a", lambda payload, helpers: received.append(payload))
    registry.add("b", lambda payload, helpers: received.append(payload))

    with db.connect() as conn:
        add_jobs(
            conn,
            [
                JobSpec("a", {"i": 1}),
                JobSpec("b", [{"item": 1}, "plain item"]),  # a batch job's object items
                JobSpec("b", "a string payload"),  # carries nothing: no room for it
                JobSpec("a"),
            ],
            schema=db.schema,
        )
    [producer] = by_name(spans, "add_jobs")
    assert (producer.attributes or {})["messaging.batch.message_count"] == 4
    assert "messaging.destination.name" not in (producer.attributes or {})
    context = carried(producer)
    stored = sorted(json.dumps(row["payload"], sort_keys=True) for row in jobs_rows(db))
    assert stored == sorted(
        json.dumps(payload, sort_keys=True)
        for payload in (
            {"i": 1, "_trace": context},
            [{"item": 1, "_trace": context}, "plain item"],
            "a string payload",
            {"_trace": context},
        )
    )

    run_once(db, registry)
    assert sorted(map(json.dumps, received)) == sorted(
        map(json.dumps, [{"i": 1}, [{"item": 1}, "plain item"], "a string payload", {}])
    )
    consumers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert len(consumers) == 4
    assert sorted(len(span.links) for span in consumers) == [0, 1, 1, 1]
    for span in consumers:
        assert all(link.context.span_id == producer.context.span_id for link in span.links)


def test_a_refused_add_is_an_error_on_the_producer_span(db: TestDatabase, spans: Traces) -> None:
    with db.connect() as conn, pytest.raises(JobRejected):
        add_job(conn, "t", {}, schema=db.schema, max_attempts=0)
    [producer] = by_name(spans, "add_job t")
    assert producer.status.status_code == StatusCode.ERROR
    assert jobs_rows(db) == []


def test_continue_trace_makes_the_consumer_a_child_of_the_producer(
    db: TestDatabase, spans: Traces
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans.exporter))
    otel.instrument(tracer_provider=provider, continue_trace=True)
    with db.connect() as conn:
        add_job(conn, "t", {}, schema=db.schema)
    run_once(db, {"t": lambda payload, helpers: None})
    [producer] = by_name(spans, "add_job t")
    [consumer] = by_name(spans, "process t")
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == producer.context.trace_id


def test_a_context_written_by_graphile_worker_rs_is_linked(db: TestDatabase, spans: Traces) -> None:
    # What graphile_worker_rs's add_job writes (its telemetry module): the same key and
    # fields. Added by plain SQL here, as another runtime would.
    rust = {
        "flags": 1,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    with db.connect() as conn:
        add = sql.SQL("select {}.add_job(%s, %s::json)").format(sql.Identifier(db.schema))
        conn.execute(add, ("t", json.dumps({"x": 1, "_trace": rust})))
        conn.execute(add, ("t", json.dumps({"x": 2, "_trace": {"trace_id": "?", "span_id": 7}})))
    received: list[Any] = []
    run_once(db, {"t": lambda payload, helpers: received.append(payload)})
    assert sorted(p["x"] for p in received) == [1, 2]
    assert all("_trace" not in p for p in received)
    links = sorted(len(s.links) for s in by_name(spans, "process t"))
    assert links == [0, 1]  # a malformed context is ignored, and the job still runs
    [linked] = [s for s in by_name(spans, "process t") if s.links]
    assert format(linked.links[0].context.trace_id, "032x") == rust["trace_id"]
    assert format(linked.links[0].context.span_id, "016x") == rust["span_id"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str


def test_typed_tasks_are_traced_and_their_payloads_stay_valid(
    db: TestDatabase, spans: Traces
) -> None:
    registry = TaskRegistry()
    received: list[Strict] = []

    @registry.task
    def notify(payload: Strict, helpers: JobHelpers) -> None:
        received.append(payload)

    with db.connect() as conn:
        notify.add_job(conn, Strict(to="x"), schema=db.schema)
    assert "_trace" in jobs_rows(db)[0]["payload"]
    run_once(db, registry)
    assert received == [Strict(to="x")]
    [producer] = by_name(spans, "add_job notify")
    [consumer] = by_name(spans, "process notify")
    assert consumer.status.status_code == StatusCode.UNSET
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]


def test_without_instrumentation_nothing_is_added(db: TestDatabase) -> None:
    assert not otel.is_instrumented()
    with db.connect() as conn:
        add_job(conn, "t", {"a": 1}, schema=db.schema)
        add_jobs(conn, [JobSpec("t", {"b": 2})], schema=db.schema)
    assert [row["payload"] for row in jobs_rows(db)] == [{"a": 1}, {"b": 2}]


def test_with_no_sdk_configured_payloads_are_left_alone(db: TestDatabase) -> None:
    # The API's default provider makes non-recording spans with no valid context.
    otel.instrument(tracer_provider=trace.NoOpTracerProvider())
    try:
        with db.connect() as conn:
            add_job(conn, "t", {"a": 1}, schema=db.schema)
        received: list[Any] = []
        run_once(db, {"t": lambda payload, helpers: received.append(payload)})
    finally:
        otel.uninstrument()
    assert received == [{"a": 1}]


@pytest.mark.node
def test_a_node_worker_runs_a_job_that_carries_the_context(
    db: TestDatabase, spans: Traces, node_worker: Any, tmp_path: Any
) -> None:
    from tests.interop.test_jobs_cross_runtime import Node, exec_rows, prepare

    prepare(db)
    with db.connect() as conn:
        job = add_job(conn, "from_python", {"to": "a@example.com"}, schema=db.schema)
    [producer] = by_name(spans, "add_job from_python")

    Node(node_worker, db, tmp_path / "node").run_once({"from_python": {}})

    [row] = exec_rows(db)
    assert (row["runtime"], row["job_id"], row["attempts"]) == ("node", job.id, 1)
    # Node hands the payload to its task as it is, "_trace" included, and completes it.
    assert json.loads(row["payload"]) == {"to": "a@example.com", "_trace": carried(producer)}
    assert jobs_rows(db) == []


def test_a_job_added_by_a_task_continues_from_its_attempt(db: TestDatabase, spans: Traces) -> None:
    # helpers.add_job inside a task: the new job's producer span is a child of the
    # attempt's span, so a chain of jobs can be followed link by link.
    registry = TaskRegistry()

    @registry.task
    def first(payload: Any, helpers: JobHelpers) -> None:
        helpers.add_job("second", {"from": helpers.job.id})

    registry.add("second", lambda payload, helpers: None)
    with db.connect() as conn:
        add_job(conn, "first", {}, schema=db.schema)
    run_once(db, registry)

    [consumer_first] = by_name(spans, "process first")
    [producer_second] = by_name(spans, "add_job second")
    [consumer_second] = by_name(spans, "process second")
    assert producer_second.parent is not None
    assert producer_second.parent.span_id == consumer_first.context.span_id
    assert [link.context.span_id for link in consumer_second.links] == [
        producer_second.context.span_id
    ]
