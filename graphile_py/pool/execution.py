"""Running one task function and turning what it did into an outcome.

Synchronous tasks run on the worker thread. ``async def`` tasks run on one event loop
that the pool owns, so they can overlap on I/O while sync tasks keep their threads.
A task whose payload is a JSON array may return a list of per-item results: items that
are exceptions failed, and only those are retried (graphile-worker's batch jobs).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphile_py.errors import GraphileError, PermanentFailure
from graphile_py.events import TRACING, AttemptTrace
from graphile_py.jobs import Job
from graphile_py.logs import JobLogger, plural

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "LAST_ERROR_LIMIT",
    "EventLoopThread",
    "Outcome",
    "error_summary",
    "failure_message",
    "log_outcome",
    "run_task",
]

#: At most this many characters of ``last_error`` are the traceback: its head and
#: innermost frames are kept, the middle of a deep one is left out.
LAST_ERROR_LIMIT = 8000
_TRACEBACK_HEAD = "Traceback (most recent call last):\n"
# Frames of the machinery between the worker and the task, left out of tracebacks.
_STDLIB = sysconfig.get_paths()["stdlib"]
_MACHINERY = (
    os.path.join(_STDLIB, "asyncio", ""),
    os.path.join(_STDLIB, "concurrent", ""),
)

logger = logging.getLogger("graphile_py.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended."""

    error: BaseException | None = None
    message: str | None = None
    #: For a batch job whose items partly failed: the payload items to retry...
    replacement_payload: list[Any] | None = None
    #: ...and their errors.
    batch_errors: tuple[BaseException, ...] | None = None
    #: When the task was called (epoch seconds), for the job history; None if never run.
    started_at: float | None = None
    #: The task raised :class:`PermanentFailure`: the job is not retried.
    permanent: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None


class EventLoopThread:
    """An asyncio loop on a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the loop and block this thread until it ends."""
        import asyncio  # loaded only by pools that run async tasks

        return asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop()).result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Stop the loop (running coroutines are abandoned with their threads)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()


# What run_task's task_payload is when not given (None is a payload: JSON null).
_SAME = object()


def run_task(
    function: Any, payload: Any, helpers: Any, loop: EventLoopThread, *, task_payload: Any = _SAME
) -> Outcome:
    """Call the task and classify the result; never raises for a task's own error.

    ``task_payload``, when given, is what the task receives instead of ``payload`` (which
    still decides a batch job's retries): the payload without its trace context.
    """
    tracer = TRACING.tracer
    if tracer is not None and task_payload is _SAME:  # graphile_py.contrib.otel is installed
        trace = tracer.attempt(helpers.job, helpers.worker_id, helpers.get_queue_name)
        return _traced_run(trace, function, payload, helpers, loop)
    started_at = time.time()
    call_payload = payload if task_payload is _SAME else task_payload
    try:
        if inspect.iscoroutinefunction(function):
            result = loop.run(function(call_payload, helpers))
        else:
            result = function(call_payload, helpers)
            if inspect.iscoroutine(result):
                result = loop.run(result)
    except BaseException as exc:  # sys.exit() in a task must not kill the worker thread
        return Outcome(
            error=exc,
            message=failure_message(exc),
            started_at=started_at,
            permanent=isinstance(exc, PermanentFailure),
        )
    if isinstance(payload, list) and isinstance(result, list | tuple):
        return _batch_outcome(payload, result, started_at)
    return Outcome(started_at=started_at)


def _traced_run(
    trace: AttemptTrace, function: Any, payload: Any, helpers: Any, loop: EventLoopThread
) -> Outcome:
    outcome = run_task(trace.wrap(function), payload, helpers, loop, task_payload=trace.payload)
    trace.end(outcome.error, outcome.message)
    return outcome


def _batch_outcome(payload: list[Any], results: Sequence[Any], started_at: float) -> Outcome:
    if len(results) != len(payload):
        logger.warning(
            "Task returned %s for a batch of %s; treating the job as a success",
            plural(len(results), "result"),
            plural(len(payload), "item"),
        )
        return Outcome(started_at=started_at)
    failed = [
        (item, r) for item, r in zip(payload, results, strict=True) if isinstance(r, BaseException)
    ]
    if not failed:
        return Outcome(started_at=started_at)
    message = "Batch failures:\n" + "\n".join(failure_message(error) for _, error in failed)
    return Outcome(
        error=failed[0][1],
        message=message,
        replacement_payload=[item for item, _ in failed],
        batch_errors=tuple(error for _, error in failed),
        started_at=started_at,
    )


def failure_message(error: BaseException) -> str:
    """The text stored in ``last_error``: the message (else the type), then the traceback.

    The first line is the message alone, as a Node worker stores it (``err.message``),
    so that listings of last errors read the same for both; a blank line and Python's
    traceback follow when the error was raised, from the task's frame down (the worker's
    own frames left out), capped at :data:`LAST_ERROR_LIMIT` characters.
    """
    text = str(error) or type(error).__name__ or "Non error or error without message thrown."
    if error.__traceback__ is None:
        return text
    return f"{text}\n\n{_traceback_text(error)}"


def error_summary(message: str) -> str:
    """``last_error`` text without its traceback: what log lines quote."""
    return message.partition("\n\n" + _TRACEBACK_HEAD)[0]


def _traceback_text(error: BaseException) -> str:
    summary = traceback.TracebackException.from_exception(error)
    _drop_machinery(summary)
    lines = "".join(summary.format()).rstrip("\n").split("\n")
    if sum(len(line) + 1 for line in lines) <= LAST_ERROR_LIMIT:
        return "\n".join(lines)
    # Keep the head line and as many of the last lines (the innermost frames and the
    # exception) as fit: the middle of a deep traceback is the least useful part.
    kept: list[str] = []
    budget = LAST_ERROR_LIMIT - len(lines[0]) - 60
    for line in reversed(lines[1:]):
        budget -= len(line) + 1
        if budget < 0:
            break
        kept.append(line)
    omitted = len(lines) - 1 - len(kept)
    return "\n".join([lines[0], f"  ... ({omitted} lines left out) ...", *reversed(kept)])


def _drop_machinery(summary: traceback.TracebackException) -> None:
    """Leave out the worker's frames (run_task, the event loop's hand-over)."""
    current: traceback.TracebackException | None = summary
    while current is not None:
        frames = [
            frame
            for frame in current.stack
            if frame.filename != __file__ and not frame.filename.startswith(_MACHINERY)
        ]
        current.stack = traceback.StackSummary.from_list(frames)
        current = current.__cause__ or current.__context__


def log_outcome(
    log: JobLogger,
    job: Job,
    outcome: Outcome,
    elapsed_ms: float,
    queue_name: Callable[[int], str] | None = None,
) -> None:
    """Log a finished job the way operators read it: duration, attempt, what happens next.

    Each line carries ``job_id``, ``task``, ``queue``, ``attempt``, ``max_attempts`` and
    ``duration_ms`` as record attributes (and ``error`` on failure), for structured logs;
    nothing is built when the level is disabled. ``queue_name`` names a claimed job's
    queue from its id (the pool's cached lookup).
    """
    if outcome.succeeded:
        if not log.isEnabledFor(logging.INFO):
            return
        attempt = f", attempt {job.attempts} of {job.max_attempts}" if job.attempts > 1 else ""
        log.info(
            "Completed task %s (%s, %.2fms%s) with success",
            job.id,
            job.task_identifier,
            elapsed_ms,
            attempt,
            extra=_job_fields(job, elapsed_ms, queue_name),
        )
        return
    if not log.isEnabledFor(logging.ERROR):
        return
    if outcome.permanent:
        fate = "the task raised PermanentFailure; the job has failed permanently"
    elif job.attempts >= job.max_attempts:
        fate = "no attempts left; the job has failed permanently"
    else:
        backoff = math.exp(min(job.attempts, 10))
        fate = f"will retry in {backoff:.2f}s (attempt {job.attempts + 1} of {job.max_attempts})"
    extra = _job_fields(job, elapsed_ms, queue_name)
    # The line quotes the message; the traceback follows once, from exc_info.
    message = error_summary(outcome.message or "")
    extra["error"] = message
    log.error(
        "Failed task %s (%s, %.2fms, attempt %d of %d) with error %r; %s",
        job.id,
        job.task_identifier,
        elapsed_ms,
        job.attempts,
        job.max_attempts,
        message,
        fate,
        exc_info=outcome.error,
        extra=extra,
    )


def _job_fields(
    job: Job, elapsed_ms: float, queue_name: Callable[[int], str] | None
) -> dict[str, Any]:
    queue = job.queue_name
    if queue is None and job.job_queue_id is not None and queue_name is not None:
        try:
            queue = queue_name(job.job_queue_id)
        except GraphileError:
            queue = None  # the log line matters more than its queue's name
    return {
        "job_id": job.id,
        "task": job.task_identifier,
        "queue": queue,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        "duration_ms": round(elapsed_ms, 3),
    }
