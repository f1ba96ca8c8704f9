"""The cron scheduler: turns cron items into jobs, once per minute across every runner.

:class:`CronScheduler` follows graphile-worker 0.18's cron loop (spec 6.4 to 6.6):

1. **Start.** Note the start time; register identifiers the database has never seen
   (``known_since`` = start, no backfill); then backfill the items that were already known:
   every minute within an item's ``backfill_period`` before the start, not before its last
   run (or, never run, the time it became known), that matches its schedule.
2. **Ticks.** From the start rounded up to a whole minute, wake one millisecond after each
   minute and write the jobs of every item due then. A wake-up that comes early (the
   clock was set back, or skew) waits again; one that comes late catches up minute by
   minute, so a minute is never skipped and never written twice.
3. **Errors** are logged and cron starts over at step 1 after a jittered backoff (up to
   one minute), forever: cron never takes the process down.

Each minute is written by one atomic statement that first claims the minute in
``_private_known_crontabs`` (see :mod:`graphile_py.db.cron`), so any number of Python and
Node runners with the same crontab add each job once.

Minutes are always decided by the scheduler's clock, in UTC. Pass ``clock`` and ``sleep``
to drive it with a fake clock in tests.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from graphile_py.cron.crontab import CronItem, parse_crontab
from graphile_py.cron.js import js_json
from graphile_py.db import ConnectionSource, borrow
from graphile_py.db.cron import CronStatements, KnownCrontab, cron_statements_for
from graphile_py.db.retry import backoff_delay
from graphile_py.errors import CrontabError, GraphileError
from graphile_py.events import WorkerEvents, guarded
from graphile_py.logs import plural

__all__ = ["CronScheduler", "cron_job_specs", "load_crontab_file"]

logger = logging.getLogger("graphile_py.cron")

_MINUTE = timedelta(minutes=1)
_TICK_MARGIN = 0.001  # wake 1 ms after the minute, so that "now" is inside it
# Restart backoff (spec 6.4): min(200 ms * 1.5**k, 60 s) * (0.5 + random()).
_RETRY_MIN_DELAY = 0.2
_RETRY_MAX_DELAY = 60.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CronScheduler:
    """Schedules the jobs of ``items`` on one worker schema, until stopped.

    ``pool`` lends connections (each use is one short statement); ``events`` receives the
    ``cron_*`` hooks. ``clock`` returns the current timezone-aware time (default: the
    system clock) and ``sleep(seconds)`` waits that long and returns True if the
    scheduler should stop now (default: an internal event that :meth:`stop` sets). A
    custom ``sleep`` should return within a short time of :meth:`stop` being called,
    or :meth:`stop` will time out waiting for it.
    """

    def __init__(
        self,
        items: Sequence[CronItem],
        *,
        pool: ConnectionSource,
        schema: str,
        events: WorkerEvents | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.items: tuple[CronItem, ...] = tuple(items)
        _check_unique(self.items)
        self.schema = schema
        self._pool = pool
        self._statements: CronStatements = cron_statements_for(schema)
        self._events = guarded(events)
        self._clock = clock
        self._stop_event = threading.Event()
        self._sleep = sleep or self._stop_event.wait
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempts = 0

    # -- public control ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the scheduling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Register and backfill now, in this thread, then tick in a daemon thread.

        Does nothing without items. If registration or backfill fails, the error is
        logged and the thread tries again after a backoff (:meth:`wait_until_running`
        tells when it succeeded); only a scheduler that was already started raises.
        """
        if self._thread is not None:
            raise RuntimeError("this CronScheduler was already started")
        if not self.items:
            logger.debug("No cron items; cron is idle")
            return
        # Confirm what will be scheduled: a crontab that parsed is not always the one meant.
        logger.info(
            "Cron: scheduling %s (UTC): %s",
            plural(len(self.items), "item"),
            ", ".join(item.identifier for item in self.items),
        )
        start: datetime | None = None
        delay = 0.0
        try:
            start = self._register_and_backfill()
        except Exception as exc:
            delay = self._log_restart(exc)
        self._thread = threading.Thread(
            target=self._run, args=(start, delay), name="graphile-py-cron", daemon=True
        )
        self._thread.start()

    def wait_until_running(self, timeout: float | None = None) -> bool:
        """Block until registration and backfill have succeeded; False on timeout."""
        return self._started.wait(timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop scheduling; True once the thread has ended (within ``timeout`` seconds).

        A minute being written when stop is called is finished first: its statement is
        atomic either way.
        """
        self._stop_event.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("Cron did not stop within %gs", timeout)
            return False
        return True

    # -- the loop ------------------------------------------------------------------------

    def _run(self, start: datetime | None, delay: float) -> None:
        if start is None and self._wait(delay):
            return
        while not self._stop_event.is_set():
            try:
                if start is None:
                    start = self._register_and_backfill()
                self._tick_loop(start)
                return
            except Exception as exc:
                delay = self._log_restart(exc)
                start = None
                if self._wait(delay):
                    return

    def _log_restart(self, exc: BaseException) -> float:
        self._attempts += 1
        delay = backoff_delay(self._attempts - 1, low=_RETRY_MIN_DELAY, high=_RETRY_MAX_DELAY)
        logger.error(
            "Cron hit an error; restarting in %dms (attempt %d): %s",
            round(delay * 1000),
            self._attempts,
            exc,
            # A database error says it all; anything else is a bug worth a traceback.
            exc_info=not isinstance(exc, GraphileError),
        )
        return delay

    def _wait(self, seconds: float) -> bool:
        """Sleep; True if the scheduler must stop."""
        return bool(self._sleep(seconds)) or self._stop_event.is_set()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the cron clock must return timezone-aware datetimes")
        # Node's clock has millisecond precision; so do start times stored in the database.
        now = now.astimezone(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _register_and_backfill(self) -> datetime:
        """Step 1 of spec 6.4: returns the start time."""
        start = self._now()
        self._events.cron_starting(start)
        identifiers = [item.identifier for item in self.items]
        with borrow(self._pool) as conn:
            known = {row[0]: row for row in self._statements.known_crontabs(conn, identifiers)}
            unknown = [ident for ident in identifiers if ident not in known]
            if unknown:
                self._statements.register(conn, unknown, start)
        self._backfill(start, known)
        self._events.cron_started(start)
        self._started.set()
        return start

    def _backfill(self, start: datetime, known: dict[str, KnownCrontab]) -> None:
        """Spec 6.5: write missed minutes of known items, oldest first, one by one."""
        candidates = [
            (item, _period(item), row)
            for item in self.items
            if (row := known.get(item.identifier)) is not None
        ]
        largest = max((_period(item) for item in self.items), default=timedelta(0))
        if largest <= timedelta(0) or not candidates:
            return
        ts = _round_up(start - largest)
        while ts < start:
            if self._stop_event.is_set():
                return
            ago = start - ts
            due = [
                (item, row)
                for item, period, row in candidates
                if period >= ago and ts >= _ms(row[2] or row[1]) and item.matches(ts)
            ]
            if due:
                self._events.cron_backfill([item.identifier for item, _ in due], ts)
                specs = cron_job_specs(
                    [item for item, _ in due], ts, backfilled=True, known=[row for _, row in due]
                )
                self._write(specs, ts)
            ts += _MINUTE

    def _tick_loop(self, start: datetime) -> None:
        """Step 2 of spec 6.4; returns when stopped, raises on error."""
        next_ts = _round_up(start)
        while not self._stop_event.is_set():
            delay = max((next_ts - self._now()).total_seconds() + _TICK_MARGIN, _TICK_MARGIN)
            if self._wait(delay):
                return
            self._attempts = 0  # healthy
            now = self._now()
            current = _round_down(now)
            if current < next_ts:
                logger.debug(
                    "Graphile Worker Cron fired %.3fs too early (clock skew?); rescheduling",
                    (next_ts - now).total_seconds(),
                )
                self._events.cron_premature_timer(now, next_ts)
                continue
            if current > next_ts:
                behind = now - next_ts
                seconds = math.floor(behind.total_seconds())
                logger.debug(
                    "Graphile Worker Cron fired too late; catching up (%dm%ds behind)",
                    seconds // 60,
                    seconds % 60,
                )
                self._events.cron_overdue_timer(now, next_ts)
            due = [item for item in self.items if item.matches(next_ts)]
            if due:
                identifiers = [item.identifier for item in due]
                self._events.cron_schedule(next_ts, identifiers)
                self._write(cron_job_specs(due, next_ts), next_ts)
                self._events.cron_scheduled(next_ts, identifiers)
            next_ts += _MINUTE

    def _write(self, specs_json: str, ts: datetime) -> None:
        with borrow(self._pool) as conn:
            self._statements.schedule(conn, specs_json, ts)


def cron_job_specs(
    items: Sequence[CronItem],
    ts: datetime,
    *,
    backfilled: bool = False,
    known: Sequence[KnownCrontab] | None = None,
) -> str:
    """The JSON document of one minute's jobs, exactly as graphile-worker 0.18 builds it.

    Each entry is ``{"identifier", "job": {"task", "payload", "queueName"?, "runAt",
    "maxAttempts"?, "jobKey"?, "jobKeyMode"?, "priority"?}}`` (unset options left out);
    backfill entries also carry the item's ``known_since`` and ``last_execution``. The
    payload is the item's payload plus ``"_cron": {"ts": <minute>, "backfilled": ...}``.
    """
    stamp = _iso(ts)
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        job: dict[str, Any] = {
            "task": item.task,
            "payload": {**(item.payload or {}), "_cron": {"ts": stamp, "backfilled": backfilled}},
        }
        optional = {
            "queueName": item.queue_name,
            "runAt": stamp,
            "maxAttempts": item.max_attempts,
            "jobKey": item.job_key,
            "jobKeyMode": item.job_key_mode,
            "priority": item.priority,
        }
        job.update((key, value) for key, value in optional.items() if value is not None)
        entry: dict[str, Any] = {"identifier": item.identifier, "job": job}
        if known is not None:
            _, known_since, last_execution = known[index]
            entry["known_since"] = _iso(known_since)
            entry["last_execution"] = _iso(last_execution) if last_execution else None
        entries.append(entry)
    return js_json(entries)


def load_crontab_file(path: str | Path) -> list[CronItem]:
    """The cron items of the crontab file at ``path``.

    A missing file means no cron: it is logged at INFO (``Failed to read crontab file
    '<path>'; cron is disabled``) and ``[]`` returned. A file that cannot be read or
    parsed raises :class:`CrontabError` naming the file. The file is read once.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        logger.info("Failed to read crontab file '%s'; cron is disabled", path)
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CrontabError(f"Failed to read crontab file '{path}': {exc}") from exc
    return parse_crontab(text, source=f"crontab file '{path}'")


# -- helpers ---------------------------------------------------------------------------


def _check_unique(items: Sequence[CronItem]) -> None:
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in items:
        if not isinstance(item, CronItem):
            raise CrontabError(
                f"Cron items must be CronItem objects (see parse_crontab and cron_item),"
                f" not {type(item).__name__}"
            )
        if item.identifier in seen and item.identifier not in duplicates:
            duplicates.append(item.identifier)
        seen.add(item.identifier)
    if duplicates:
        raise CrontabError(
            "Invalid cron items; duplicate identifiers found: '"
            + "', '".join(sorted(duplicates))
            + "' - please give each item a unique identifier"
        )


def _period(item: CronItem) -> timedelta:
    return timedelta(milliseconds=round(item.backfill_period * 1000))


def _round_down(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _round_up(ts: datetime) -> datetime:
    floor = _round_down(ts)
    return floor if floor == ts else floor + _MINUTE


def _ms(ts: datetime) -> datetime:
    """A database timestamp at JavaScript's millisecond precision, in UTC."""
    utc = ts.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _iso(ts: datetime) -> str:
    """``ts`` as JavaScript's ``toISOString()`` writes it: ``2021-01-01T04:00:00.000Z``."""
    u = _ms(ts)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond // 1000:03d}Z"
    )
