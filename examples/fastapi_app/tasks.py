"""The app's tasks. A real app would send an email; these write what they did."""

from __future__ import annotations

import time
from typing import Any

from graphile_py import JobHelpers, TaskRegistry

registry = TaskRegistry()


@registry.task
def send_welcome(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Mark the sign-up as welcomed (the email would be sent here)."""
    with helpers.connection() as conn:
        conn.execute("update signups set welcomed_at = now() where email = %s", (payload["email"],))


@registry.task
def slow_report(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Work that takes ``payload["seconds"]``, then records that it finished."""
    time.sleep(payload["seconds"])
    with helpers.connection() as conn:
        conn.execute("insert into reports (label) values (%s)", (payload["label"],))
