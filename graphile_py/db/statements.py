"""The statements of the job queue: migrations, the worker's hot path, admin.

Composed once per worker schema and cached as bytes. The worker statements reproduce
graphile-worker 0.18.0's client-side SQL (spec sections 3.4 to 3.9) so that Node and
Python pools can share jobs, queues and locks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py.db.migrations import check_identifier
from graphile_py.db.translate import map_db_errors
from graphile_py.jobs import Job

__all__ = [
    "JOB_COLUMNS",
    "MIGRATION_ROW_INSERTED",
    "FailureSpec",
    "Row",
    "Statements",
    "compose",
    "jobs_from_rows",
    "statements_for",
]

Row = dict[str, Any]

#: Added as a note to an error raised after a migration's row was inserted: such an
#: error is a real failure, never "someone else ran this migration".
MIGRATION_ROW_INSERTED = "graphile-py: migration row was inserted"


@dataclass(frozen=True, slots=True)
class FailureSpec:
    """One failed job for :meth:`Statements.fail_jobs`."""

    job: Job
    message: str
    #: For a batch job's partial failure: the payload entries that failed.
    replacement_payload: Any = None
    has_replacement: bool = False


def compose(template: str, schema: str, **parts: sql.Composable) -> bytes:
    """``template`` with ``{schema}`` as the quoted identifier, as bytes ready to send.

    A ``%`` in the schema name is doubled, since psycopg reads ``%`` as the start of a
    placeholder: every composed statement must therefore be run with a parameter
    sequence (``()`` when it has none), so that psycopg turns ``%%`` back into ``%``.
    """
    check_identifier(schema)
    identifier = sql.Identifier(schema).as_string(None).replace("%", "%%")
    return sql.SQL(template).format(schema=sql.SQL(identifier), **parts).as_bytes(None)


@cache
def statements_for(schema: str) -> Statements:
    """The statements for one worker schema (built once per schema per process)."""
    return Statements(schema)


class Statements:
    """The composed statements of one worker schema, and the functions that run them."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

        def c(template: str, **parts: sql.Composable) -> bytes:
            return compose(template, schema, **parts)

        self.probe_sql = c(
            "select current_setting('server_version_num')::int as server_version_num,"
            " (select id from {schema}.migrations order by id desc limit 1) as latest,"
            " (select id from {schema}.migrations where breaking order by id desc limit 1)"
            " as latest_breaking"
        )
        self.bootstrap_sql = c(
            "create schema if not exists {schema};"
            " create table if not exists {schema}.migrations("
            "id int primary key, ts timestamptz default now() not null);"
            " alter table {schema}.migrations"
            " add column if not exists breaking boolean not null default false;"
        )
        self.mark_breaking_sql = c(
            "update {schema}.migrations set breaking = true where id = any(%s::int[])"
        )
        self.insert_migration_sql = c(
            "insert into {schema}.migrations (id, breaking) values (%s, %s)"
        )

        self.register_tasks_sql = c(
            "insert into {schema}._private_tasks as tasks (identifier)"
            " select wanted.identifier from unnest(%s::text[]) as wanted(identifier)"
            " where not exists (select 1 from {schema}._private_tasks as known"
            " where known.identifier = wanted.identifier)"
            " on conflict do nothing"
        )
        self.task_ids_sql = c(
            "select id, identifier from {schema}._private_tasks where identifier = any(%s::text[])"
        )
        self.task_identifiers_sql = c(
            "select id, identifier from {schema}._private_tasks where id = any(%s::int[])"
        )
        self.queue_names_sql = c(
            "select id, queue_name from {schema}._private_job_queues where id = any(%s::int[])"
        )

        self._claim: dict[tuple[bool, bool, bool, bool], bytes] = {}

        fail_body = (
            "update {schema}._private_jobs as jobs set"
            " last_error = failure.el->>'message',"
            " run_at = greatest(now(), jobs.run_at)"
            " + exp(least(jobs.attempts, 10)) * interval '1 second',"
            " locked_by = null, locked_at = null,"
            " payload = coalesce(failure.el->'payload', jobs.payload)"
            " from json_array_elements(%(failures)s::json) as failure(el)"
            " where jobs.id = (failure.el->>'jobId')::bigint and jobs.locked_by = %(pool)s::text"
        )
        self.fail_no_queue_sql = c(fail_body)
        self.fail_with_queue_sql = c(
            "with failed as (" + fail_body + " returning jobs.job_queue_id)"
            " update {schema}._private_job_queues as queues"
            " set locked_by = null, locked_at = null from failed"
            " where queues.id = failed.job_queue_id and queues.locked_by = %(pool)s::text"
        )
        self.complete_one_sql = c("delete from {schema}._private_jobs where id = %s::bigint")
        self.complete_many_sql = c(
            "delete from {schema}._private_jobs as jobs using unnest(%s::bigint[]) as done(id)"
            " where jobs.id = done.id"
        )
        # Completion matches the id whatever locked_by says, as Node's does (spec 3.6); the
        # queue is only unlocked if this pool still holds it.
        self.complete_with_queue_sql = c(
            "with done as (delete from {schema}._private_jobs as jobs"
            " using unnest(%(ids)s::bigint[]) as wanted(id) where jobs.id = wanted.id"
            " returning jobs.job_queue_id)"
            " update {schema}._private_job_queues as queues"
            " set locked_by = null, locked_at = null from done"
            " where queues.id = done.job_queue_id and queues.locked_by = %(pool)s::text"
        )
        self.fail_all_sql = c(
            "with failed as (update {schema}._private_jobs as jobs set"
            " last_error = %(message)s::text,"
            " run_at = greatest(now(), jobs.run_at)"
            " + exp(least(jobs.attempts, 10)) * interval '1 second',"
            " locked_by = null, locked_at = null"
            " where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(pool)s::text"
            " returning *),"
            " unlocked as (update {schema}._private_job_queues as queues"
            " set locked_by = null, locked_at = null from failed"
            " where queues.id = failed.job_queue_id and queues.locked_by = %(pool)s::text)"
            " select * from failed"
        )
        self.lock_holders_sql = c(
            "select held.locked_by as pool_id,"
            " count(*) filter (where held.kind = 'job') as jobs,"
            " count(*) filter (where held.kind = 'queue') as queues,"
            " min(held.locked_at) as oldest_lock"
            " from (select locked_by, locked_at, 'job' as kind from {schema}._private_jobs"
            " where locked_by is not null"
            " union all select locked_by, locked_at, 'queue' from {schema}._private_job_queues"
            " where locked_by is not null) as held"
            " group by held.locked_by order by oldest_lock"
        )
        self.locked_by_pool_sql = c(
            "select id from {schema}._private_jobs where locked_by = %s::text"
        )
        self.return_jobs_sql = c(
            "with returned as (update {schema}._private_jobs as jobs set"
            " attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null"
            " where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(pool)s::text"
            " returning jobs.job_queue_id)"
            " update {schema}._private_job_queues as queues"
            " set locked_by = null, locked_at = null from returned"
            " where queues.id = returned.job_queue_id and queues.locked_by = %(pool)s::text"
        )
        self.reset_locked_sql = c(
            "with stale_jobs as (update {schema}._private_jobs as jobs"
            " set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, {now})"
            " where jobs.locked_at < {now} - interval '4 hours'),"
            " stale_queues as (update {schema}._private_job_queues as queues"
            " set locked_at = null, locked_by = null"
            " where queues.locked_at < {now} - interval '4 hours')"
            " select 1",
            now=sql.SQL("coalesce(%(now)s::timestamptz, now())"),
        )

        self.complete_jobs_sql = c("select * from {schema}.complete_jobs(%s::bigint[])")
        self.permanently_fail_jobs_sql = c(
            "select * from {schema}.permanently_fail_jobs(%s::bigint[], %s::text)"
        )
        self.reschedule_jobs_sql = c(
            "select * from {schema}.reschedule_jobs(%s::bigint[], run_at => %s::timestamptz,"
            " priority => %s::int, attempts => %s::int, max_attempts => %s::int)"
        )
        self.remove_job_sql = c("select * from {schema}.remove_job(%s::text)")
        self.force_unlock_workers_sql = c("select {schema}.force_unlock_workers(%s::text[])")
        self.delete_permafailed_sql = c(
            "delete from {schema}._private_jobs where attempts = max_attempts and locked_at is null"
        )
        self.gc_task_identifiers_sql = c(
            "delete from {schema}._private_tasks as tasks"
            " where tasks.id not in (select jobs.task_id from {schema}._private_jobs as jobs)"
            " and tasks.identifier <> all(%s::text[])"
        )
        self.gc_job_queues_sql = c(
            "delete from {schema}._private_job_queues as queues"
            " where queues.locked_at is null and not exists ("
            "select 1 from {schema}._private_jobs as jobs where jobs.job_queue_id = queues.id)"
        )

    # -- migrations --------------------------------------------------------------------------

    def probe_migrations(self, conn: psycopg.Connection[Any]) -> tuple[int, int | None, int | None]:
        """``(server_version_num, latest migration, latest breaking migration)``.

        Raises the raw psycopg error: the caller decides whether it means "not installed".
        """
        row = conn.execute(self.probe_sql, ()).fetchone()
        assert row is not None
        return int(row[0]), row[1], row[2]

    def install_migrations_table(
        self, conn: psycopg.Connection[Any], breaking_numbers: Sequence[int]
    ) -> None:
        """Create the schema and ``migrations`` table if missing; flag the breaking ones."""
        with conn.transaction():
            conn.execute(self.bootstrap_sql, ())
            conn.execute(self.mark_breaking_sql, (list(breaking_numbers),))

    def record_and_apply_migration(
        self, conn: psycopg.Connection[Any], number: int, breaking: bool, script: str
    ) -> None:
        """In one transaction: claim the migration's row, run the script, announce it.

        The row goes in first so that a concurrent migrator blocks on it and then fails
        with a unique violation instead of running the script twice. Raises raw psycopg
        errors; a ``_RowInserted`` note on the error tells whether the claim succeeded.
        """
        with conn.transaction():
            conn.execute(self.insert_migration_sql, (number, breaking))
            try:
                # No parameters: psycopg sends the multi-statement script as a simple query.
                conn.execute(script.encode("utf-8"))
                conn.execute(
                    b"select pg_notify('worker:migrate', %s)",
                    (
                        json.dumps(
                            {"migrationNumber": number, "breaking": breaking}, separators=(",", ":")
                        ),
                    ),
                )
            except psycopg.Error as exc:
                exc.add_note(MIGRATION_ROW_INSERTED)
                raise

    # -- administration ------------------------------------------------------------------

    def _admin_rows(
        self, conn: psycopg.Connection[Any], action: str, query: bytes, params: Sequence[Any]
    ) -> list[Row]:
        with map_db_errors(action), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return [row for row in cur.fetchall() if row.get("id") is not None]

    def admin_complete_jobs(self, conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[Row]:
        """Delete the listed jobs unless a live worker holds them."""
        return self._admin_rows(conn, "Completing jobs", self.complete_jobs_sql, (list(ids),))

    def admin_permanently_fail_jobs(
        self, conn: psycopg.Connection[Any], ids: Sequence[int], reason: str | None
    ) -> list[Row]:
        """Mark the listed jobs as permanently failed unless a live worker holds them."""
        return self._admin_rows(
            conn, "Failing jobs", self.permanently_fail_jobs_sql, (list(ids), reason)
        )

    def admin_reschedule_jobs(
        self,
        conn: psycopg.Connection[Any],
        ids: Sequence[int],
        *,
        run_at: datetime | None,
        priority: int | None,
        attempts: int | None,
        max_attempts: int | None,
    ) -> list[Row]:
        """Change when and how the listed jobs run, unless a live worker holds them."""
        return self._admin_rows(
            conn,
            "Rescheduling jobs",
            self.reschedule_jobs_sql,
            (list(ids), run_at, priority, attempts, max_attempts),
        )

    def admin_remove_job(self, conn: psycopg.Connection[Any], job_key: str) -> Row | None:
        """Delete the job with this key, or retire it if a worker is running it."""
        rows = self._admin_rows(conn, "Removing a job", self.remove_job_sql, (job_key,))
        return rows[0] if rows else None

    def admin_force_unlock_workers(
        self, conn: psycopg.Connection[Any], pool_ids: Sequence[str]
    ) -> None:
        """Release every job and queue locked by the given (dead) pools."""
        with map_db_errors("Unlocking workers"):
            conn.execute(self.force_unlock_workers_sql, (list(pool_ids),))

    def cleanup(
        self,
        conn: psycopg.Connection[Any],
        *,
        delete_permafailed_jobs: bool,
        gc_task_identifiers: bool,
        gc_job_queues: bool,
        task_identifiers_to_keep: Sequence[str] = (),
    ) -> None:
        """Run the requested clean-up steps in graphile-worker's order."""
        with map_db_errors("Cleaning up"):
            if delete_permafailed_jobs:
                conn.execute(self.delete_permafailed_sql, ())
            if gc_task_identifiers:
                conn.execute(self.gc_task_identifiers_sql, (list(task_identifiers_to_keep),))
            if gc_job_queues:
                conn.execute(self.gc_job_queues_sql, ())

    # -- claiming ------------------------------------------------------------------------

    def claim_statement(
        self, *, batch: bool, flags: bool, node_time: bool, complete_first: bool = False
    ) -> bytes:
        """The claim statement variant for a batch size, forbidden flags and clock source.

        With ``complete_first`` it also deletes the finished job ``%(done)s`` first.
        """
        key = (batch, flags, node_time, complete_first)
        statement = self._claim.get(key)
        if statement is None:
            statement = self._claim[key] = compose(
                _claim_template(batch=batch, flags=flags, complete_first=complete_first),
                self.schema,
                now=sql.SQL("%(now)s::timestamptz" if node_time else "now()"),
            )
        return statement

    def claim_jobs(
        self,
        conn: psycopg.Connection[Any],
        *,
        pool_id: str,
        task_ids: Sequence[int],
        batch_size: int = 1,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
        identifiers: Mapping[int, str] | None = None,
    ) -> list[Job]:
        """Lock up to ``batch_size`` ready jobs for ``pool_id``.

        ``identifiers`` (task id to task identifier) labels the jobs; the claim never
        returns a task outside ``task_ids``.
        """
        params = _claim_params(pool_id, task_ids, batch_size, forbidden_flags, now)
        statement = self.claim_statement(
            batch=batch_size > 1, flags="flags" in params, node_time=now is not None
        )
        with map_db_errors("Claiming jobs"), conn.cursor() as cur:
            cur.execute(statement, params)
            return jobs_from_rows(cur.fetchall(), identifiers)

    def complete_and_claim(
        self,
        conn: psycopg.Connection[Any],
        *,
        done_id: int,
        pool_id: str,
        task_ids: Sequence[int],
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
        identifiers: Mapping[int, str] | None = None,
    ) -> list[Job]:
        """Delete finished job ``done_id`` (of no named queue) and claim the next, atomically.

        One statement, so one round trip and one transaction per job. The deleted job is
        still locked in the statement's snapshot, so the claim cannot pick it again. Not
        for a job of a named queue: the queue would be released and taken back in one
        transaction, and no other pool would ever see it free.
        """
        params = _claim_params(pool_id, task_ids, 1, forbidden_flags, now)
        params["done"] = done_id
        statement = self.claim_statement(
            batch=False, flags="flags" in params, node_time=now is not None, complete_first=True
        )
        with map_db_errors("Completing a job and claiming the next"), conn.cursor() as cur:
            cur.execute(statement, params)
            return jobs_from_rows(cur.fetchall(), identifiers)

    # -- completing, failing, returning ----------------------------------------------------

    def complete_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, jobs: Sequence[Job]
    ) -> None:
        """Delete finished jobs and release the named queues this pool holds for them."""
        queued = [job.id for job in jobs if job.job_queue_id is not None]
        unqueued = [job.id for job in jobs if job.job_queue_id is None]
        with map_db_errors("Completing jobs"):
            if queued:
                conn.execute(
                    self.complete_with_queue_sql, {"ids": _int_array(queued), "pool": pool_id}
                )
            if len(unqueued) == 1:
                conn.execute(self.complete_one_sql, (unqueued[0],))
            elif unqueued:
                conn.execute(self.complete_many_sql, (_int_array(unqueued),))

    def fail_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, failures: Sequence[FailureSpec]
    ) -> None:
        """Record failed attempts: last error, exponential backoff, unlock job and queue."""
        queued = [f for f in failures if f.job.job_queue_id is not None]
        unqueued = [f for f in failures if f.job.job_queue_id is None]
        with map_db_errors("Failing jobs"):
            if queued:
                conn.execute(
                    self.fail_with_queue_sql, {"failures": _failures_json(queued), "pool": pool_id}
                )
            if unqueued:
                conn.execute(
                    self.fail_no_queue_sql, {"failures": _failures_json(unqueued), "pool": pool_id}
                )

    def fail_jobs_with_message(
        self, conn: psycopg.Connection[Any], pool_id: str, job_ids: Sequence[int], message: str
    ) -> list[Row]:
        """Fail every listed job this pool holds with one message (used at shutdown)."""
        with map_db_errors("Failing jobs"), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self.fail_all_sql, {"ids": list(job_ids), "message": message, "pool": pool_id}
            )
            return cur.fetchall()

    def lock_holders(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every pool holding job or queue locks: pool_id, jobs, queues, oldest_lock."""
        with map_db_errors("Listing locks"), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.lock_holders_sql, ())
            return cur.fetchall()

    def jobs_locked_by(self, conn: psycopg.Connection[Any], pool_id: str) -> list[int]:
        """Ids of the jobs ``pool_id`` holds (a full scan: for shutdown, not the hot path)."""
        with map_db_errors("Finding locked jobs"):
            return [int(row[0]) for row in conn.execute(self.locked_by_pool_sql, (pool_id,))]

    def return_unstarted_jobs(
        self, conn: psycopg.Connection[Any], pool_id: str, job_ids: Sequence[int]
    ) -> None:
        """Hand claimed but unstarted jobs back, undoing the attempt their claim counted."""
        with map_db_errors("Returning jobs"):
            conn.execute(self.return_jobs_sql, {"ids": list(job_ids), "pool": pool_id})

    def reset_stale_locks(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> None:
        """Unlock jobs and queues locked more than 4 hours ago (their worker is presumed dead)."""
        with map_db_errors("Resetting stale locks"):
            conn.execute(self.reset_locked_sql, {"now": now})

    # -- tasks and queues ------------------------------------------------------------------

    def register_task_identifiers(
        self, conn: psycopg.Connection[Any], identifiers: Sequence[str]
    ) -> dict[int, str]:
        """Make sure each identifier has a task row; return ``{task_id: identifier}``."""
        names = list(identifiers)
        with map_db_errors("Registering tasks"):
            conn.execute(self.register_tasks_sql, (names,))
            rows = conn.execute(self.task_ids_sql, (names,)).fetchall()
        return {int(task_id): str(identifier) for task_id, identifier in rows}

    def lookup_task_identifiers(
        self, conn: psycopg.Connection[Any], ids: Sequence[int]
    ) -> dict[int, str]:
        """``{task_id: identifier}`` for the given ids."""
        with map_db_errors("Looking up task identifiers"):
            rows = conn.execute(self.task_identifiers_sql, (list(ids),)).fetchall()
        return {int(task_id): str(identifier) for task_id, identifier in rows}

    def lookup_queue_names(
        self, conn: psycopg.Connection[Any], ids: Sequence[int]
    ) -> dict[int, str]:
        """``{job_queue_id: queue_name}`` for the given ids."""
        with map_db_errors("Looking up queue names"):
            rows = conn.execute(self.queue_names_sql, (list(ids),)).fetchall()
        return {int(queue_id): str(name) for queue_id, name in rows}


#: The columns of ``_private_jobs`` in the order of Job's fields after ``task_identifier``
#: and ``queue_name`` (``payload`` moved first): a tuple row in this order becomes a Job
#: without a dict (see :func:`jobs_from_rows`).
JOB_COLUMNS = (
    "id",
    "payload",
    "job_queue_id",
    "task_id",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
    "is_available",
)
_CLAIMED_COLUMNS = ", ".join("jobs." + column for column in JOB_COLUMNS)


def jobs_from_rows(
    rows: Sequence[Sequence[Any]],
    tasks: Mapping[int, str] | None,
    queues: Mapping[int, str] | None = None,
) -> list[Job]:
    """Jobs from rows of :data:`JOB_COLUMNS`, named from ``tasks`` and ``queues`` (by id)."""
    task_names = tasks or {}
    if not queues:
        return [Job(row[0], task_names.get(row[3], ""), row[1], None, *row[2:]) for row in rows]
    return [
        Job(row[0], task_names.get(row[3], ""), row[1], queues.get(row[2]), *row[2:])
        for row in rows
    ]


def _int_array(values: Sequence[int]) -> str:
    """An array literal for an ``int[]``/``bigint[]`` parameter.

    psycopg's list dumper walks the list in Python and cost more than everything else
    about a claim's or a batch completion's parameters; the server parses this instead.
    """
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _claim_params(
    pool_id: str,
    task_ids: Sequence[int],
    limit: int,
    forbidden_flags: Sequence[str] | None,
    now: datetime | None,
) -> dict[str, Any]:
    """The claim statement's parameters; ``flags`` and ``now`` only when they are used."""
    params: dict[str, Any] = {"pool": pool_id, "task_ids": _int_array(task_ids), "limit": limit}
    if forbidden_flags:
        params["flags"] = list(forbidden_flags)
    if now is not None:
        params["now"] = now
    return params


def _failures_json(failures: Sequence[FailureSpec]) -> str:
    return json.dumps(
        [
            {"jobId": str(f.job.id), "message": f.message}
            | ({"payload": f.replacement_payload} if f.has_replacement else {})
            for f in failures
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _claim_template(*, batch: bool, flags: bool, complete_first: bool = False) -> str:
    # "Queue strategy 2" of graphile-worker: lock available queue rows up front with SKIP
    # LOCKED, then pick jobs that have no queue or whose queue we now hold.
    flag_filter = " and (jobs.flags ?| %(flags)s::text[]) is not true" if flags else ""
    candidates = (
        "candidates as (select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at"
        " from {schema}._private_jobs as jobs"
        " where jobs.is_available = true and jobs.run_at <= {now}"
        " and jobs.task_id = any(%(task_ids)s::int[])"
        " and (jobs.job_queue_id is null or jobs.job_queue_id in ("
        "select queues.id from {schema}._private_job_queues as queues"
        " where queues.is_available = true for update skip locked))"
        + flag_filter
        + " order by jobs.priority asc, jobs.run_at asc limit %(limit)s for update skip locked)"
    )
    if batch:
        # A batch must never hold two jobs of one named queue: that would run them at once,
        # and the first completion would unlock the queue under the second.
        chosen = (
            ", chosen as (select id, job_queue_id from candidates where job_queue_id is null"
            " union all select id, job_queue_id from ("
            "select distinct on (job_queue_id) id, job_queue_id, priority, run_at"
            " from candidates where job_queue_id is not null"
            " order by job_queue_id, priority, run_at) as first_per_queue)"
        )
        source = "chosen"
    else:
        chosen = ""
        source = "candidates"
    # A data-modifying CTE runs whether or not anything reads it.
    completed = (
        "completed as (delete from {schema}._private_jobs where id = %(done)s::bigint), "
        if complete_first
        else ""
    )
    return (
        "with "
        + completed
        + candidates
        + chosen
        + ", locked_queues as (update {schema}._private_job_queues as queues"
        " set locked_by = %(pool)s::text, locked_at = {now} from "
        + source
        + " where queues.id = "
        + source
        + ".job_queue_id)"
        " update {schema}._private_jobs as jobs"
        " set attempts = jobs.attempts + 1, locked_by = %(pool)s::text, locked_at = {now}"
        " from " + source + " where jobs.id = " + source + ".id returning " + _CLAIMED_COLUMNS
    )
