"""Fetching jobs in batches and handing them to workers from memory (spec 3.11).

One worker at a time fetches up to ``size`` jobs in a single claim; the others wait
for the result instead of each sending a claim of their own. Cached jobs are locked by
the pool (and their named queues with them) until a worker takes them; jobs not taken
within ``ttl`` seconds, and every cached job at shutdown, are handed back to the
database with their claim's attempt undone.

The claim statement keeps at most one job per named queue in a batch, so caching never
lets two jobs of one queue run at once (graphile-worker 0.17's issue 621).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from graphile_py.errors import GraphileError
from graphile_py.jobs import Job
from graphile_py.logs import plural

__all__ = ["LocalQueue"]

logger = logging.getLogger("graphile_py.local_queue")


class LocalQueue:
    """A cache of claimed jobs shared by the worker threads of one pool."""

    def __init__(
        self,
        *,
        size: int,
        ttl: float,
        poll_interval: float,
        once: bool,
        fetch: Callable[[int], list[Job]],
        hand_back: Callable[[Sequence[int]], None],
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._poll_interval = poll_interval
        self._once = once
        self._fetch = fetch
        self._hand_back = hand_back
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._cached_since = 0.0
        self._fetching = False
        self._pulsed = False
        #: No fetch before this (monotonic) time unless pulsed: set by an empty fetch.
        self._next_fetch_at = 0.0
        self._released = False
        self._ttl_thread = threading.Thread(
            target=self._expire, name="graphile-py-local-queue", daemon=True
        )
        self._ttl_thread.start()

    def get_job(self, give_up: threading.Event) -> Job | None:
        """The next job, fetching a batch when the cache is empty.

        Blocks while there is nothing to do, for at most the poll interval, and returns
        None then; in run-once mode it returns None at once when a fetch found nothing.
        """
        deadline = time.monotonic() + self._poll_interval
        with self._cond:
            while True:
                if self._released or give_up.is_set():
                    return None
                if self._jobs:
                    job = self._jobs.popleft()
                    if self._jobs:
                        self._cond.notify()  # more for another waiting worker
                    return job
                now = time.monotonic()
                if not self._fetching and (self._pulsed or now >= self._next_fetch_at):
                    self._fetching = True
                    self._pulsed = False
                    break
                if now >= deadline:
                    return None
                # Idle after an empty fetch: the next one waits for a pulse (new jobs
                # announced) or the poll interval. Without this, every fetch's wake-up
                # started the next waiter's fetch: an idle pool claimed ~2,500 times a
                # second.
                until = deadline if self._fetching else min(deadline, self._next_fetch_at)
                self._cond.wait(until - now)
        jobs: list[Job] = []
        leftover: list[Job] = []
        try:
            jobs = self._fetch(self._size)
        except GraphileError as exc:
            logger.warning("Failed to fetch a batch of jobs: %s", exc)
        finally:
            with self._cond:
                self._fetching = False
                if self._released:
                    # Shutdown began while we fetched: these go straight back.
                    leftover = jobs
                    jobs = []
                else:
                    self._jobs.extend(jobs)
                    if jobs:
                        self._cached_since = time.monotonic()
                        self._next_fetch_at = 0.0  # more may be waiting: no pause
                    elif not self._once:
                        self._next_fetch_at = time.monotonic() + self._poll_interval
                self._cond.notify_all()
        if leftover:
            self._return([job.id for job in leftover])
        if jobs:
            return self.get_job(give_up)
        # Nothing ready. The caller asks again, and waits there for a pulse or the poll
        # interval (in run-once mode, it stops).
        return None

    def pulse(self, count: int) -> None:
        """New jobs were announced: fetch now (or again right after the current fetch)."""
        with self._cond:
            self._pulsed = True
            if not self._jobs:
                self._cond.notify_all()

    def release(self) -> None:
        """Stop handing out jobs and give every cached job back to the database."""
        with self._cond:
            self._released = True
            leftover = [job.id for job in self._jobs]
            self._jobs.clear()
            self._cond.notify_all()
        if leftover:
            self._return(leftover)
        self._ttl_thread.join(timeout=5)

    def _expire(self) -> None:
        while True:
            with self._cond:
                if self._released:
                    return
                if not self._jobs:
                    self._cond.wait(self._ttl if self._ttl > 0 else None)
                    continue
                age = time.monotonic() - self._cached_since
                if age < self._ttl:
                    self._cond.wait(self._ttl - age)
                    continue
                expired = [job.id for job in self._jobs]
                self._jobs.clear()
            logger.info(
                "Handing back %s cached for over %gs", plural(len(expired), "job"), self._ttl
            )
            self._return(expired)

    def _return(self, ids: Sequence[int]) -> None:
        try:
            self._hand_back(ids)
        except GraphileError as exc:
            logger.error(
                "Could not hand back jobs %s: %s; they stay locked until the stale-lock"
                " sweep or force_unlock_workers frees them",
                list(ids),
                exc,
            )
