"""Log records that carry the job's identity, and the CLI's log formats.

The library only logs through :mod:`logging` (loggers named ``graphile_py.*``) and
attaches ``worker_id``, ``job_id``, ``task`` and ``queue`` as record attributes (job
lines also ``attempt``, ``max_attempts``, ``duration_ms`` and ``error``); how they are
shown is the application's choice. :func:`configure_logging` is what the CLI uses: a
readable line (``text``) or one JSON object per line (``json``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "CONTEXT_FIELDS",
    "JobLogger",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "plural",
]

LogFormat = Literal["text", "json"]

#: Record attributes that JSON lines carry when a record has them, in this order.
CONTEXT_FIELDS = (
    "worker_id",
    "job_id",
    "task",
    "queue",
    "attempt",
    "max_attempts",
    "duration_ms",
    "error",
)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 job"``, ``"2 jobs"``, ``"0 jobs"``: a count with its noun, for messages.

    ``nouns`` is the plural when adding an "s" is wrong (``plural(n, "query", "queries")``).
    """
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that stamps every record with the worker's and the job's identity."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


class _ContextFormatter(logging.Formatter):
    """``[worker-…: task{id}] LEVEL: message``, like graphile-worker's console logger."""

    def format(self, record: logging.LogRecord) -> str:
        worker_id = getattr(record, "worker_id", None)
        task = getattr(record, "task", None)
        job_id = getattr(record, "job_id", None)
        scope = record.name.removeprefix("graphile_py.")
        if worker_id and task is not None:
            scope = f"{scope}({worker_id}: {task}{{{job_id}}})"
        elif worker_id:
            scope = f"{scope}({worker_id})"
        record.scope = scope
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, context.

    Context fields (:data:`CONTEXT_FIELDS`) appear only when the record has them; an
    exception's traceback goes in ``traceback``. Never raises for odd values: whatever
    JSON cannot encode is written as its ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["traceback"] = self.formatException(record.exc_info)
            if "error" not in line and record.exc_info[1] is not None:
                line["error"] = str(record.exc_info[1]) or record.exc_info[0].__name__
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, log_format: LogFormat = "text") -> None:
    """Send graphile-py's logs to stderr, as readable lines or as JSON lines.

    With ``json``, other libraries' log warnings (psycopg's pool, for one) and Python
    warnings go through the same handler, so that every log line on stderr is JSON.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        other = logging.getLogger()
        other.handlers[:] = [handler]
        other.setLevel(max(level, logging.WARNING))
        logging.captureWarnings(True)
    else:
        handler.setFormatter(
            _ContextFormatter("%(asctime)s [%(scope)s] %(levelname)s: %(message)s")
        )
    root = logging.getLogger("graphile_py")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
