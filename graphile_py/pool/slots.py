"""A pool's worker slots and the job each one is running, behind one lock.

A running job moves RUNNING -> WRITING (its outcome is being recorded) -> done, or
RUNNING -> ABANDONED when shutdown or its time limit fails it first; an abandoned job's
worker must not write anything when its task finally returns. Every transition happens
here, under the table's lock, so the pool's threads always agree on who owns a job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from graphile_py.events import WorkerEvents
from graphile_py.jobs import Job
from graphile_py.logs import JobLogger

__all__ = ["ActiveJob", "Overdue", "RunState", "SlotTable", "WorkerSlot"]

logger = logging.getLogger("graphile_py.worker")


class RunState(Enum):
    """Where a job stands inside its worker slot (not the job's state in the database)."""

    RUNNING = "running"  # the task is executing
    WRITING = "writing"  # the worker is recording the outcome
    ABANDONED = "abandoned"  # shutdown or a time limit failed the job first


# Guards the lazy creation of ActiveJob.abort; held only for a moment, and rarely.
_abort_lock = threading.Lock()


class ActiveJob:
    """A job a worker is running, with what is needed to stop it or wait for it.

    Its abort event is created only when someone asks for it (a task reading
    ``helpers.abort_event``): two ``threading.Event``s per job were a visible cost.
    """

    __slots__ = (
        "_abort",
        "abort_requested",
        "deadline",
        "job",
        "started_at",
        "state",
        "timeout",
        "written",
    )

    def __init__(self, job: Job, timeout: float | None) -> None:
        self.job = job
        self.state = RunState.RUNNING
        #: The outcome is recorded (or handed to a batch writer); see SlotTable.written.
        self.written = False
        self.abort_requested = False
        self._abort: threading.Event | None = None
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout if timeout is not None else None
        #: When the task started (epoch seconds), for the job history of an abandoned job.
        self.started_at = time.time()

    @property
    def abort(self) -> threading.Event:
        """Set when the task should stop: shutdown, or its time limit passed."""
        event = self._abort
        if event is None:
            with _abort_lock:
                event = self._abort
                if event is None:
                    event = self._abort = threading.Event()
                    if self.abort_requested:
                        event.set()
        return event

    def request_abort(self) -> None:
        """Ask the task to stop (sets ``abort`` now or when it is first asked for)."""
        with _abort_lock:
            self.abort_requested = True
            event = self._abort
        if event is not None:
            event.set()


class SlotOwner(Protocol):
    """What a worker thread needs from its owner (the pool's ClaimLoop)."""

    events: WorkerEvents

    @property
    def stopping(self) -> bool: ...

    def next_job(self, slot: WorkerSlot) -> Job | None: ...

    def execute(self, slot: WorkerSlot, job: Job) -> Job | None: ...

    def hand_back(self, job: Job) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class WorkerSlot:
    """One worker thread and its state: nudges, run-once exhaustion, retirement."""

    def __init__(self, owner: SlotOwner, worker_id: str, poll_interval: float) -> None:
        self.owner = owner
        self.worker_id = worker_id
        self.poll_interval = poll_interval
        self.wake = threading.Event()
        self.idle = False
        self.ran_dry = False  # run-once: nothing was ready
        self.retired = False  # a timed-out task holds this thread; a new slot took over
        self.failures = 0
        self.active: ActiveJob | None = None
        self.thread = threading.Thread(target=self._run, name=worker_id, daemon=True)
        self.log = JobLogger(logger, {"worker_id": worker_id})

    def _run(self) -> None:
        owner = self.owner
        error: BaseException | None = None
        self.log.debug("Spawned")
        job: Job | None = None
        try:
            while not (owner.stopping or self.retired or self.ran_dry):
                if job is None:
                    job = owner.next_job(self)
                if job is not None:
                    # Recording an outcome may claim the next job in the same round trip.
                    job = owner.execute(self, job)
            if job is not None:
                owner.hand_back(job)  # claimed, but the pool stopped before it could run
        except BaseException as exc:  # a bug in the pool itself: stop it rather than hang
            error = exc
            self.log.exception("Worker crashed")
            owner.fail(exc)
        finally:
            owner.events.worker_stop(self.worker_id, error)

    def idle_wait(self) -> None:
        """Wait for a nudge, at most one poll interval."""
        self.idle = True
        try:
            self.wake.wait(self.poll_interval)
        finally:
            self.idle = False


@dataclass(frozen=True, slots=True)
class Overdue:
    """A job past its time limit plus grace, and the slot that replaced its worker."""

    worker_id: str
    active: ActiveJob
    replacement: WorkerSlot


class SlotTable:
    """The pool's current slots; every change to who runs what goes through here."""

    def __init__(self, make_slot: Callable[[], WorkerSlot], count: int) -> None:
        self._make_slot = make_slot
        self._lock = threading.Lock()
        # Notified when a job's outcome is written: shutdown waits on it.
        self._written = threading.Condition(self._lock)
        self._slots = [make_slot() for _ in range(count)]
        self._abort_all = threading.Event()

    def __iter__(self) -> Iterator[WorkerSlot]:
        with self._lock:
            return iter(list(self._slots))

    def __len__(self) -> int:
        return len(self._slots)

    def any_alive(self) -> bool:
        return any(slot.thread.is_alive() for slot in self)

    def begin(self, slot: WorkerSlot, job: Job, timeout: float | None) -> ActiveJob:
        """``slot`` starts running ``job``."""
        active = ActiveJob(job, timeout)
        with self._lock:
            if self._abort_all.is_set():
                active.request_abort()
            slot.active = active
        return active

    def task_returned(self, slot: WorkerSlot, active: ActiveJob) -> bool:
        """The task ended: True if the worker should record the outcome (False: abandoned)."""
        with self._lock:
            if active.state is RunState.ABANDONED:
                if slot.active is active:
                    slot.active = None
                return False
            active.state = RunState.WRITING
            return True

    def written(self, slot: WorkerSlot | None, active: ActiveJob) -> None:
        """The outcome is recorded (or handed to a batch writer)."""
        with self._written:
            if slot is not None and slot.active is active:
                slot.active = None
            active.written = True
            self._written.notify_all()

    def abort_all(self) -> None:
        """Set the abort event of every running job, and of jobs started from now on."""
        with self._lock:
            self._abort_all.set()
            for slot in self._slots:
                if slot.active is not None:
                    slot.active.request_abort()

    def abandon_running(self) -> list[ActiveJob]:
        """Mark every job whose task is still running as abandoned; return them."""
        with self._lock:
            running = [
                slot.active
                for slot in self._slots
                if slot.active is not None and slot.active.state is RunState.RUNNING
            ]
            for active in running:
                active.state = RunState.ABANDONED
        return running

    def wait_for_writes(self, timeout: float) -> None:
        """Wait (at most ``timeout`` in all) for outcomes being recorded right now."""
        with self._written:
            writing = [
                slot.active
                for slot in self._slots
                if slot.active is not None and slot.active.state is RunState.WRITING
            ]
            self._written.wait_for(lambda: all(active.written for active in writing), timeout)

    def others_busy(self, slot: WorkerSlot) -> bool:
        """True if a slot other than ``slot`` is running a job."""
        with self._lock:
            return any(other.active is not None for other in self._slots if other is not slot)

    def enforce_time_limits(self, grace: float) -> list[Overdue]:
        """Abort jobs past their limit; replace the workers of those past limit + grace."""
        now = time.monotonic()
        overdue: list[Overdue] = []
        with self._lock:
            for index, slot in enumerate(self._slots):
                active = slot.active
                if active is None or active.deadline is None or now < active.deadline:
                    continue
                if active.state is not RunState.RUNNING:
                    continue
                if not active.abort_requested:
                    slot.log.warning(
                        "Task %s (%s) passed its time limit of %gs; asking it to stop",
                        active.job.id,
                        active.job.task_identifier,
                        active.timeout,
                    )
                    active.request_abort()
                if now >= active.deadline + grace:
                    active.state = RunState.ABANDONED
                    slot.retired = True
                    slot.active = None
                    replacement = self._make_slot()
                    self._slots[index] = replacement
                    overdue.append(Overdue(slot.worker_id, active, replacement))
        return overdue
