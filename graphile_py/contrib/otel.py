"""OpenTelemetry tracing: a producer span per add, a consumer span per attempt, linked.

>>> from graphile_py.contrib import otel
>>> otel.instrument()  # doctest: +SKIP

Once :func:`instrument` has run, in the process that adds jobs:

* every :func:`graphile_py.add_job` / ``add_jobs`` (and their async twins, and the typed
  tasks' ``add_job``) runs in a ``PRODUCER`` span, and writes that span's context into
  the job's payload under the reserved key ``"_trace"`` -- an object payload only (and
  each object item of an array payload), never a string or number payload;

and in the worker process:

* every attempt of a job runs in a ``CONSUMER`` span that is linked to the producer's
  span (a new trace by default, or its child with ``continue_trace=True``), with the
  messaging semantic-convention attributes, and the error recorded when it fails. Spans
  the task makes are children of it, for ``async def`` tasks too. Tasks receive their
  payload without the ``"_trace"`` key.

Why a payload key: graphile-worker 0.18's jobs have no headers column, and the schema
stays Node's. The key and its format, ``{"trace_id": <32 hex>, "span_id": <16 hex>,
"flags": <int>}``, are graphile_worker_rs's (the Rust port of graphile-worker), so
traces cross between Rust and Python workers in both directions; a Node worker passes the
payload to its task unchanged, which ignores a key it does not know. The trace state
(``tracestate``) and baggage are not carried: the format has no room for them.

Needs the ``otel`` extra (``opentelemetry-api``); nothing else in graphile_py imports
OpenTelemetry, and with nothing installed the library's hot paths pay one attribute read.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

from graphile_py.errors import GraphileError, PermanentFailure
from graphile_py.events import TRACE_KEY, TRACING, AttemptTrace, EnqueueTrace, JobTracer
from graphile_py.jobs import Job

__all__ = [
    "MESSAGING_SYSTEM",
    "TRACE_KEY",
    "instrument",
    "is_instrumented",
    "uninstrument",
]

#: ``messaging.system`` on every span.
MESSAGING_SYSTEM = "graphile_worker"

_INSTRUMENTATION_NAME = "graphile_py.contrib.otel"
_HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    continue_trace: bool = False,
) -> None:
    """Trace adding and running jobs in this process, from now on (calling it again
    replaces the settings).

    ``tracer_provider`` defaults to the global one. With ``continue_trace`` a job's
    consumer span is a child of its producer span, so one trace runs from the request
    that added the job to the task's own spans; by default it starts a trace of its own,
    linked to the producer (as messaging conventions recommend: a job may run hours
    later, or many times).
    """
    try:
        version: str | None = metadata.version("graphile-py")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = None
    tracer = trace.get_tracer(_INSTRUMENTATION_NAME, version, tracer_provider)
    TRACING.tracer = _JobTracer(tracer, continue_trace=continue_trace)


def uninstrument() -> None:
    """Stop tracing (jobs added from now on carry no trace context)."""
    if isinstance(TRACING.tracer, _JobTracer):
        TRACING.tracer = None


def is_instrumented() -> bool:
    """True between :func:`instrument` and :func:`uninstrument`."""
    return isinstance(TRACING.tracer, _JobTracer)


# -- the carrier ----------------------------------------------------------------------------


def _carrier(span_context: SpanContext) -> dict[str, Any] | None:
    if not span_context.is_valid:
        return None  # no SDK configured: nothing worth writing into payloads
    return {
        "flags": int(span_context.trace_flags),
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


def _inject(payload: object, carrier: dict[str, Any]) -> object:
    # Copies, never mutates: the caller's payload is the caller's.
    if payload is None:  # add_job's default payload, {}
        return {TRACE_KEY: carrier}
    if isinstance(payload, dict):
        return {**payload, TRACE_KEY: carrier}
    if isinstance(payload, list | tuple):
        return [
            {**item, TRACE_KEY: carrier} if isinstance(item, dict) else item for item in payload
        ]
    return payload  # a string, number or boolean payload has nowhere to carry it


def _extract(payload: object) -> SpanContext | None:
    if isinstance(payload, list):  # a batch job: the first item that carries one
        for item in payload:
            found = _extract(item)
            if found is not None:
                return found
        return None
    if not isinstance(payload, dict):
        return None
    carried = payload.get(TRACE_KEY)
    if not isinstance(carried, dict):
        return None
    trace_id, span_id, flags = carried.get("trace_id"), carried.get("span_id"), carried.get("flags")
    if not (
        isinstance(trace_id, str)
        and _HEX_TRACE_ID.fullmatch(trace_id)
        and isinstance(span_id, str)
        and _HEX_SPAN_ID.fullmatch(span_id)
    ):
        return None  # written by something else: ignore it rather than fail the job
    context = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(flags if isinstance(flags, int) and 0 <= flags < 256 else 0),
    )
    return context if context.is_valid else None


def _strip(payload: object) -> object:
    if isinstance(payload, dict):
        if TRACE_KEY not in payload:
            return payload
        return {key: value for key, value in payload.items() if key != TRACE_KEY}
    if isinstance(payload, list):
        return [_strip(item) if isinstance(item, dict) else item for item in payload]
    return payload


# -- the tracer -----------------------------------------------------------------------------


class _Enqueue:
    def __init__(self, span: Span, payloads: Sequence[object]) -> None:
        self._span = span
        self.payloads = payloads

    def added(self, jobs: Sequence[Job]) -> None:
        if len(jobs) == 1:
            self._span.set_attribute("messaging.message.id", str(jobs[0].id))


class _Attempt:
    def __init__(self, span: Span, job: Job) -> None:
        self._span = span
        self._job = job
        self.payload = _strip(job.payload)

    def wrap(self, function: Callable[[Any, Any], object]) -> Callable[[Any, Any], object]:
        context = trace.set_span_in_context(self._span)
        if inspect.iscoroutinefunction(function):

            async def traced_async(payload: Any, helpers: Any) -> object:
                # Runs on the pool's event loop thread, in a task with a context of its
                # own: the span is made current there, not on the worker thread.
                token = otel_context.attach(context)
                try:
                    return await function(payload, helpers)
                finally:
                    otel_context.detach(token)

            return traced_async

        def traced(payload: Any, helpers: Any) -> object:
            token = otel_context.attach(context)
            try:
                result = function(payload, helpers)
            finally:
                otel_context.detach(token)
            if inspect.iscoroutine(result):  # a sync function that returned a coroutine
                return _in_context(result, context)
            return result

        return traced

    def end(self, error: BaseException | None, message: str | None) -> None:
        span = self._span
        if error is not None:
            span.record_exception(error)
            # The message alone: last_error may go on with a traceback, which the
            # exception event already carries.
            span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))
            span.set_attribute("error.type", type(error).__qualname__)
            job = self._job
            final = isinstance(error, PermanentFailure) or job.attempts >= job.max_attempts
            span.set_attribute("messaging.graphile_worker.will_retry", not final)
        span.end()


async def _in_context(coroutine: Coroutine[Any, Any, Any], context: otel_context.Context) -> Any:
    token = otel_context.attach(context)
    try:
        return await coroutine
    finally:
        otel_context.detach(token)


class _JobTracer(JobTracer):
    def __init__(self, tracer: trace.Tracer, *, continue_trace: bool) -> None:
        self._tracer = tracer
        self._continue_trace = continue_trace

    @contextmanager
    def enqueue(
        self, identifiers: Sequence[str], payloads: Sequence[object]
    ) -> Iterator[EnqueueTrace]:
        distinct = set(identifiers)
        destination = next(iter(distinct)) if len(distinct) == 1 else None
        operation = "add_job" if len(identifiers) == 1 else "add_jobs"
        attributes: dict[str, AttributeValue] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": operation,
        }
        if destination is not None:
            attributes["messaging.destination.name"] = destination
        if len(identifiers) > 1:
            attributes["messaging.batch.message_count"] = len(identifiers)
        name = f"{operation} {destination}" if destination is not None else operation
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier = _carrier(span.get_span_context())
            if carrier is not None:
                payloads = [_inject(payload, carrier) for payload in payloads]
            yield _Enqueue(span, payloads)

    def attempt(
        self, job: Job, worker_id: str, queue_name: Callable[[], str | None]
    ) -> AttemptTrace:
        producer = _extract(job.payload)
        parent = otel_context.Context()  # a trace of its own, whatever this thread holds
        if producer is not None and self._continue_trace:
            parent = trace.set_span_in_context(NonRecordingSpan(producer), parent)
        attributes: dict[str, AttributeValue] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.task_identifier,
            "messaging.message.id": str(job.id),
            "messaging.client.id": worker_id,
            "messaging.graphile_worker.attempt": job.attempts,
            "messaging.graphile_worker.max_attempts": job.max_attempts,
            "messaging.graphile_worker.priority": job.priority,
        }
        if job.job_queue_id is not None:
            try:
                name = queue_name()
            except GraphileError:
                name = None  # the span matters more than its queue's name
            if name is not None:
                attributes["messaging.graphile_worker.queue_name"] = name
        span = self._tracer.start_span(
            f"process {job.task_identifier}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(producer)] if producer is not None else None,
        )
        return _Attempt(span, job)
