"""Typed task payloads: a pydantic model or a dataclass instead of a dict.

``@registry.task`` on ``def send_email(payload: SendEmail, helpers)`` registers a task
whose payload is validated and converted before the function runs, and returns a
:class:`TypedTask`: a handle that enqueues with a checked payload
(``send_email.add_job(conn, SendEmail(to=...))``) and that is still callable as the
function itself. The payload type is resolved once, at registration; a worker pays one
validation per job, and untyped tasks nothing at all.

pydantic is imported only when a typed task is registered (``import graphile_py`` does
not load it); dataclasses are validated through pydantic's ``TypeAdapter`` too, so both
kinds convert nested fields, dates and enums alike and give the same error messages.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Unpack

from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.enqueue import add_job, add_job_async, add_jobs, add_jobs_async
from graphile_py.errors import InvalidPayload, PayloadError, PermanentFailure, TaskLoadError
from graphile_py.events import TRACE_KEY
from graphile_py.jobs import Job, JobOptions, JobSpec

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from graphile_py.db.connections import AsyncTarget, SyncTarget

__all__ = ["OnInvalid", "PayloadType", "TypedTask", "payload_type_of"]

logger = logging.getLogger("graphile_py.tasks")

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

#: What a typed task does with a payload that does not validate: ``"fail"`` fails the job
#: permanently (retrying cannot fix the payload), ``"retry"`` fails this attempt only
#: (for payloads that a newer deployment of the task will accept).
OnInvalid = Literal["fail", "retry"]

#: How many field errors a failure message lists before it says "and N more".
_MAX_LISTED_ERRORS = 10


def payload_type_of(function: Callable[..., object]) -> type | None:
    """The pydantic model or dataclass ``function``'s first parameter is annotated with.

    None for anything else (no annotation, ``dict``, ``Any``, a name that exists only
    for type checkers): such a task receives the decoded JSON as it is.
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None  # a builtin or C callable: no annotations to read
    if not parameters or parameters[0].annotation is inspect.Parameter.empty:
        return None
    annotation: object = parameters[0].annotation
    if isinstance(annotation, str):
        annotation = _resolve(annotation, function)
    if not isinstance(annotation, type):
        return None
    if dataclasses.is_dataclass(annotation) or _is_pydantic_model(annotation):
        return annotation
    return None


def _resolve(annotation: str, function: Callable[..., object]) -> object:
    """A string annotation (``from __future__ import annotations``) evaluated in the
    function's module; None when it cannot be (a name imported under TYPE_CHECKING, say a
    TypedDict, or a class local to another function): such a task is untyped, as before.

    Only the payload's annotation is evaluated: ``helpers: "JobHelpers"`` imported for
    type checking only is common, and must not matter here.
    """
    namespace = getattr(inspect.unwrap(function), "__globals__", {})
    try:
        return eval(annotation, dict(namespace))  # an annotation, as typing would eval it
    except Exception as exc:
        logger.info(
            "Task function %s: its payload annotation %r does not resolve at run time (%s);"
            " the task receives the decoded JSON, unvalidated",
            getattr(function, "__qualname__", function),
            annotation,
            exc,
        )
        return None


def _is_pydantic_model(annotation: type) -> bool:
    # A model class exists only if pydantic was imported: no need to import it here.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(annotation, pydantic.BaseModel)


class PayloadType:
    """A task's payload type and its pydantic ``TypeAdapter``, built once."""

    def __init__(self, model: type) -> None:
        from pydantic import TypeAdapter

        self.model = model
        self.adapter: TypeAdapter[Any] = TypeAdapter(model)

    @property
    def name(self) -> str:
        """The type's name, for messages."""
        return self.model.__qualname__

    def validate(self, payload: object, *, identifier: str) -> Any:
        """The payload (decoded JSON) as an instance of the model; InvalidPayload if not."""
        from pydantic import ValidationError

        if type(payload) is dict and TRACE_KEY in payload:
            # The trace context that graphile_py.contrib.otel (or graphile_worker_rs)
            # carries in the payload belongs to no model.
            payload = {key: value for key, value in payload.items() if key != TRACE_KEY}
        try:
            return self.adapter.validate_python(payload)
        except ValidationError as exc:
            raise InvalidPayload(
                _describe(exc, f"the payload of task {identifier!r} is not a valid {self.name}"),
                errors=_plain_errors(exc),
            ) from exc

    def dump(self, value: object, *, identifier: str) -> Any:
        """``value`` as JSON-ready data, checked as the worker will check it.

        Refuses (PayloadError) a value of another type, and (InvalidPayload) one that
        the worker would reject, such as a dataclass built with a field of the wrong type.
        """
        if not isinstance(value, self.model):
            raise PayloadError(
                f"task {identifier!r} takes a {self.name} payload, not {type(value).__name__}"
            )
        from pydantic import ValidationError
        from pydantic_core import PydanticSerializationError

        try:
            data = self.adapter.dump_python(value, mode="json", by_alias=True, warnings=False)
            self.adapter.validate_python(data)
        except ValidationError as exc:
            raise InvalidPayload(
                _describe(exc, f"this {self.name} payload of task {identifier!r} is invalid"),
                errors=_plain_errors(exc),
            ) from exc
        except PydanticSerializationError as exc:
            raise PayloadError(
                f"this {self.name} payload of task {identifier!r} cannot be serialised: {exc}"
            ) from exc
        return data

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the payload (what the dashboard shows)."""
        return self.adapter.json_schema(by_alias=True)


def _describe(exc: Any, headline: str) -> str:
    errors = exc.errors(include_url=False)
    lines = []
    for error in errors[:_MAX_LISTED_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "(the payload)"
        lines.append(f"{where}: {error['msg']}")
    if len(errors) > _MAX_LISTED_ERRORS:
        lines.append(f"and {len(errors) - _MAX_LISTED_ERRORS} more")
    return f"{headline}: " + "; ".join(lines)


def _plain_errors(exc: Any) -> list[dict[str, object]]:
    # Without "input" and "ctx": they may hold the payload's data, or objects that do not
    # print well; loc, msg and type say what is wrong.
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False)
    ]


class TypedTask(Generic[PayloadT, ResultT]):
    """A registered task whose payload is a ``PayloadT``: call it, or enqueue it checked.

    Calling it calls the function (handy in unit tests). :meth:`add_job` and the others
    take a ``PayloadT`` (mypy refuses anything else), check it as the worker will, and
    add the job through :func:`graphile_py.add_job`, in the caller's transaction.
    """

    def __init__(
        self,
        identifier: str,
        function: Callable[[PayloadT, Any], ResultT],
        payload_type: PayloadType,
        *,
        on_invalid: OnInvalid = "fail",
    ) -> None:
        if on_invalid not in ("fail", "retry"):
            raise TaskLoadError(
                f"task {identifier!r}: on_invalid must be 'fail' or 'retry', not {on_invalid!r}"
            )
        self.identifier = identifier
        self.function = function
        self.payload_type = payload_type
        self.on_invalid: OnInvalid = on_invalid
        functools.update_wrapper(self, function)

    def __call__(self, payload: PayloadT, helpers: Any) -> ResultT:
        return self.function(payload, helpers)

    def __repr__(self) -> str:
        return f"<TypedTask {self.identifier!r} ({self.payload_type.name} payload)>"

    @property
    def payload_model(self) -> type:
        """The pydantic model or dataclass of the payload."""
        return self.payload_type.model

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the payload."""
        return self.payload_type.json_schema()

    def runner(self) -> Callable[[Any, Any], object]:
        """What the worker calls: validate the decoded JSON, then call the function."""
        validate = self.payload_type.validate
        function = self.function
        identifier = self.identifier
        permanent = self.on_invalid == "fail"

        def convert(payload: object) -> Any:
            try:
                return validate(payload, identifier=identifier)
            except InvalidPayload as exc:
                if permanent:
                    raise PermanentFailure(exc.message) from exc
                raise

        if inspect.iscoroutinefunction(function):

            async def run_async(payload: object, helpers: Any) -> object:
                return await function(convert(payload), helpers)

            return functools.wraps(function)(run_async)

        def run(payload: object, helpers: Any) -> object:
            return function(convert(payload), helpers)

        return functools.wraps(function)(run)

    def spec(
        self,
        payload: PayloadT,
        *,
        queue_name: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        job_key: str | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
    ) -> JobSpec:
        """A checked :class:`JobSpec` of this task, for :func:`graphile_py.add_jobs`."""
        return JobSpec(
            self.identifier,
            self.payload_type.dump(payload, identifier=self.identifier),
            queue_name=queue_name,
            run_at=run_at,
            max_attempts=max_attempts,
            job_key=job_key,
            priority=priority,
            flags=flags,
        )

    def add_job(
        self,
        conn: SyncTarget,
        payload: PayloadT,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_payload_bytes: int | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """Add a job of this task (see :func:`graphile_py.add_job`)."""
        data = self.payload_type.dump(payload, identifier=self.identifier)
        return add_job(
            conn,
            self.identifier,
            data,
            schema=schema,
            max_payload_bytes=max_payload_bytes,
            **options,
        )

    async def add_job_async(
        self,
        conn: AsyncTarget,
        payload: PayloadT,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_payload_bytes: int | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """:meth:`add_job` on an async connection."""
        data = self.payload_type.dump(payload, identifier=self.identifier)
        return await add_job_async(
            conn,
            self.identifier,
            data,
            schema=schema,
            max_payload_bytes=max_payload_bytes,
            **options,
        )

    def add_jobs(
        self,
        conn: SyncTarget,
        payloads: Iterable[PayloadT],
        *,
        schema: str = DEFAULT_SCHEMA,
        max_payload_bytes: int | None = None,
    ) -> list[Job]:
        """Add one job of this task per payload, in one round trip.

        For per-job options (queue, run_at, key...), build specs with :meth:`spec` and
        pass them to :func:`graphile_py.add_jobs`.
        """
        specs = [self.spec(payload) for payload in payloads]
        return add_jobs(conn, specs, schema=schema, max_payload_bytes=max_payload_bytes)

    async def add_jobs_async(
        self,
        conn: AsyncTarget,
        payloads: Iterable[PayloadT],
        *,
        schema: str = DEFAULT_SCHEMA,
        max_payload_bytes: int | None = None,
    ) -> list[Job]:
        """:meth:`add_jobs` on an async connection."""
        specs = [self.spec(payload) for payload in payloads]
        return await add_jobs_async(conn, specs, schema=schema, max_payload_bytes=max_payload_bytes)
