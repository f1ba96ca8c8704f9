"""Example tasks: run them with ``graphile-py worker --tasks examples.tasks:registry``.

A task is ``def task(payload, helpers)``: it succeeds by returning and fails by
raising, and a failed job is retried later with exponential backoff.
"""

from __future__ import annotations

import time
from typing import Any

from graphile_py import JobHelpers, TaskRegistry

registry = TaskRegistry()


@registry.task
def hello(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Log a greeting for ``payload["name"]``."""
    helpers.logger.info("Hello, %s!", payload.get("name", "world"))


@registry.task
def user_signed_up(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """React to a sign-up by queueing the welcome email as a job of its own.

    The follow-up job is committed at once. Its ``job_key`` makes it idempotent: if this
    task is retried, the pending email job is replaced instead of being added twice.
    """
    user_id = payload["user_id"]
    helpers.add_job(
        "send_welcome_email",
        {"user_id": user_id, "email": payload["email"]},
        job_key=f"welcome-email:{user_id}",
        max_attempts=5,
    )
    helpers.logger.info("Queued the welcome email for user %s", user_id)


@registry.task
def send_welcome_email(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Pretend to send an email; a real task would call an email API here."""
    job = helpers.job
    helpers.logger.info(
        "Sending welcome email to %s (attempt %d of %d)",
        payload["email"],
        job.attempts,
        job.max_attempts,
    )
    time.sleep(0.1)  # the "network call"
    helpers.logger.info("Welcome email sent to %s", payload["email"])
