"""Inline mode: ``add_job`` runs the task when the transaction that added it commits.

The plugin's ``graphile_inline`` fixture installs an :class:`InlineMode` as
:mod:`graphile_py.enqueue`'s hook. For each add, the hook asks PostgreSQL to signal the
adding connection at commit (``LISTEN`` plus ``pg_notify`` in the caller's transaction,
which PostgreSQL delivers only if the transaction commits), and psycopg hands that
signal to our handler while ``commit()`` runs. The handler then runs the jobs with
:func:`~graphile_py.contrib.pytest.drain.run_jobs` on other connections, before
``commit()`` returns. A rolled-back transaction sends nothing, so its jobs never run: as
in production. Works for psycopg connections and for SQLAlchemy sessions on them alike.

Jobs that the inline tasks add run in the same drain. Each job gets one attempt (a
failure is recorded in :attr:`InlineMode.errors` and the job stays queued for its retry,
as a worker would leave it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from graphile_py.contrib.pytest.drain import JobError, run_jobs
from graphile_py.db.throwaway import INLINE_CHANNEL, notify_at_commit, notify_at_commit_async
from graphile_py.jobs import Job
from graphile_py.tasks import TaskFunction

__all__ = ["InlineMode"]


class InlineMode:
    """Runs jobs at the commit of the transaction that added them (see the module doc)."""

    def __init__(self, conninfo: str, tasks: Mapping[str, TaskFunction], *, schema: str) -> None:
        self.conninfo = conninfo
        self.tasks = tasks
        self.schema = schema
        #: Jobs that ran and succeeded, in order.
        self.completed: list[Job] = []
        #: Failed attempts (the task's exception on each), in order.
        self.errors: list[JobError] = []
        #: When True (the default), the fixture fails the test at teardown if any inline
        #: task raised and :attr:`errors` was not cleared.
        self.raise_errors = True
        self.active = True
        self._draining = threading.Lock()
        self._listening: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- graphile_py.enqueue.InlineHook --------------------------------------------------

    def added(self, conn: psycopg.Connection[Any], jobs: Sequence[Job], schema: str) -> None:
        """Ask for a signal when ``conn`` commits these jobs."""
        if self._skip(schema, jobs):
            return
        self._listen(conn)
        notify_at_commit(conn, _ids(jobs))

    async def added_async(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job], schema: str
    ) -> None:
        """:meth:`added` on an async connection."""
        if self._skip(schema, jobs):
            return
        self._listen(conn)
        await notify_at_commit_async(conn, _ids(jobs))

    # -- internals -----------------------------------------------------------------------

    def _skip(self, schema: str, jobs: Sequence[Job]) -> bool:
        # Jobs added by a task during a drain are run by that same drain.
        return not self.active or schema != self.schema or not jobs or self._draining.locked()

    def _listen(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        if conn not in self._listening:
            pid = conn.info.backend_pid
            mode = weakref.ref(self)  # a pooled connection outlives the test's InlineMode

            def handler(notify: psycopg.Notify) -> None:
                inline = mode()
                if inline is not None:
                    inline._committed(notify, pid)

            conn.add_notify_handler(handler)
            self._listening.add(conn)

    def _committed(self, notify: psycopg.Notify, pid: int) -> None:
        # Called by psycopg inside commit(): never raise here, record instead.
        if notify.channel != INLINE_CHANNEL or notify.pid != pid or not self.active:
            return
        ids = [int(part) for part in notify.payload.split(",") if part]
        self.run(ids)

    def run(self, job_ids: Sequence[int] = ()) -> None:
        """Run ``job_ids`` now (whatever their run_at), and whatever they enqueue."""
        with self._draining:
            try:
                result = run_jobs(
                    self.conninfo,
                    self.tasks,
                    schema=self.schema,
                    retries=False,
                    job_ids=job_ids,
                )
            except Exception as exc:  # a broken drain must not break the caller's commit
                self.errors.append(JobError(_placeholder(job_ids), exc, permanent=False))
                return
        self.completed.extend(result.completed)
        self.errors.extend(result.errors)


def _ids(jobs: Sequence[Job]) -> str:
    return ",".join(str(job.id) for job in jobs if job.id is not None)


def _placeholder(job_ids: Sequence[int]) -> Job:
    """A stand-in Job for an error that is not one task's (the drain itself failed)."""
    return Job(id=job_ids[0] if job_ids else 0, task_identifier="(inline run)", payload=None)
