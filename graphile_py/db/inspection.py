"""The statements behind :mod:`graphile_py.admin.inspector`: counts, listings and admin actions.

Every job's state is decided by ONE SQL expression, :data:`STATE_SQL`, which the counts,
the listings and ``retry_failed`` all use, so a job counted as ``failed`` is the job that
``--state failed`` lists and the one ``retry --all-failed`` retries. Reads that must agree
with each other (``status``, ``list_queues``) run in one REPEATABLE READ, READ ONLY
transaction. Actions go through the schema's own functions (``reschedule_jobs``,
``complete_jobs``), which skip jobs locked by a live worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from graphile_py.db.admin import AdminStatements
from graphile_py.db.rows import Row, labelled_jobs
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors

__all__ = ["STATE_SQL", "InspectionStatements", "inspection_statements_for"]

#: The state of the job aliased ``jobs``: running > failed > retrying > scheduled > ready.
STATE_SQL = (
    "case when jobs.locked_at is not null then 'running'"
    " when jobs.attempts >= jobs.max_attempts then 'failed'"
    " when jobs.attempts > 0 then 'retrying'"
    " when jobs.run_at > now() then 'scheduled'"
    " else 'ready' end"
)

# Jobs with their state, task identifier and queue name: what every listing selects from.
_LABELLED = (
    "(select jobs.*, tasks.identifier as task_identifier, queues.queue_name,"
    " " + STATE_SQL + " as state"
    " from {schema}._private_jobs as jobs"
    " left join {schema}._private_tasks as tasks on tasks.id = jobs.task_id"
    " left join {schema}._private_job_queues as queues on queues.id = jobs.job_queue_id)"
    " as labelled"
)


def _named_result(call: str) -> str:
    """The rows the admin function ``call`` returns, labelled, in id order."""
    return labelled_jobs(call) + " order by jobs.id"


def inspection_statements_for(schema: str) -> InspectionStatements:
    """The inspection statements for one worker schema (built once per schema per process)."""
    return InspectionStatements.for_schema(schema)


class InspectionStatements(StatementSet):
    """The inspection statements of one worker schema, and the functions that run them."""

    snapshot_sql = b"set transaction isolation level repeatable read, read only"
    now_sql = b"select now() as now"
    # One scan of the jobs table gives both breakdowns: by task and by queue. The
    # queue grouping set includes the jobs without a queue (job_queue_id null); the
    # caller skips that group.
    counts_sql = Statement(
        "select grouping(classified.task_identifier) = 0 as by_task,"
        " classified.task_identifier, classified.job_queue_id, classified.state,"
        " count(*) as n,"
        " now() - min(classified.run_at) filter (where classified.state = 'ready')"
        " as oldest_ready_age"
        " from (select jobs.job_queue_id, jobs.run_at, " + STATE_SQL + " as state,"
        " coalesce(tasks.identifier, '#' || jobs.task_id::text) as task_identifier"
        " from {schema}._private_jobs as jobs"
        " left join {schema}._private_tasks as tasks on tasks.id = jobs.task_id)"
        " as classified"
        " group by grouping sets ((classified.task_identifier, classified.state),"
        " (classified.job_queue_id, classified.state))"
    )
    queue_counts_sql = Statement(
        "select jobs.job_queue_id, " + STATE_SQL + " as state, count(*) as n"
        " from {schema}._private_jobs as jobs where jobs.job_queue_id is not null"
        " group by 1, 2"
    )
    queues_sql = Statement(
        "select queues.id, queues.queue_name, queues.locked_at, queues.locked_by"
        " from {schema}._private_job_queues as queues order by queues.queue_name"
    )
    # Newest first, keyset-paginated on id. A filter left null matches every job.
    list_jobs_sql = Statement(
        "select * from " + _LABELLED + " where (%(task)s::text is null"
        " or labelled.task_identifier = %(task)s::text)"
        " and (%(queue)s::text is null or labelled.queue_name = %(queue)s::text)"
        " and (%(key)s::text is null or labelled.key = %(key)s::text)"
        " and (%(state)s::text is null or labelled.state = %(state)s::text)"
        " and (%(before)s::bigint is null or labelled.id < %(before)s::bigint)"
        " order by labelled.id desc limit %(limit)s::int"
    )
    get_jobs_sql = Statement(
        "select * from " + _LABELLED + " where labelled.id = any(%s::bigint[]) order by labelled.id"
    )
    # What the jobs say about whether a worker serves each of these tasks, for when the
    # worker registry cannot: is one of its jobs running (locked in the last 4 hours),
    # was one ever attempted, how long its oldest ready job has waited. One scan of the
    # jobs table for all of them; a task without jobs has no row.
    task_evidence_sql = Statement(
        "select tasks.identifier, evidence.running, evidence.attempted,"
        " evidence.oldest_ready_age from (select jobs.task_id,"
        " bool_or(jobs.locked_at > now() - interval '4 hours') as running,"
        " bool_or(jobs.attempts > 0 or jobs.locked_at is not null) as attempted,"
        " now() - min(jobs.run_at) filter (where jobs.locked_at is null"
        " and jobs.attempts = 0 and jobs.run_at <= now()) as oldest_ready_age"
        " from {schema}._private_jobs as jobs"
        # The ids first: filtering on them scans twice as fast as joining the names.
        " where jobs.task_id = any(array(select known.id from {schema}._private_tasks"
        " as known where known.identifier = any(%s::text[])))"
        " group by jobs.task_id) as evidence"
        " join {schema}._private_tasks as tasks on tasks.id = evidence.task_id"
    )
    task_known_sql = Statement(
        "select exists (select 1 from {schema}._private_tasks as tasks"
        " where tasks.identifier = %s::text)"
    )
    known_crontabs_sql = Statement(
        "select identifier, known_since, last_execution, now() as now"
        " from {schema}._private_known_crontabs order by identifier"
    )

    retry_sql = Statement(
        _named_result("{schema}.reschedule_jobs(%s::bigint[], run_at => now(), attempts => 0)")
    )
    retry_failed_sql = Statement(
        _named_result(
            "{schema}.reschedule_jobs(array(select labelled.id from "
            + _LABELLED
            + " where labelled.state = 'failed'"
            " and (%(task)s::text is null or labelled.task_identifier = %(task)s::text)"
            " and (%(queue)s::text is null or labelled.queue_name = %(queue)s::text)"
            " order by labelled.id), run_at => now(), attempts => 0)"
        )
    )

    # -- reads -----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self, conn: psycopg.Connection[Any], action: str) -> Iterator[None]:
        """A REPEATABLE READ, READ ONLY transaction: every read inside sees one snapshot."""
        with map_db_errors(action), conn.transaction():
            conn.execute(self.snapshot_sql)
            yield

    def now(self, conn: psycopg.Connection[Any]) -> datetime:
        """The database's ``now()`` (the transaction's start, inside a transaction)."""
        with map_db_errors("Reading the database clock"):
            row = conn.execute(self.now_sql, ()).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def counts(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Job counts by (task, state) and by (queue id, state), with oldest ready ages."""
        return self._rows(conn, "Counting jobs", self.counts_sql, ())

    def queue_counts(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Job counts by (queue id, state), for jobs in a named queue."""
        return self._rows(conn, "Counting jobs by queue", self.queue_counts_sql, ())

    def queues(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every named queue row: id, queue_name, locked_at, locked_by."""
        return self._rows(conn, "Listing queues", self.queues_sql, ())

    def lock_holders(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every pool holding locks (the statement ``WorkerUtils.lock_holders`` runs)."""
        return AdminStatements.for_schema(self.schema).lock_holders(conn)

    def list_jobs(
        self,
        conn: psycopg.Connection[Any],
        *,
        task: str | None,
        queue: str | None,
        key: str | None,
        state: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[Row]:
        """Labelled job rows matching every filter given, newest first."""
        params = {
            "task": task,
            "queue": queue,
            "key": key,
            "state": state,
            "before": before_id,
            "limit": limit,
        }
        return self._rows(conn, "Listing jobs", self.list_jobs_sql, params)

    def get_jobs(self, conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[Row]:
        """Labelled rows of the jobs with these ids (those that exist), by id."""
        return self._rows(conn, "Reading jobs", self.get_jobs_sql, (list(ids),))

    def task_evidence(self, conn: psycopg.Connection[Any], tasks: Sequence[str]) -> list[Row]:
        """identifier, running, attempted, oldest_ready_age of each of ``tasks`` with jobs."""
        action = "Reading what the jobs say of tasks"
        return self._rows(conn, action, self.task_evidence_sql, (list(tasks),))

    def task_known(self, conn: psycopg.Connection[Any], task: str) -> bool:
        """Whether ``task`` is in the task table (a worker or a job has used it)."""
        with map_db_errors("Looking up a task identifier"):
            row = conn.execute(self.task_known_sql, (task,)).fetchone()
        return bool(row and row[0])

    def known_crontabs(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every ``_private_known_crontabs`` row, with the database's ``now``."""
        return self._rows(conn, "Reading known crontabs", self.known_crontabs_sql, ())

    # -- actions ---------------------------------------------------------------------------

    def retry(self, conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[Row]:
        """Attempts to 0 and run_at to now for the unlocked jobs among ``ids``."""
        return self._rows(conn, "Retrying jobs", self.retry_sql, (list(ids),))

    def retry_failed(
        self, conn: psycopg.Connection[Any], *, task: str | None, queue: str | None
    ) -> list[Row]:
        """:meth:`retry` every permanently failed job (of ``task`` / ``queue``)."""
        params = {"task": task, "queue": queue}
        return self._rows(conn, "Retrying failed jobs", self.retry_failed_sql, params)

    @staticmethod
    def _rows(conn: psycopg.Connection[Any], action: str, query: bytes, params: Any) -> list[Row]:
        with map_db_errors(action), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall()
