"""The dashboard's throughput history: a background thread and a one-hour ring buffer.

Completed jobs are deleted, so there is no table to count them from afterwards. Instead a
thread reads a few cheap aggregates every ``interval`` seconds (see
:mod:`graphile_py.db.dashboard`) and keeps, for the last ``window`` seconds, how many jobs
were created, completed and failed between consecutive samples, with the job counts by
state. Requests for the chart read this buffer; they never scan the jobs table.

The history lives in this process only: it starts empty when the dashboard starts, and
two dashboards on one database each keep their own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.db.dashboard import RawSample, dashboard_statements_for
from graphile_py.errors import GraphileError

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_WINDOW", "Sample", "Sampler"]

DEFAULT_INTERVAL = 5.0
DEFAULT_WINDOW = 3600.0

logger = logging.getLogger("graphile_py.dashboard")


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the history: the interval's events and the counts at its end.

    ``created``, ``completed`` and ``failed`` count what happened since the previous
    sample, or since ``started_at`` for an aggregated bucket; they are None for the very
    first sample (there is nothing to compare it with).
    """

    taken_at: datetime
    seconds: float
    created: int | None
    completed: int | None
    failed: int | None
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed_total: int


class Sampler:
    """Samples the queue every ``interval`` seconds on a daemon thread.

    >>> sampler = Sampler(utils, interval=5)  # doctest: +SKIP
    >>> sampler.start(); ...; sampler.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        utils: WorkerUtils,
        *,
        interval: float = DEFAULT_INTERVAL,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        if not interval > 0 or not window >= interval:
            raise ValueError("the interval must be positive and no longer than the window")
        self.utils = utils
        self.interval = float(interval)
        self.window = float(window)
        self._statements = dashboard_statements_for(utils.schema)
        self._samples: deque[Sample] = deque(maxlen=math.ceil(window / interval) + 1)
        self._previous: RawSample | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    @property
    def last_error(self) -> str | None:
        """Why the latest sample failed, or None if it succeeded."""
        return self._last_error

    def start(self) -> None:
        """Take a first sample now, then keep sampling on a thread until :meth:`stop`.

        The first sample is the baseline the next ones are compared with, so it is taken
        before this returns: what happens after ``start()`` is counted. A failure is
        recorded in :attr:`last_error` rather than raised; sampling goes on regardless.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._sample_quietly()
        self._thread = threading.Thread(
            target=self._run, name="graphile-py-dashboard-sampler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling and wait (up to ``timeout`` seconds) for the thread to end."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def sample_once(self) -> Sample:
        """Read the aggregates now, record the interval since the last sample, return it."""
        with self._lock:
            # Under the lock: two samples taken at once would each be compared with the
            # same predecessor and count its interval twice.
            with self.utils.connection() as conn:
                since = self._previous.taken_at if self._previous else None
                raw = self._statements.sample(conn, since)
            sample = _derive(self._previous, raw)
            self._previous = raw
            self._samples.append(sample)
            return sample

    def samples(self) -> list[Sample]:
        """Every sample still in the window, oldest first."""
        with self._lock:
            samples = list(self._samples)
        if samples:
            horizon = samples[-1].taken_at.timestamp() - self.window
            samples = [s for s in samples if s.taken_at.timestamp() > horizon]
        return samples

    def history(self, bucket: float | None = None) -> list[Sample]:
        """The samples, merged into buckets of ``bucket`` seconds (aligned to the clock).

        Events are summed per bucket; the counts are those of its last sample.
        """
        samples = [s for s in self.samples() if s.seconds > 0]  # not the very first
        if not bucket or bucket <= self.interval:
            return samples
        merged: list[Sample] = []
        current: list[Sample] = []
        for sample in samples:
            if current and _slot(current[0], bucket) != _slot(sample, bucket):
                merged.append(_merge(current))
                current = []
            current.append(sample)
        if current:
            merged.append(_merge(current))
        return merged

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_quietly()

    def _sample_quietly(self) -> None:
        try:
            self.sample_once()
        except GraphileError as exc:
            if str(exc) != self._last_error:
                logger.warning("dashboard sampler: %s", exc)
            self._last_error = str(exc)
        except Exception:  # the thread must survive whatever one sample does
            logger.exception("dashboard sampler: unexpected error")
            self._last_error = "unexpected error (see the log)"
        else:
            self._last_error = None


def _derive(previous: RawSample | None, raw: RawSample) -> Sample:
    created = completed = failed = None
    seconds = 0.0
    if previous is not None:
        seconds = (raw.taken_at - previous.taken_at).total_seconds()
        created = _growth(previous.last_id, raw.last_id)
        completed = _growth(previous.deleted, raw.deleted)
        failed = len(raw.failures - previous.failures)
    return Sample(
        taken_at=raw.taken_at.astimezone(UTC),
        seconds=seconds,
        created=created,
        completed=completed,
        failed=failed,
        ready=raw.ready,
        scheduled=raw.scheduled,
        running=raw.running,
        retrying=raw.retrying,
        failed_total=raw.failed,
    )


def _growth(before: int | None, after: int | None) -> int | None:
    if after is None:
        return None
    if before is None:
        # The sequence had never been used: every id up to its value is new.
        return after
    # A counter that went backwards was reset (statistics reset, sequence restarted).
    return after - before if after >= before else after


def _slot(sample: Sample, bucket: float) -> int:
    return math.floor(sample.taken_at.timestamp() / bucket)


def _merge(samples: list[Sample]) -> Sample:
    last = samples[-1]
    return Sample(
        taken_at=last.taken_at,
        seconds=sum(s.seconds for s in samples),
        created=sum(s.created or 0 for s in samples),
        completed=sum(s.completed or 0 for s in samples),
        failed=sum(s.failed or 0 for s in samples),
        ready=last.ready,
        scheduled=last.scheduled,
        running=last.running,
        retrying=last.retrying,
        failed_total=last.failed_total,
    )
