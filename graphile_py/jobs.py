"""The data that crosses the API: jobs, job specs, and payload encoding. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypedDict, get_args

from graphile_py.errors import InvalidJobKeyMode, JobRejected, PayloadError

__all__ = [
    "JOB_KEY_MODES",
    "Job",
    "JobKeyMode",
    "JobOptions",
    "JobSpec",
    "JsonValue",
    "check_job_key_mode",
    "check_run_at",
    "check_text",
    "client_time_defaults",
    "encode_payload",
    "encode_payloads",
]

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)

JobKeyMode: TypeAlias = Literal["replace", "preserve_run_at", "unsafe_dedupe"]
JOB_KEY_MODES: tuple[str, ...] = get_args(JobKeyMode)


@dataclass(frozen=True, slots=True)
class Job:
    """A row of ``_private_jobs`` as graphile-worker returns it, plus ``task_identifier``.

    ``attempts`` already counts the attempt in progress when a worker hands the job to a
    task. ``flags`` is the stored object (``{"flag": true, ...}``) or None.
    """

    id: int
    task_identifier: str
    payload: Any
    queue_name: str | None = None
    job_queue_id: int | None = None
    task_id: int | None = None
    priority: int = 0
    run_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 25
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    key: str | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    revision: int = 0
    flags: Mapping[str, bool] | None = None
    is_available: bool | None = None

    @property
    def flag_names(self) -> frozenset[str]:
        """The job's flags as a set of names."""
        return frozenset(self.flags or ())

    @property
    def is_permanently_failed(self) -> bool:
        """True when no attempts are left and nothing holds the job."""
        return self.attempts >= self.max_attempts and self.locked_at is None

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        *,
        task_identifier: str | None = None,
        queue_name: str | None = None,
    ) -> Job:
        """Build a job from a ``_private_jobs`` (or ``jobs`` view) row."""
        get = row.get
        # Positional, in field order: this runs once per job on the hot paths.
        return cls(
            row["id"],
            task_identifier or get("task_identifier") or "",
            get("payload"),
            queue_name if queue_name is not None else get("queue_name"),
            get("job_queue_id"),
            get("task_id"),
            row["priority"],
            row["run_at"],
            row["attempts"],
            row["max_attempts"],
            get("last_error"),
            get("created_at"),
            get("updated_at"),
            get("key"),
            get("locked_at"),
            get("locked_by"),
            get("revision", 0),
            get("flags"),
            get("is_available"),
        )


class JobOptions(TypedDict, total=False):
    """How and when a job runs; every key is optional (None means the default).

    ``queue_name`` puts the job in a named queue whose jobs run one at a time.
    ``run_at`` (timezone-aware) delays it. ``max_attempts`` (default 25) bounds retries.
    ``job_key`` makes it replaceable: adding a job with the same key updates the pending
    one as ``job_key_mode`` says (default ``replace``). ``priority`` (default 0) orders
    jobs, lower first. Workers that forbid one of its ``flags`` skip it.
    """

    queue_name: str | None
    run_at: datetime | None
    max_attempts: int | None
    job_key: str | None
    job_key_mode: JobKeyMode | None
    priority: int | None
    flags: Sequence[str] | None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job for :func:`graphile_py.add_jobs`; ``None`` means the database's default."""

    identifier: str
    payload: JsonValue = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = field(default=None)


def client_time_defaults(
    options: JobOptions, specs: Sequence[JobSpec] = ()
) -> tuple[JobOptions, list[JobSpec]]:
    """``options`` and ``specs`` with a missing ``run_at`` set to this machine's clock.

    For ``use_node_time``: the job is due by the client's clock, not the database's.
    """
    now = datetime.now(UTC)
    stamped: JobOptions = {**options}
    if stamped.get("run_at") is None:
        stamped["run_at"] = now
    return stamped, [spec if spec.run_at else replace(spec, run_at=now) for spec in specs]


def encode_payload(payload: object, *, max_bytes: int | None = None, where: str = "payload") -> str:
    """Serialise ``payload`` as compact JSON, as Node's ``JSON.stringify`` would.

    ``None`` becomes ``{}`` (graphile-worker's default). Anything that is not plain JSON
    (sets, dates, NaN, objects) is refused here, before the database is touched, and so
    is text that is not valid Unicode (a lone surrogate, such as half an emoji): see
    :func:`check_text`. ``where`` names the payload in messages.
    """
    if payload is None:
        return "{}"
    try:
        text = json.dumps(
            payload,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_refuse,
        )
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{where} is not JSON-serialisable: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError(f"{where} is not JSON-serialisable: it is nested too deeply") from exc
    # isascii() is O(1) in CPython: plain ASCII text cannot hold a surrogate, so only
    # other text pays for the check (one UTF-8 encode, the size check's anyway).
    size = len(text) if text.isascii() else _utf8_size(text, payload, where)
    if max_bytes is not None and size > max_bytes:
        raise PayloadError(f"{where} is {size} bytes of JSON, over the limit of {max_bytes}")
    return text


def encode_payloads(payloads: Sequence[object], *, max_bytes: int | None = None) -> str:
    """The payloads as one JSON array, exactly as ``[`` + each :func:`encode_payload` + ``]``.

    One ``json.dumps`` call for the lot is several times cheaper than one per payload.
    When that fails, or the whole array is over ``max_bytes`` (so some payload might be),
    or it is not valid Unicode, each payload is encoded on its own, so that the error
    names the payload at fault (``specs[2].payload["name"]``).
    """
    try:
        text = json.dumps(
            [{} if payload is None else payload for payload in payloads],
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_refuse,
        )
    except (TypeError, ValueError, RecursionError):
        pass
    else:
        if text.isascii():
            size: int | None = len(text)
        else:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                size = None  # a lone surrogate somewhere: found and named below
        if size is not None and (max_bytes is None or size <= max_bytes):
            return text
    return (
        "["
        + ",".join(
            encode_payload(p, max_bytes=max_bytes, where=f"specs[{index}].payload")
            for index, p in enumerate(payloads)
        )
        + "]"
    )


def check_text(name: str, value: object) -> None:
    """Refuse a string that is not valid Unicode, naming it (``name``) and the fix.

    Python strings may hold lone surrogates (half of a UTF-16 pair, as browsers and
    ``surrogateescape`` produce); they cannot be encoded as UTF-8, so PostgreSQL could
    never receive them.
    """
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JobRejected(_surrogate_message(name, value, exc.start)) from None


def _utf8_size(text: str, payload: object, where: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        pass
    # Only now walk the payload, to name the string at fault.
    found = _find_surrogate(payload, where, depth=0)
    if found is None:  # pragma: no cover - the encode above found one
        raise PayloadError(f"{where} is not valid Unicode")
    path, text_at_fault, position = found
    raise PayloadError(_surrogate_message(path, text_at_fault, position))


def _find_surrogate(value: object, path: str, depth: int) -> tuple[str, str, int] | None:
    """The first (path, text, index) of a string holding a lone surrogate, or None."""
    if isinstance(value, str):
        position = _surrogate_at(value)
        return None if position is None else (path, value, position)
    children: list[tuple[str, object]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            position = _surrogate_at(key) if isinstance(key, str) else None
            if position is not None:
                return (f"a key of {path}", key, position)
            children.append((f"{path}[{json.dumps(key)}]", item))
    elif isinstance(value, list | tuple):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    # json.dumps already refused deeper nesting; the bound only keeps this safe anyway.
    for child_path, item in children if depth < 1000 else ():
        found = _find_surrogate(item, child_path, depth + 1)
        if found is not None:
            return found
    return None


def _surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _surrogate_message(name: str, text: str, position: int) -> str:
    return (
        f"{name} is not valid Unicode: it holds a lone surrogate"
        f" ({ascii(text[position])[1:-1]} at character {position} of"
        f" {json.dumps(text[:40])}{'...' if len(text) > 40 else ''}), half of a UTF-16"
        " pair such as a broken emoji, which cannot be stored as UTF-8. Fix the text where"
        " it comes from, or replace what cannot be encoded:"
        ' text.encode("utf-8", "replace").decode("utf-8")'
    )


def _refuse(value: object) -> object:
    raise TypeError(
        f"object of type {type(value).__name__} is not JSON-serialisable ({value!r:.60})"
    )


def check_job_key_mode(mode: str | None) -> None:
    """Refuse an unknown ``job_key_mode`` before it reaches the database."""
    if mode is not None and mode not in JOB_KEY_MODES:
        raise InvalidJobKeyMode(
            f"Invalid job_key_mode {mode!r},"
            " expected 'replace', 'preserve_run_at' or 'unsafe_dedupe'."
        )


def check_run_at(run_at: datetime | None) -> None:
    """Refuse a naive ``run_at``: it would be read in the database session's time zone."""
    if run_at is not None and not isinstance(run_at, datetime):
        raise JobRejected(
            f"run_at must be a timezone-aware datetime, not {type(run_at).__name__}"
            f" {run_at!r:.60}: for text, parse it first"
            " (datetime.fromisoformat('2030-01-01T09:00:00+00:00'))"
        )
    if run_at is not None and (run_at.tzinfo is None or run_at.utcoffset() is None):
        raise JobRejected(
            "run_at must be a timezone-aware datetime (for example datetime.now(timezone.utc))"
        )
