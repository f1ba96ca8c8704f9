"""Collecting job outcomes and writing them in one statement (spec 3.12).

With ``complete_job_batch_delay`` (or ``fail_job_batch_delay``) set, a finished job is
queued here and the worker moves on; a background thread writes everything that
arrived within the delay in one statement. The trade-off: a crash between the task's
end and the write makes the job run again after the stale-lock rule frees it.
Shutdown flushes and waits for every pending write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WriteBatcher"]

T = TypeVar("T")

logger = logging.getLogger("graphile_py.batching")


class WriteBatcher(Generic[T]):
    """Queues items and hands them to ``write`` in batches, at most every ``delay`` seconds."""

    def __init__(
        self,
        *,
        name: str,
        delay: float,
        write: Callable[[list[T]], None],
        on_failure: Callable[[BaseException, list[T]], None],
    ) -> None:
        self._delay = delay
        self._write = write
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._pending: list[T] = []
        self._closing = False
        self._writing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, item: T) -> None:
        """Queue one item for the next batch."""
        with self._cond:
            self._pending.append(item)
            self._cond.notify()

    @property
    def busy(self) -> bool:
        """True while items are queued or being written."""
        with self._cond:
            return bool(self._pending) or self._writing

    def close(self, timeout: float | None = None) -> None:
        """Write what is pending, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                if not self._closing and self._delay > 0:
                    # Let the batch fill for the delay (shutdown cuts it short).
                    self._cond.wait_for(lambda: self._closing, timeout=self._delay)
                batch, self._pending = self._pending, []
                self._writing = True
            try:
                self._write(batch)
            except Exception as exc:  # reported to the pool, which decides what to do
                self._on_failure(exc, batch)
            finally:
                with self._cond:
                    self._writing = False
