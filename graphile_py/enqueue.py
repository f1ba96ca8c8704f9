"""Adding jobs from application code, inside the caller's own transaction.

Jobs always go through the schema's ``add_job``/``add_jobs`` functions, never a plain
INSERT: those functions register tasks and queues, apply defaults and job-key rules, and
send the ``jobs:insert`` notification that wakes Node and Python workers alike. Nothing is
committed here: the job becomes visible when the caller's transaction commits (at once on
an autocommit connection).

Arguments are checked before anything is sent, so a bad job leaves the caller's
transaction untouched.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Protocol, Unpack

import psycopg

from graphile_py.db.connections import AsyncTarget, SyncTarget, async_connection, sync_connection
from graphile_py.db.enqueue import EnqueueStatements, key_race_error, run_plan, run_plan_async
from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.db.rows import Row
from graphile_py.errors import JobRejected
from graphile_py.events import TRACING, EnqueueTrace, JobTracer
from graphile_py.jobs import (
    Job,
    JobOptions,
    JobSpec,
    check_job_key_mode,
    check_run_at,
    check_text,
    encode_payload,
    encode_payloads,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "add_job",
    "add_job_async",
    "add_jobs",
    "add_jobs_async",
]


_SMALLINT = range(-32768, 32768)


def add_job(
    conn: SyncTarget,
    identifier: str,
    payload: object = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    max_payload_bytes: int | None = None,
    **options: Unpack[JobOptions],
) -> Job:
    """Add one job and return it.

    ``conn`` is a psycopg connection or cursor, or a SQLAlchemy 2 ``Session`` or
    ``Connection`` on the psycopg driver; the job is part of its transaction (anything
    else raises :class:`UnsupportedConnection`, before anything is sent).
    ``payload`` is any JSON-serialisable value (default ``{}``). ``options`` are those of
    :class:`JobOptions`: ``queue_name``, ``run_at``, ``max_attempts``, ``job_key``,
    ``job_key_mode``, ``priority`` and ``flags``.

    Raises :class:`JobRejected` (or its subclasses) for a job the database would refuse,
    before anything is sent, and :class:`DatabaseError` for other database failures.
    """
    tracer = TRACING.tracer
    if tracer is not None and not _TRACED.get():  # graphile_py.contrib.otel is installed
        with _traced(tracer, (identifier,), (payload,)) as trace:
            job = add_job(
                conn, identifier, trace.payloads[0], schema=schema,
                max_payload_bytes=max_payload_bytes, **options,
            )  # fmt: skip
            trace.added((job,))
            return job
    params = _add_job_params(identifier, payload, options, max_payload_bytes)
    connection = sync_connection(conn)
    row = run_plan(connection, EnqueueStatements.for_schema(schema).add_job_plan(params))
    job = _added_job(row, identifier, options)
    if _inline_hook is not None:
        _inline_hook.added(connection, [job], schema)
    return job


async def add_job_async(
    conn: AsyncTarget,
    identifier: str,
    payload: object = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    max_payload_bytes: int | None = None,
    **options: Unpack[JobOptions],
) -> Job:
    """:func:`add_job` for a ``psycopg.AsyncConnection`` (or async cursor), or a SQLAlchemy
    ``AsyncSession``/``AsyncConnection`` on the psycopg driver."""
    tracer = TRACING.tracer
    if tracer is not None and not _TRACED.get():  # graphile_py.contrib.otel is installed
        with _traced(tracer, (identifier,), (payload,)) as trace:
            job = await add_job_async(
                conn, identifier, trace.payloads[0], schema=schema,
                max_payload_bytes=max_payload_bytes, **options,
            )  # fmt: skip
            trace.added((job,))
            return job
    params = _add_job_params(identifier, payload, options, max_payload_bytes)
    connection = await async_connection(conn)
    plan = EnqueueStatements.for_schema(schema).add_job_plan(params)
    job = _added_job(await run_plan_async(connection, plan), identifier, options)
    if _inline_hook is not None:
        await _inline_hook.added_async(connection, [job], schema)
    return job


def add_jobs(
    conn: SyncTarget,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str = DEFAULT_SCHEMA,
    max_payload_bytes: int | None = None,
) -> list[Job]:
    """Add many jobs in one round trip and return them in the order of ``specs``.

    (Specs that differ in nothing but payload, run_at or priority may come back in
    either order between themselves; every returned job describes its own row.)

    With ``job_key_preserve_run_at`` a spec whose key matches a pending job keeps that
    job's ``run_at`` (``job_key_mode`` is not available here, as in graphile-worker).
    """
    tracer = TRACING.tracer
    if specs and tracer is not None and not _TRACED.get():  # graphile_py.contrib.otel
        with _traced(tracer, *_identifiers_and_payloads(specs)) as trace:
            jobs = add_jobs(
                conn, _with_payloads(specs, trace.payloads),
                job_key_preserve_run_at=job_key_preserve_run_at, schema=schema,
                max_payload_bytes=max_payload_bytes,
            )  # fmt: skip
            trace.added(jobs)
            return jobs
    if not specs:
        return []
    specs_json, payloads_json = _add_jobs_json(specs, max_payload_bytes)
    connection = sync_connection(conn)
    plan = EnqueueStatements.for_schema(schema).add_jobs_plan(
        specs_json, payloads_json, job_key_preserve_run_at
    )
    jobs = _jobs_for_specs(run_plan(connection, plan), specs)
    if _inline_hook is not None:
        _inline_hook.added(connection, jobs, schema)
    return jobs


async def add_jobs_async(
    conn: AsyncTarget,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str = DEFAULT_SCHEMA,
    max_payload_bytes: int | None = None,
) -> list[Job]:
    """:func:`add_jobs` for a ``psycopg.AsyncConnection`` (or async cursor)."""
    tracer = TRACING.tracer
    if specs and tracer is not None and not _TRACED.get():  # graphile_py.contrib.otel
        with _traced(tracer, *_identifiers_and_payloads(specs)) as trace:
            jobs = await add_jobs_async(
                conn, _with_payloads(specs, trace.payloads),
                job_key_preserve_run_at=job_key_preserve_run_at, schema=schema,
                max_payload_bytes=max_payload_bytes,
            )  # fmt: skip
            trace.added(jobs)
            return jobs
    if not specs:
        return []
    specs_json, payloads_json = _add_jobs_json(specs, max_payload_bytes)
    connection = await async_connection(conn)
    plan = EnqueueStatements.for_schema(schema).add_jobs_plan(
        specs_json, payloads_json, job_key_preserve_run_at
    )
    jobs = _jobs_for_specs(await run_plan_async(connection, plan), specs)
    if _inline_hook is not None:
        await _inline_hook.added_async(connection, jobs, schema)
    return jobs


class InlineHook(Protocol):
    """Told of every job added through this module; see :func:`set_inline_hook`."""

    def added(self, conn: psycopg.Connection[Any], jobs: Sequence[Job], schema: str) -> None:
        """Jobs were added on ``conn`` (in its transaction, if one is open)."""

    async def added_async(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job], schema: str
    ) -> None:
        """:meth:`added` for an async connection."""


# None in production: the one check per call is a global read. The pytest plugin's inline
# mode (graphile_py.contrib.pytest) sets it to run jobs when their transaction commits.
_inline_hook: InlineHook | None = None


def set_inline_hook(hook: InlineHook | None) -> InlineHook | None:
    """Install ``hook`` (None removes it) for every add_job in this process; return the old.

    For test tooling only (the pytest plugin's ``graphile_inline`` fixture uses it).
    """
    global _inline_hook
    previous, _inline_hook = _inline_hook, hook
    return previous


# -- tracing (graphile_py.contrib.otel): a span around the add, its context in the payloads.

# Set while a traced add runs the plain one inside its span, so it is not traced twice.
_TRACED: ContextVar[bool] = ContextVar("graphile_py_traced_enqueue", default=False)


@contextmanager
def _traced(
    tracer: JobTracer, identifiers: Sequence[str], payloads: Sequence[object]
) -> Iterator[EnqueueTrace]:
    with tracer.enqueue(identifiers, payloads) as trace:
        token = _TRACED.set(True)
        try:
            yield trace
        finally:
            _TRACED.reset(token)


def _identifiers_and_payloads(specs: Sequence[JobSpec]) -> tuple[list[str], list[object]]:
    # Not-yet-checked specs pass through untouched: add_jobs refuses them with its message.
    return (
        [getattr(spec, "identifier", "") for spec in specs],
        [getattr(spec, "payload", None) for spec in specs],
    )


def _with_payloads(specs: Sequence[JobSpec], payloads: Sequence[object]) -> list[JobSpec]:
    return [
        replace(spec, payload=payload) if isinstance(spec, JobSpec) else spec  # type: ignore[arg-type]
        for spec, payload in zip(specs, payloads, strict=True)
    ]


# Each variant above is the same three steps: check the arguments and build the
# parameters (below: nothing is sent before they pass), run the plan of
# graphile_py.db.enqueue on its kind of connection, and read the jobs from its result.


def _added_job(row: Row, identifier: str, options: JobOptions) -> Job:
    if "task_identifier" in row:  # labelled by the database (an unsafe_dedupe match)
        return Job.from_row(row)
    return Job.from_row(
        row, task_identifier=identifier, queue_name=options.get("queue_name") or None
    )


def _add_job_params(
    identifier: str, payload: object, options: JobOptions, max_payload_bytes: int | None
) -> tuple[Any, ...]:
    unknown = set(options) - JobOptions.__optional_keys__
    if unknown:
        raise TypeError(
            f"add_job() got unexpected options: {', '.join(map(_meant, sorted(unknown)))};"
            f" the options are {', '.join(sorted(JobOptions.__optional_keys__))}"
        )
    spec = JobSpec(
        identifier,
        queue_name=options.get("queue_name"),
        run_at=options.get("run_at"),
        max_attempts=options.get("max_attempts"),
        job_key=options.get("job_key"),
        priority=options.get("priority"),
        flags=options.get("flags"),
    )
    _check_spec(spec)
    mode = options.get("job_key_mode")
    check_job_key_mode(mode)
    return (
        identifier,
        encode_payload(payload, max_bytes=max_payload_bytes),
        spec.queue_name or None,  # as in Node, an empty queue name or key means "none"
        spec.run_at,
        spec.max_attempts,
        spec.job_key or None,
        spec.priority,
        list(spec.flags) if spec.flags is not None else None,
        mode,
    )


# Names people reach for, from graphile-worker's JavaScript API and other queues.
_OPTION_ALIASES = {"queue": "queue_name", "key": "job_key", "retries": "max_attempts"}


def _meant(name: str) -> str:
    """``name``, and the option it probably means (``queueName`` → ``queue_name``)."""
    snake = re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name).lower()
    guess = _OPTION_ALIASES.get(snake) or (snake if snake in JobOptions.__optional_keys__ else None)
    if guess is None:
        import difflib  # only for this message: not on every worker's start-up path

        close = difflib.get_close_matches(snake, sorted(JobOptions.__optional_keys__), n=1)
        guess = close[0] if close else None
    return f"{name} (did you mean {guess}?)" if guess else name


def _add_jobs_json(specs: Sequence[JobSpec], max_payload_bytes: int | None) -> tuple[str, str]:
    """The specs as a JSON array (without payloads), and their payloads as another."""
    # A spec with nothing but an identifier and a payload (the usual bulk call) is one
    # identifier check per distinct identifier and a JSON fragment made once: checking
    # and encoding every spec cost as much as the server's add_jobs for 20,000 of them.
    plain: dict[str, str] = {}
    fields: list[str | dict[str, Any]] = []
    for spec in specs:
        if not isinstance(spec, JobSpec):
            raise JobRejected(f"add_jobs takes JobSpec objects, not {type(spec).__name__}")
        if (
            isinstance(spec.identifier, str)
            and spec.queue_name is None
            and spec.run_at is None
            and spec.max_attempts is None
            and spec.job_key is None
            and spec.priority is None
            and spec.flags is None
        ):
            fragment = plain.get(spec.identifier)
            if fragment is None:
                _check_spec(spec)
                fragment = plain[spec.identifier] = _spec_json({"identifier": spec.identifier})
            fields.append(fragment)
            continue
        _check_spec(spec)
        # Only the fields that are set: a missing key is NULL to json_populate_recordset,
        # and a plain spec is then a few bytes to encode and for the server to parse.
        field: dict[str, Any] = {"identifier": spec.identifier}
        if spec.queue_name:
            field["queue_name"] = spec.queue_name
        if spec.run_at:
            field["run_at"] = spec.run_at.isoformat()
        if spec.max_attempts is not None:
            field["max_attempts"] = spec.max_attempts
        if spec.job_key:
            field["job_key"] = spec.job_key
        if spec.priority is not None:
            field["priority"] = spec.priority
        if spec.flags is not None:
            field["flags"] = list(spec.flags)
        fields.append(field)
    if not plain:  # one call for the lot is cheaper than one per spec
        specs_json = _spec_json(fields)
    else:
        specs_json = (
            "[" + ",".join(f if isinstance(f, str) else _spec_json(f) for f in fields) + "]"
        )
    payloads = [spec.payload for spec in specs]
    return specs_json, encode_payloads(payloads, max_bytes=max_payload_bytes)


def _spec_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _jobs_for_specs(jobs: Sequence[Job], specs: Sequence[JobSpec]) -> list[Job]:
    """Jobs in the order of ``specs`` where the jobs can tell specs apart, else by id.

    Jobs carry their own task and queue names, so every job is labelled correctly
    whatever order the database returned them in.
    """
    if any(job.id is None for job in jobs):
        raise key_race_error(next((spec.job_key for spec in specs if spec.job_key), None))
    # Jobs grouped by what a spec can be matched on, each group in id order: linear time
    # for large batches (a scan per spec was quadratic).
    groups: dict[tuple[Any, Any, Any], deque[Job]] = {}
    for job in jobs:
        groups.setdefault((job.task_identifier, job.queue_name, job.key), deque()).append(job)
    ordered: list[Job] = []
    for spec in specs:
        group = groups.get((spec.identifier, spec.queue_name or None, spec.job_key or None))
        if group:
            ordered.append(group.popleft())
    return ordered + [job for group in groups.values() for job in group]


def _check_spec(spec: JobSpec) -> None:
    # Fields are typed, but callers are not always type-checked: check what matters.
    identifier: object = spec.identifier
    queue_name: object = spec.queue_name
    job_key: object = spec.job_key
    max_attempts: object = spec.max_attempts
    priority: object = spec.priority
    flags: object = spec.flags
    if not isinstance(identifier, str) or not identifier:
        raise JobRejected(f"the task identifier must be a non-empty string, not {identifier!r}")
    if len(identifier) > 128:
        raise JobRejected(
            f"the task identifier is longer than 128 characters ({len(identifier)})",
            constraint="tasks_identifier_check",
        )
    if queue_name is not None:
        if not isinstance(queue_name, str):
            raise JobRejected(f"queue_name must be a string, not {type(queue_name).__name__}")
        if len(queue_name) > 128:
            raise JobRejected(
                f"the queue name is longer than 128 characters ({len(queue_name)})",
                constraint="job_queues_queue_name_check",
            )
    if job_key is not None:
        if not isinstance(job_key, str):
            raise JobRejected(f"job_key must be a string, not {type(job_key).__name__}")
        if len(job_key) > 512:
            raise JobRejected(
                f"the job key must be 1 to 512 characters long ({len(job_key)})",
                constraint="jobs_key_check",
            )
    check_run_at(spec.run_at)
    if max_attempts is not None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise JobRejected(f"max_attempts must be an integer, not {max_attempts!r}")
        if max_attempts < 1:
            raise JobRejected(
                f"max_attempts must be at least 1, not {max_attempts}",
                constraint="jobs_max_attempts_check",
            )
        if max_attempts not in _SMALLINT:
            raise JobRejected(f"max_attempts must be at most 32767, not {max_attempts}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or priority not in _SMALLINT
    ):
        raise JobRejected(f"priority must be an integer from -32768 to 32767, not {priority!r}")
    for name, value in (
        ("identifier", identifier),
        ("queue_name", queue_name),
        ("job_key", job_key),
    ):
        if isinstance(value, str) and "\x00" in value:
            raise JobRejected(f"{name} contains a NUL character, which PostgreSQL cannot store")
    if isinstance(flags, list | tuple) and any(isinstance(f, str) and "\x00" in f for f in flags):
        raise JobRejected("flags contain a NUL character, which PostgreSQL cannot store")
    for name, value in (
        ("the task identifier", identifier),
        ("queue_name", queue_name),
        ("job_key", job_key),
    ):
        check_text(name, value)
    if isinstance(flags, list | tuple):
        for index, flag in enumerate(flags):
            check_text(f"flags[{index}]", flag)
    if flags is not None and (
        isinstance(flags, str | bytes) or not all(isinstance(flag, str) for flag in flags)  # type: ignore[attr-defined]
    ):
        raise JobRejected(f"flags must be a list of strings, not {flags!r}")
