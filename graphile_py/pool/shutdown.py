"""Stopping a pool's workers in order: no job stays locked by a pool that stopped on purpose.

Once claiming has stopped: let running jobs finish within ``shutdown_timeout`` (asking
them to stop through ``abort_event`` after ``graceful_shutdown_abort_timeout``), fail
whatever is still running with a clear message, and wait for every one of those writes
before the pool closes its connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from graphile_py.errors import GraphileError
from graphile_py.logs import plural
from graphile_py.pool.claim_loop import ClaimLoop
from graphile_py.pool.outcomes import FINAL_WRITE_TIMEOUT

__all__ = ["StopRequest", "finish_jobs"]

logger = logging.getLogger("graphile_py.worker")


class StopRequest:
    """Whether, why and how urgently a pool was asked to stop; set from any thread."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.reason = ""
        self.forced = threading.Event()
        self.force_reason = ""

    def ask(self, reason: str) -> bool:
        """Note a request to stop; True if it is the first one."""
        if self.requested.is_set():
            return False
        self.reason = reason
        self.requested.set()
        return True

    def force(self, reason: str) -> None:
        """Note that running jobs must not be waited for (the first reason is kept)."""
        if not self.forced.is_set():
            self.force_reason = reason
            self.forced.set()


def finish_jobs(
    claims: ClaimLoop,
    stop: StopRequest,
    *,
    reason: str,
    forced: bool,
    on_forceful: Callable[[], None],
) -> None:
    """After claiming stopped: wait for running jobs, fail the rest, write every outcome.

    ``forced`` says whether a forced stop was requested before shutdown began;
    ``on_forceful`` is called just before jobs still running are failed.
    """
    opts = claims.options
    slots = claims.slots
    started = time.monotonic()
    aborted = False
    while slots.any_alive():
        if stop.forced.is_set():
            forced = True
            break
        waited = time.monotonic() - started
        if waited >= opts.graceful_shutdown_abort_timeout and not aborted:
            logger.info("Asking running tasks to stop (abort_event set)")
            slots.abort_all()
            aborted = True
        if waited >= opts.shutdown_timeout:
            break
        time.sleep(0.02)

    still_running = slots.abandon_running()
    if still_running:
        slots.abort_all()
        on_forceful()
        message = (
            f"Forced worker shutdown due to {stop.force_reason or reason}"
            if forced
            else f"Worker shutdown ({reason}): the job did not finish within the"
            f" {opts.shutdown_timeout:g}s grace period"
        )
        started_at = {active.job.id: active.started_at for active in still_running}
        _fail_abandoned(claims, list(started_at), message, started_at)
    slots.wait_for_writes(FINAL_WRITE_TIMEOUT)
    claims.outcomes.close(timeout=FINAL_WRITE_TIMEOUT)
    _release_leftover_locks(claims, reason)
    claims.outcomes.give_up()


def _fail_abandoned(
    claims: ClaimLoop, ids: list[int], message: str, started: dict[int, float] | None = None
) -> None:
    logger.warning("Failing %s still running at shutdown: %s", plural(len(ids), "job"), ids)
    claims.outcomes.fail_all(ids, message, within=FINAL_WRITE_TIMEOUT, started=started)


def _release_leftover_locks(claims: ClaimLoop, reason: str) -> None:
    # Safety net: a job claimed in the instant shutdown began, or one whose outcome
    # could not be written in time, must not stay locked by a pool that is gone.
    try:
        with claims.connection() as conn:
            leftover = claims.statements.jobs_locked_by(conn, claims.pool_id)
    except GraphileError as exc:
        logger.error("Could not check for jobs still locked by %s: %s", claims.pool_id, exc)
        return
    if leftover:
        _fail_abandoned(
            claims,
            leftover,
            f"Worker shutdown ({reason}) before the job's outcome was recorded",
        )
