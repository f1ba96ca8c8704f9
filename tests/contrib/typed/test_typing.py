"""mypy --strict accepts typed enqueueing, and refuses a payload of the wrong type.

Two small programs are checked in one mypy run (about 10 s from a cold cache): one must
pass untouched, the other must fail on exactly the lines marked ``# E``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

COMMON = """
from __future__ import annotations

import dataclasses
from typing import Any, assert_type

import psycopg
from pydantic import BaseModel

from graphile_py import JobHelpers, TaskFunction, TaskRegistry, TypedTask, add_jobs

registry = TaskRegistry()


class SendEmail(BaseModel):
    to: str


@dataclasses.dataclass
class Resize:
    width: int


@registry.task
def send_email(payload: SendEmail, helpers: JobHelpers) -> None: ...


@registry.task("images/resize", timeout=5, on_invalid="retry")
async def resize(payload: Resize, helpers: JobHelpers) -> None: ...
"""

GOOD = (
    COMMON
    + """

@registry.task
def untyped(payload: dict[str, Any], helpers: JobHelpers) -> None: ...


assert_type(send_email, TypedTask[SendEmail, None])
assert_type(untyped, TaskFunction)


def enqueue(conn: psycopg.Connection[Any]) -> None:
    send_email.add_job(conn, SendEmail(to="a@example.com"), queue_name="mail", priority=1)
    send_email.add_jobs(conn, [SendEmail(to="b@example.com")])
    resize.add_job(conn, Resize(width=3), job_key="r-3")
    add_jobs(conn, [send_email.spec(SendEmail(to="c")), resize.spec(Resize(1), priority=2)])


async def enqueue_async(conn: psycopg.AsyncConnection[Any]) -> None:
    await send_email.add_job_async(conn, SendEmail(to="a@example.com"))
    await resize.add_jobs_async(conn, [Resize(1)])
"""
)

BAD = (
    COMMON
    + """

def enqueue(conn: psycopg.Connection[Any]) -> None:
    send_email.add_job(conn, Resize(width=3))  # E
    send_email.add_job(conn, {"to": "a@example.com"})  # E
    resize.add_job(conn, SendEmail(to="x"))  # E
    send_email.add_jobs(conn, [Resize(width=1)])  # E
    send_email.spec(Resize(width=1))  # E
    send_email.add_job(conn, SendEmail(to="x"), priority="high")  # E
    send_email.add_job(conn, SendEmail(to="x"), queue="mail")  # E


async def enqueue_async(conn: psycopg.AsyncConnection[Any]) -> None:
    await resize.add_job_async(conn, SendEmail(to="x"))  # E
"""
)


def test_mypy_strict_accepts_typed_enqueueing_and_refuses_wrong_payloads(
    tmp_path: Path,
) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "good.py",
            "bad.py",
        ],
        cwd=tmp_path,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = re.findall(r"^(\w+)\.py:(\d+): error: (.*)$", output, re.MULTILINE)
    assert [e for e in errors if e[0] == "good"] == [], output
    expected = {n for n, line in enumerate(BAD.splitlines(), start=1) if line.endswith("# E")}
    flagged = {int(line) for file, line, _ in errors if file == "bad"}
    assert flagged == expected, output
    assert len(expected) == 8
    assert result.returncode == 1, output
