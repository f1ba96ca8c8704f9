"""Tasks: the registry of identifier -> function, loading it, and what a task is given.

A task is ``def task(payload, helpers)``. It succeeds by returning and fails by raising.
``payload`` is the job's JSON payload, decoded; ``helpers`` is a :class:`JobHelpers`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, Unpack, overload

import psycopg
from psycopg_pool import ConnectionPool

from graphile_py.db import ConnectionSource, borrow
from graphile_py.enqueue import add_job, add_jobs
from graphile_py.errors import TaskLoadError
from graphile_py.jobs import Job, JobOptions, JobSpec, client_time_defaults
from graphile_py.typed import OnInvalid, PayloadType, TypedTask, payload_type_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from pydantic import BaseModel

__all__ = ["JobHelpers", "TaskFunction", "TaskRegistry", "load_task_map", "validate_task_map"]

# How long helpers.connection() waits for a server it cannot reach (a restart, a failover).
_CONNECTION_WAIT = 30.0

TaskFunction: TypeAlias = Callable[[Any, "JobHelpers"], object]

ModelT = TypeVar("ModelT", bound="BaseModel")
DataclassT = TypeVar("DataclassT", bound="DataclassInstance")
ResultT = TypeVar("ResultT")


class TaskDecorator(Protocol):
    """What ``registry.task("name", ...)`` returns: typed functions become TypedTasks."""

    @overload
    def __call__(
        self, function: Callable[[ModelT, JobHelpers], ResultT], /
    ) -> TypedTask[ModelT, ResultT]: ...
    @overload
    def __call__(
        self, function: Callable[[DataclassT, JobHelpers], ResultT], /
    ) -> TypedTask[DataclassT, ResultT]: ...
    @overload
    def __call__(self, function: TaskFunction, /) -> TaskFunction: ...


class TaskRegistry(Mapping[str, TaskFunction]):
    """A static map of task identifier -> task function, filled with a decorator.

    >>> tasks = TaskRegistry()
    >>> @tasks.task
    ... def send_email(payload, helpers): ...
    >>> @tasks.task("users/verify")
    ... def verify(payload, helpers): ...
    >>> sorted(tasks)
    ['send_email', 'users/verify']
    """

    def __init__(self, tasks: Mapping[str, TaskFunction] | None = None) -> None:
        self._tasks: dict[str, TaskFunction] = {}
        self._timeouts: dict[str, float] = {}
        self._typed: dict[str, TypedTask[Any, Any]] = {}
        for identifier, function in (tasks or {}).items():
            self.add(identifier, function)

    @overload
    def task(
        self, name: Callable[[ModelT, JobHelpers], ResultT], /
    ) -> TypedTask[ModelT, ResultT]: ...
    @overload
    def task(
        self, name: Callable[[DataclassT, JobHelpers], ResultT], /
    ) -> TypedTask[DataclassT, ResultT]: ...
    @overload
    def task(self, name: TaskFunction, /) -> TaskFunction: ...
    @overload
    def task(
        self,
        name: str | None = None,
        /,
        *,
        timeout: float | None = None,
        on_invalid: OnInvalid = "fail",
    ) -> TaskDecorator: ...

    def task(
        self,
        name: str | Callable[..., Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        on_invalid: OnInvalid = "fail",
    ) -> Any:
        """Register a function as a task, named by ``name`` or by its ``__name__``.

        ``timeout`` (seconds) limits each run: past it the job's ``abort_event`` is set,
        and a task that keeps running is failed (see ``WorkerOptions.task_timeout``).

        A function whose payload parameter is annotated with a pydantic model or a
        dataclass gets its payload validated and converted first, and the decorator
        returns a :class:`~graphile_py.typed.TypedTask` to enqueue it with a checked
        payload. A payload that does not validate fails the job permanently, or (with
        ``on_invalid="retry"``) fails this attempt only. Other functions are returned as
        they are (see docs/typed-tasks.md).
        """
        if callable(name):
            return self.add(name.__name__, name)

        def register(function: Callable[..., Any]) -> Any:
            return self.add(
                name or function.__name__, function, timeout=timeout, on_invalid=on_invalid
            )

        return register

    def add(
        self,
        identifier: str,
        function: Callable[..., Any],
        *,
        timeout: float | None = None,
        on_invalid: OnInvalid = "fail",
    ) -> Any:
        """Register ``function`` under ``identifier``; refuse duplicates and bad names.

        Returns ``function``, or a :class:`~graphile_py.typed.TypedTask` when its
        payload is typed (a :class:`TypedTask` itself is registered as its function).
        """
        _check_identifier(identifier)
        if not callable(function):
            raise TaskLoadError(f"task {identifier!r} is not callable: {function!r}")
        if identifier in self._tasks:
            raise TaskLoadError(f"task {identifier!r} is registered twice")
        if timeout is not None and not timeout > 0:
            raise TaskLoadError(f"task {identifier!r}: timeout must be positive, not {timeout}")
        if isinstance(function, TypedTask):
            function = function.function  # registered again, here under this name
        # Resolved once, here: running an untyped task costs nothing more than before.
        model = payload_type_of(function)
        registered: Any = function
        if model is not None:
            registered = TypedTask(identifier, function, PayloadType(model), on_invalid=on_invalid)
            self._typed[identifier] = registered
            self._tasks[identifier] = registered.runner()
        else:
            self._tasks[identifier] = function
        if timeout is not None:
            self._timeouts[identifier] = timeout
        return registered

    @property
    def typed(self) -> Mapping[str, TypedTask[Any, Any]]:
        """The tasks with a typed payload, by identifier."""
        return dict(self._typed)

    def payload_schemas(self) -> dict[str, dict[str, Any]]:
        """The JSON schema of each typed task's payload, by identifier."""
        return {identifier: task.json_schema() for identifier, task in self._typed.items()}

    @property
    def timeouts(self) -> Mapping[str, float]:
        """Per-task time limits in seconds, for tasks registered with one."""
        return dict(self._timeouts)

    def __getitem__(self, identifier: str) -> TaskFunction:
        return self._tasks[identifier]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskRegistry({sorted(self._tasks)!r})"


def _runner(identifier: str, function: Callable[..., Any]) -> TaskFunction:
    """What the worker calls for ``function``: itself, or its typed payload's validator."""
    if isinstance(function, TypedTask):
        return function.runner()
    model = payload_type_of(function)
    if model is None:
        return function
    return TypedTask(identifier, function, PayloadType(model)).runner()


def _check_signature(identifier: str, function: Callable[..., Any], source: str) -> None:
    """Refuse a task that cannot be called as ``task(payload, helpers)``, before any job
    runs: otherwise every job of it fails with a TypeError from the worker's call."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins and the like: trust them
        return
    try:
        signature.bind(None, None)
    except TypeError:
        name = getattr(function, "__qualname__", None) or repr(function)
        raise TaskLoadError(
            f"task {identifier!r} in {source} must accept two arguments, (payload, helpers),"
            f" but {name}{signature} does not: add the missing parameter (use _ for one"
            " you do not need)"
        ) from None


def _check_identifier(identifier: object) -> None:
    if not isinstance(identifier, str) or not identifier:
        raise TaskLoadError(f"a task identifier must be a non-empty string, not {identifier!r}")
    if len(identifier) > 128:
        raise TaskLoadError(f"task identifier {identifier[:40]!r}... is longer than 128 characters")


def validate_task_map(tasks: object, *, source: str = "the task map") -> dict[str, TaskFunction]:
    """Check that ``tasks`` maps identifiers to callables; return a plain dict copy."""
    if not isinstance(tasks, Mapping):
        raise TaskLoadError(
            f"{source} must be a TaskRegistry or a dict of identifier -> function,"
            f" not {type(tasks).__name__}"
        )
    checked: dict[str, TaskFunction] = {}
    for identifier, function in tasks.items():
        _check_identifier(identifier)
        if not callable(function):
            raise TaskLoadError(f"task {identifier!r} in {source} is not callable: {function!r}")
        _check_signature(identifier, function, source)
        # A plain dict's typed functions get a valid payload too (a registry's are
        # wrapped already, when registered).
        checked[identifier] = (
            function if isinstance(tasks, TaskRegistry) else _runner(identifier, function)
        )
    if not checked:
        raise TaskLoadError(f"{source} has no tasks; a worker needs at least one")
    return checked


def load_task_map(spec: str, *, search_path: str | None = None) -> Mapping[str, TaskFunction]:
    """Import ``"package.module:attribute"`` and return the task map it names.

    The current directory (or ``search_path``) is importable first, as with uvicorn, so
    ``--tasks tasks:registry`` finds ``./tasks.py``.
    """
    module_name, _, attribute = spec.partition(":")
    shape = (
        f"--tasks must look like 'module:attribute' (for example 'myapp.tasks:registry'),"
        f" not {spec!r}"
    )
    if not module_name:
        raise TaskLoadError(shape)
    directory = search_path or os.getcwd()
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if not attribute:
        # Name the task maps the module has, when it imports: the likely fix.
        try:
            module = _import_task_module(module_name, directory)
        except TaskLoadError as exc:
            raise TaskLoadError(shape) from exc
        raise TaskLoadError(shape + _candidates(module, module_name))
    module = _import_task_module(module_name, directory)
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise TaskLoadError(
                f"module {module_name!r} ({getattr(module, '__file__', None) or 'no file'})"
                f" has no attribute {attribute!r}" + _candidates(module, module_name)
            ) from exc
    if not isinstance(target, Mapping):
        raise TaskLoadError(
            f"{spec} must be a TaskRegistry or a dict of identifier -> function,"
            f" not {type(target).__name__}" + _candidates(module, module_name)
        )
    checked = validate_task_map(target, source=spec)
    # A registry is returned as it is: it also carries per-task time limits.
    return target if isinstance(target, TaskRegistry) else checked


def _import_task_module(module_name: str, directory: str) -> Any:
    """Import the task module; a failure says where, with the module's own traceback."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise TaskLoadError(
                f"could not find the task module {module_name!r} (looked in {directory!r}"
                " and on sys.path); run the command from your project's directory, or give"
                " the module's full dotted name"
            ) from exc
        raise TaskLoadError(
            f"importing the task module {module_name!r} failed: it imports {exc.name!r},"
            f" which is not installed in this Python ({sys.executable})\n" + _import_traceback(exc)
        ) from exc
    except SyntaxError as exc:
        place = f"{exc.filename}:{exc.lineno}" + (f":{exc.offset}" if exc.offset else "")
        raise TaskLoadError(
            f"importing the task module {module_name!r} failed: {place}:"
            f" {type(exc).__name__}: {exc.msg}\n" + _import_traceback(exc)
        ) from exc
    except (Exception, SystemExit) as exc:
        raise TaskLoadError(
            f"importing the task module {module_name!r} failed:"
            f" {type(exc).__name__}: {exc}{_innermost(exc)}\n" + _import_traceback(exc)
        ) from exc


def _innermost(exc: BaseException) -> str:
    """`` (at file:line)`` of the frame that raised, for the error's first line."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _import_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the task module down: no import machinery, no loader."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = [
        frame
        for frame in summary.stack
        if not frame.filename.startswith("<frozen")
        and frame.filename not in (__file__, importlib.__file__)
    ]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).rstrip("\n")


def _candidates(module: object, module_name: str) -> str:
    """A hint naming the task maps that ``module`` does define, if any."""
    found = [
        name
        for name, value in sorted(vars(module).items())
        if not name.startswith("_")
        and (
            isinstance(value, TaskRegistry)
            or (
                isinstance(value, dict)
                and value
                and all(isinstance(k, str) and callable(v) for k, v in value.items())
            )
        )
    ]
    if not found:
        return (
            f"; the module defines no TaskRegistry or dict of tasks: create one there"
            f" (registry = TaskRegistry()) and give --tasks {module_name}:registry"
        )
    return "; the module's task maps: " + ", ".join(f"--tasks {module_name}:{n}" for n in found)


class JobHelpers:
    """What a running task gets besides its payload.

    ``job`` is the claimed job (``attempts`` counts this attempt); ``logger`` logs with
    the job's identity; ``abort_event`` is set when this job should stop (its time limit
    passed, or shutdown is under way), and a long task should check it and stop early.
    """

    def __init__(
        self,
        *,
        job: Job,
        pool: ConnectionSource,
        schema: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        abort_event: threading.Event | Callable[[], threading.Event],
        worker_id: str,
        queue_name_lookup: Callable[[int], str] | None = None,
        use_node_time: bool = False,
    ) -> None:
        self.job = job
        self.logger = logger
        # An event, or what makes it when a task first asks (most tasks never do).
        self._abort_source = abort_event
        self.worker_id = worker_id
        self._pool = pool
        self._schema = schema
        self._queue_name_lookup = queue_name_lookup
        self._use_node_time = use_node_time

    @property
    def abort_event(self) -> threading.Event:
        """Set when this job should stop; wait on it or check it in a long task."""
        source = self._abort_source
        if isinstance(source, threading.Event):
            return source
        event = source()
        self._abort_source = event
        return event

    @property
    def aborted(self) -> bool:
        """True once this job has been asked to stop (time limit or shutdown)."""
        return self.abort_event.is_set()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a pooled connection (autocommit; use ``conn.transaction()`` for more).

        The connection is checked first: one the server closed while it sat in the pool
        (a restart, a failover, an idle timeout) is replaced rather than handed to the task,
        and while the server cannot be reached (a restart seen through PgBouncer) the task
        waits for it, up to 30 seconds, rather than fail.
        """
        deadline = time.monotonic() + _CONNECTION_WAIT
        attempt = 0
        while True:
            with borrow(self._pool) as conn:
                try:
                    ConnectionPool.check_connection(conn)
                except psycopg.OperationalError:
                    if time.monotonic() >= deadline:
                        raise
                    dead = True  # the pool discards it when it is returned, if broken
                else:
                    dead = False
                    yield conn
            if not dead:
                return
            # Its siblings were most likely closed with it: have the pool test every idle
            # one now, so the next connection lent is alive (or waits for a new one).
            self._pool.check()
            attempt += 1
            if attempt > 1:  # even a fresh one failed: the server is not back yet
                time.sleep(
                    min(1.0, 0.05 * 2 ** (attempt - 2), max(0.0, deadline - time.monotonic()))
                )

    def get_queue_name(self) -> str | None:
        """The name of the job's named queue, or None if it has none."""
        if self.job.job_queue_id is None:
            return None
        if self.job.queue_name is not None:
            return self.job.queue_name
        assert self._queue_name_lookup is not None
        return self._queue_name_lookup(self.job.job_queue_id)

    def add_job(
        self, identifier: str, payload: object = None, **options: Unpack[JobOptions]
    ) -> Job:
        """Add a job (committed at once, whatever becomes of this one)."""
        if self._use_node_time:
            options, _ = client_time_defaults(options)
        with self.connection() as conn:
            return add_job(conn, identifier, payload, schema=self._schema, **options)

    def add_jobs(
        self, specs: Sequence[JobSpec], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """Add several jobs in one round trip (committed at once)."""
        if self._use_node_time:
            _, specs = client_time_defaults({}, specs)
        with self.connection() as conn:
            return add_jobs(
                conn, specs, job_key_preserve_run_at=job_key_preserve_run_at, schema=self._schema
            )
