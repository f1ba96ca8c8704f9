"""What the reliability tests share: worker subprocesses, the CLI, throwaway roles.

Tasks record every execution in ``public.gpy_executions`` (one row per start, finished
when the task returns), so "ran exactly once per attempt" is a query, whichever process
or thread ran the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support import TestDatabase

REPO_ROOT = Path(__file__).resolve().parents[2]

EXECUTIONS_DDL = """
create table if not exists public.gpy_executions (
    id bigserial primary key,
    job_id bigint not null,
    attempt int not null,
    pool_id text,
    job_queue_id int,
    task text not null,
    pid int not null default pg_backend_pid(),
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    outcome text
)
"""


def record_start(helpers: Any) -> int:
    """Record that a task started this attempt of its job; returns the execution id.

    Task modules that run in worker subprocesses import this too (``cli_env`` puts the
    repository on their ``PYTHONPATH``).
    """
    job = helpers.job
    with helpers.connection() as conn:
        row = conn.execute(
            "insert into public.gpy_executions (job_id, attempt, pool_id, job_queue_id, task)"
            " values (%s, %s, %s, %s, %s) returning id",
            (job.id, job.attempts, job.locked_by, job.job_queue_id, job.task_identifier),
        ).fetchone()
    return int(row[0])


def record_end(helpers: Any, execution_id: int, outcome: str = "success") -> None:
    """Record that the execution ``execution_id`` ended."""
    with helpers.connection() as conn:
        conn.execute(
            "update public.gpy_executions set finished_at = clock_timestamp(), outcome = %s"
            " where id = %s",
            (outcome, execution_id),
        )


def create_executions_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EXECUTIONS_DDL)


def executions(dsn: str) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        cur.execute("select * from public.gpy_executions order by id")
        return cur.fetchall()


def set_lock_age(db: TestDatabase, job_ids: Sequence[int], age: str) -> None:
    """Pretend the jobs (and their queues) were locked ``age`` (an interval) ago."""
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {s}._private_jobs set locked_at = now() - %s::interval"
                " where id = any(%s) and locked_at is not null"
            ).format(s=ident),
            (age, list(job_ids)),
        )
        conn.execute(
            sql.SQL(
                "update {s}._private_job_queues set locked_at = now() - %s::interval"
                " where locked_at is not null and id in"
                " (select job_queue_id from {s}._private_jobs where id = any(%s))"
            ).format(s=ident),
            (age, list(job_ids)),
        )


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``graphile-py`` subprocess: no ambient database settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "PGDATABASE", "GRAPHILE_WORKER_SCHEMA"}
        and not key.startswith("GRAPHILE_PY_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m graphile_py ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "graphile_py", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class WorkerProcess:
    """A ``graphile-py worker`` subprocess whose output goes to a log file."""

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        tasks: str,
        cwd: Path,
        jobs: int = 1,
        extra_args: Sequence[str] = (),
        log_level: str = "info",
        env: dict[str, str] | None = None,
        name: str = "worker",
    ) -> None:
        self.log_path = cwd / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "graphile_py",
                "--log-level",
                log_level,
                "worker",
                "-c",
                dsn,
                "-s",
                schema,
                "--tasks",
                tasks,
                "--jobs",
                str(jobs),
                *extra_args,
            ],
            cwd=cwd,
            env=env or cli_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (graceful shutdown); SIGKILL if it does not exit within ``timeout``."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
                raise AssertionError(
                    f"worker {self.pid} ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}"
                ) from None
        return self.process.wait(30)

    def close(self) -> None:
        """Make sure the process is gone and the log file closed (for finally blocks)."""
        try:
            if self.alive():
                self.process.kill()
            self.process.wait(30)
        finally:
            self._log.close()


@contextmanager
def login_role(db: TestDatabase, prefix: str = "gpy_role") -> Iterator[tuple[str, str]]:
    """A new LOGIN role with no privileges, and a connection string for it to ``db``.

    Roles belong to the whole server: the name is unique, and the role is dropped (with
    every privilege it was granted in ``db``) when the block ends.
    """
    from psycopg.conninfo import make_conninfo

    from tests.support import admin_connection, unique_name

    name = unique_name(prefix)
    with admin_connection() as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    try:
        yield name, make_conninfo(db.dsn, user=name)
    finally:
        with db.connect() as conn:
            conn.execute(
                "select pg_terminate_backend(pid, 10000) from pg_stat_activity"
                " where usename = %s and datname = current_database()",
                (name,),
            )
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        with admin_connection() as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))
