"""How a worker pool behaves: its options, validated when created. No I/O here.

Each option that is also a setting of the command line is declared here once, with
:func:`setting`: its name, type, default, limits and help text. The pool reads the
attributes; ``graphile_py.settings`` derives the config-file keys and environment
variables, and ``graphile_py.cli`` the flags, from the same declarations.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphile_py.db.migrations import DEFAULT_SCHEMA, check_identifier
from graphile_py.errors import ConfigurationError
from graphile_py.events import WorkerEvents

__all__ = ["Declared", "ForbiddenFlags", "Setting", "WorkerOptions", "declared", "setting"]

ForbiddenFlags = Sequence[str] | Callable[[], Sequence[str] | None] | None

_METADATA_KEY = "graphile_py.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    """What one setting means and which values it accepts, beyond its type and default.

    The names outside Python derive from the setting's ``key`` (the attribute name
    unless given): the config-file key is ``key``, the environment variable
    ``GRAPHILE_PY_<KEY>`` (after any in ``env``), the flag ``--<key>`` with dashes (a
    boolean that defaults to true gets ``--no-<key>`` instead).
    """

    #: One or two sentences for ``--help`` and the docs, without a final full stop.
    help: str
    #: Numbers: the smallest allowed value.
    minimum: float | None = None
    #: Numbers: values must be greater than this.
    above: float | None = None
    #: Numbers: the largest allowed value.
    maximum: float | None = None
    #: Numbers: reject infinity (and NaN, which every number setting rejects).
    finite: bool = False
    #: Text: reject the empty string.
    nonempty: bool = False
    #: The name on the command line's settings object and in ``--flag`` handling, when
    #: it differs from the attribute (``concurrency`` is ``jobs``).
    name: str | None = None
    #: The config-file key and the ``GRAPHILE_PY_`` suffix, when it differs from ``name``.
    key: str | None = None
    #: The long flag, when it differs from ``--<key>``.
    flag: str | None = None
    #: A one-letter flag as well, e.g. ``-j``.
    short: str | None = None
    #: Environment variables read before ``GRAPHILE_PY_<KEY>``, e.g. ones shared with Node.
    env: tuple[str, ...] = ()
    #: The placeholder in ``--help`` (default: ``N`` for integers, ``SECONDS`` for floats).
    metavar: str | None = None
    #: How the default reads in ``--help`` and the docs, when not the value itself
    #: ("" shows none).
    default_help: str | None = None
    #: The setting's type, when the attribute also accepts things no file can hold
    #: (``forbidden_flags`` takes a callable too, but a setting is a list of strings).
    value_type: Any = None

    def check(self, name: str, value: Any, value_type: Any) -> None:
        """Raise :class:`ConfigurationError` if ``value`` breaks these limits."""
        optional = _allows_none(value_type)
        if value is None and optional:
            return
        base = _without_none(value_type)
        or_off = "None (off) or " if optional else ""
        if base is str and self.nonempty and not value:
            raise ConfigurationError(f"{name} must be {or_off}a non-empty string")
        if base not in (int, float) or isinstance(value, bool):
            return
        within = (
            not math.isnan(value)
            and (math.isfinite(value) or not self.finite)
            and (self.minimum is None or value >= self.minimum)
            and (self.above is None or value > self.above)
            and (self.maximum is None or value <= self.maximum)
        )
        if not within:
            raise ConfigurationError(f"{name} must be {or_off}{self.describe(base)}, not {value!r}")

    def describe(self, base: type) -> str:
        """The values allowed, in words: "at least 1", "a number of seconds > 0"."""
        if base is int:
            limits = [
                f"at least {self.minimum:g}" if self.minimum is not None else "",
                f"more than {self.above:g}" if self.above is not None else "",
                f"at most {self.maximum:g}" if self.maximum is not None else "",
            ]
            return " and ".join(limit for limit in limits if limit) or "a whole number"
        limits = [
            f">= {self.minimum:g}" if self.minimum is not None else "",
            f"> {self.above:g}" if self.above is not None else "",
            f"<= {self.maximum:g}" if self.maximum is not None else "",
        ]
        kind = "a finite number of seconds" if self.finite else "a number of seconds"
        return " ".join([kind, " and ".join(limit for limit in limits if limit)]).strip()


def setting(default: Any, **spec: Any) -> Any:
    """A dataclass field that is also a setting; ``spec`` holds :class:`Setting`'s fields."""
    return dataclasses.field(default=default, metadata={_METADATA_KEY: Setting(**spec)})


class Declared(NamedTuple):
    """One setting as a dataclass declares it: attribute, type, default and spec."""

    attribute: str
    value_type: Any
    default: Any
    spec: Setting

    @property
    def base_type(self) -> Any:
        """The type without ``None``: ``int`` for ``int | None``."""
        return _without_none(self.value_type)

    @property
    def optional(self) -> bool:
        """True when None is a value (meaning "off" or "none")."""
        return _allows_none(self.value_type)


def declared(cls: type) -> tuple[Declared, ...]:
    """The settings a dataclass declares with :func:`setting`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_METADATA_KEY)
        if isinstance(spec, Setting):
            value_type = spec.value_type if spec.value_type is not None else hints[field.name]
            found.append(Declared(field.name, value_type, field.default, spec))
    return tuple(found)


def check_declared(instance: object, settings: Sequence[Declared]) -> None:
    """Check every declared setting of ``instance`` against its limits."""
    for item in settings:
        item.spec.check(item.attribute, getattr(instance, item.attribute), item.value_type)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`WorkerPool` behaves. Times are in seconds.

    ``concurrency`` is the command line's ``jobs``; every other setting has the same
    name there. The fields without a :func:`setting` exist for library use only, as
    does ``forbidden_flags`` as a function (asked before every claim).
    """

    schema: str = setting(
        DEFAULT_SCHEMA,
        help="The PostgreSQL schema holding the queue; every process sharing the queue"
        " must use the same one",
        name="worker_schema",
        key="schema",
        short="-s",
        env=("GRAPHILE_WORKER_SCHEMA",),
        metavar="NAME",
    )
    concurrency: int = setting(
        1, help="Jobs to run at once (one worker thread each)", minimum=1, name="jobs", short="-j"
    )
    poll_interval: float = setting(
        2.0,
        help="How often idle workers look for jobs that no notification announces (due"
        " run_at, retries)",
        above=0,
        finite=True,
    )
    max_pool_size: int = setting(
        10,
        help="Database connections for claiming and recording jobs and for tasks; the"
        " LISTEN connection is one more",
        minimum=1,
        short="-m",
    )
    prepared_statements: bool = setting(
        True,
        help="Prepare statements on the server; turn off for pgBouncer in transaction mode",
    )
    graceful_shutdown_abort_timeout: float = setting(
        5.0,
        help="After a graceful shutdown starts (SIGTERM, Ctrl-C), set every running job's"
        " abort_event this late",
        minimum=0,
    )
    shutdown_timeout: float = setting(
        30.0,
        help="After a graceful shutdown starts (SIGTERM, Ctrl-C), fail jobs still running"
        " this late",
        minimum=0,
    )
    min_reset_locked_interval: float = setting(
        480.0,
        help="The sweep that frees jobs locked by dead workers runs every min..max"
        " seconds (randomised), first within 60 s",
        above=0,
        finite=True,
    )
    max_reset_locked_interval: float = setting(
        600.0,
        help="See min_reset_locked_interval; must not be below it",
        above=0,
        finite=True,
    )
    forbidden_flags: ForbiddenFlags = setting(  # noqa: RUF009 - a dataclasses.field
        None,
        help="Skip jobs carrying any of these flags, leaving them to other workers",
        flag="--forbidden-flag",
        metavar="FLAG",
        default_help="none",
        value_type=list[str] | None,
    )
    use_node_time: bool = setting(
        False,
        help="Decide which jobs are due by this machine's clock, not the database's, and"
        " stamp it on jobs added through WorkerUtils and helpers",
    )
    #: Name of the worker thread for logs; only allowed with concurrency 1.
    worker_id: str | None = None
    #: Hooks called on pool, worker, job and cron events (see :class:`WorkerEvents`).
    events: WorkerEvents | None = None
    local_queue_size: int | None = setting(
        None,
        help="Fetch this many jobs per claim and hand them out from memory: fewer round"
        " trips, but fetched jobs stay locked by this process until they run",
        minimum=1,
    )
    local_queue_ttl: float = setting(
        300.0,
        help="Hand fetched jobs that no worker started within this time back to the database",
        minimum=0,
    )
    complete_job_batch_delay: float | None = setting(
        None,
        help="Collect successes for this long and record them in one statement (0: what"
        " arrives while the previous write runs)",
        minimum=0,
        finite=True,
    )
    fail_job_batch_delay: float | None = setting(
        None,
        help="Collect failures for this long and record them in one statement",
        minimum=0,
        finite=True,
    )
    task_timeout: float | None = setting(
        None,
        help="Time limit of a task run, unless the task sets its own: then the job's"
        " abort_event is set, and a task still running task_timeout_grace later is"
        " failed and its worker thread replaced",
        above=0,
        default_help="none",
    )
    task_timeout_grace: float = setting(
        1.0,
        help="How long a task past its time limit may still run before it is failed",
        minimum=0,
    )

    def __post_init__(self) -> None:
        check_identifier(self.schema)
        check_declared(self, _DECLARED)
        if self.worker_id is not None and self.concurrency > 1:
            raise ConfigurationError(
                "You must not set worker_id when concurrency > 1; each worker must have a"
                " unique identifier"
            )
        low, high = self.min_reset_locked_interval, self.max_reset_locked_interval
        if high < low:
            raise ConfigurationError(
                f"Invalid values for min_reset_locked_interval ({low})/max_reset_locked_interval"
                f" ({high}): both must be positive and min <= max"
            )

    @property
    def batched_fetch(self) -> bool:
        """True when jobs are fetched several at a time into a local queue."""
        return self.local_queue_size is not None


_DECLARED = declared(WorkerOptions)


def _allows_none(value_type: Any) -> bool:
    return type(None) in typing.get_args(value_type)


def _without_none(value_type: Any) -> Any:
    """``int`` for ``int | None``; other types unchanged."""
    if typing.get_origin(value_type) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(value_type) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return value_type
