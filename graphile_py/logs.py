"""Log records that carry the job's identity, and the CLI's log format.

The library only logs through :mod:`logging` (loggers named ``graphile_py.*``) and
attaches ``worker_id``, ``job_id``, ``task`` and ``queue`` as record attributes; how they
are shown is the application's choice. :func:`configure_logging` is what the CLI uses.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["JobLogger", "configure_logging"]

_CONTEXT_FIELDS = ("worker_id", "task", "job_id")


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


def configure_logging(level: int = logging.INFO) -> None:
    """Send graphile-py's logs to stderr in a readable one-line format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ContextFormatter("%(asctime)s [%(scope)s] %(levelname)s: %(message)s"))
    root = logging.getLogger("graphile_py")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
