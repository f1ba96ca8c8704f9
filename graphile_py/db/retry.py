"""Retrying the worker's own statements through transient database trouble (spec 3.14).

A claim, a completion or a failure that meets a serialisation failure, a deadlock or a
lost connection is tried again with jittered exponential backoff. Completions and
failures matter most: dropping one would leave a job locked for 4 hours, so they keep
trying until the database is back or the pool is told to give up.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TypeVar

from graphile_py.errors import ConnectError, GraphileError

__all__ = ["backoff_delay", "retry_delay", "with_retries"]

T = TypeVar("T")

logger = logging.getLogger("graphile_py.retry")

# (min delay, max delay) in seconds, by SQLSTATE; lost connections use _CONNECTION_DELAYS.
_RETRYABLE_SQLSTATES = {
    "40001": (0.05, 5.0),  # serialization_failure
    "40P01": (0.05, 5.0),  # deadlock_detected
    "57P03": (1.0, 30.0),  # cannot_connect_now (server starting up or shutting down)
    "57P01": (1.0, 30.0),  # admin_shutdown
}
_CONNECTION_DELAYS = (0.5, 30.0)


def backoff_delay(attempt: int, *, low: float, high: float) -> float:
    """Jittered exponential backoff: ``min(low * 1.5**attempt, high) * (0.5 + random())``.

    ``attempt`` counts from 0; the jitter keeps many clients that failed together from
    retrying together.
    """
    return min(low * 1.5**attempt, high) * (0.5 + random.random())


def retry_delay(error: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retry number ``attempt`` (0-based), or None if not retryable."""
    delays: tuple[float, float] | None = None
    if isinstance(error, GraphileError) and error.sqlstate in _RETRYABLE_SQLSTATES:
        delays = _RETRYABLE_SQLSTATES[error.sqlstate]
    elif isinstance(error, ConnectError):
        delays = _CONNECTION_DELAYS
    if delays is None:
        return None
    low, high = delays
    return backoff_delay(attempt, low=low, high=high)


def with_retries(
    operation: Callable[[], T],
    *,
    description: str,
    wait: Callable[[float], bool],
    max_attempts: int = 100,
) -> T:
    """Run ``operation``, retrying transient database errors.

    ``wait(seconds)`` sleeps between attempts and returns True when the caller wants to
    give up early (for example a forced shutdown); the last error is then raised.
    """
    attempt = 0
    while True:
        try:
            return operation()
        except GraphileError as exc:
            delay = retry_delay(exc, attempt)
            attempt += 1
            if delay is None or attempt >= max_attempts:
                raise
            logger.warning(
                "%s failed (attempt %d; trying again in %.2fs): %s",
                description,
                attempt,
                delay,
                exc,
            )
            if wait(delay):
                raise
