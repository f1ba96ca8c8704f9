"""Times and durations as the commands take them: ``--in 10m``, ``--since 2h``, ``--run-at``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

__all__ = ["from_now", "parse_duration", "parse_time"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, param_hint: str, overflow: str = "is too long") -> timedelta:
    """A duration such as ``10m``, ``2h``, ``30s`` or ``1h30m``; ``overflow`` if too long."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    problem = "is not a duration; use a number and a unit (s, m, h, d, w), such as 30s, 10m"
    if compact and "".join(number + unit for number, unit in parts) == compact:
        try:
            return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))
        except (OverflowError, ValueError):
            problem = overflow
    raise click.BadParameter(f"{text!r} {problem}", param_hint=param_hint)


def from_now(text: str) -> datetime:
    """Now plus a duration such as ``10m``, ``2h``, ``30s`` or ``1h30m``."""
    too_far = "is too far in the future"
    delay = parse_duration(text, "'--in'", overflow=too_far)
    try:
        return datetime.now(UTC) + delay
    except OverflowError:
        raise click.BadParameter(f"{text!r} {too_far}", param_hint="'--in'") from None


def parse_time(text: str, param_hint: str = "'--run-at'") -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` accepted)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or moment.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time with a UTC offset,"
            " such as 2030-01-01T09:00:00+00:00 or 2030-01-01T09:00:00Z",
            param_hint=param_hint,
        )
    return moment
