"""Sign-up: the user row and the welcome email's job commit together, or not at all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from graphile_py import add_job


def sign_up(conn: psycopg.Connection[Any], email: str, *, fail: bool = False) -> None:
    with conn.transaction():
        conn.execute("insert into users (email) values (%s)", (email,))
        add_job(conn, "send_welcome", {"email": email}, job_key=f"welcome:{email}")
        if fail:
            raise RuntimeError("the request failed after enqueueing")


def schedule_reminder(conn: psycopg.Connection[Any], email: str, when: datetime) -> None:
    add_job(conn, "send_tips", {"email": email, "reminder": True}, run_at=when)
