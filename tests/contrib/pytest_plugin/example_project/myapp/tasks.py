"""The application's tasks: each records what it did in the sent_emails table."""

from __future__ import annotations

import asyncio
from typing import Any

from graphile_py import JobHelpers, TaskRegistry

registry = TaskRegistry()


def record(helpers: JobHelpers, kind: str, email: str) -> None:
    with helpers.connection() as conn:
        conn.execute("insert into sent_emails (kind, email) values (%s, %s)", (kind, email))


@registry.task
def send_welcome(payload: dict[str, Any], helpers: JobHelpers) -> None:
    record(helpers, "welcome", payload["email"])
    # A follow-up job, added by the task itself.
    helpers.add_job("send_tips", {"email": payload["email"]})


@registry.task
def send_tips(payload: dict[str, Any], helpers: JobHelpers) -> None:
    record(helpers, "tips", payload["email"])


@registry.task
def flaky_sync(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Fails its first two attempts: the mail server is down."""
    if helpers.job.attempts < 3:
        raise ConnectionError(f"mail server down (attempt {helpers.job.attempts})")
    record(helpers, "flaky", payload["email"])


@registry.task
def always_fails(payload: dict[str, Any], helpers: JobHelpers) -> None:
    raise ValueError(f"no such mailbox: {payload['email']}")


@registry.task
async def send_async(payload: dict[str, Any], helpers: JobHelpers) -> None:
    await asyncio.sleep(0)
    record(helpers, "async", payload["email"])


@registry.task
def forever(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """A bug: enqueues itself again and again."""
    helpers.add_job("forever", payload)
