"""The statements behind :mod:`graphile_py.enqueue`, and the plans that run them.

``add_job`` without a job key is one statement of our own that does what graphile-worker's
``add_job`` function does for it; every other call goes through the schema's functions,
exactly as Node's ``addJob``/``addJobs`` do.

Adding jobs works on the caller's connection, sync or async, so the logic is written
once, as a *plan*: a generator that yields the :class:`Step` (statement, parameters, how
to read the result) it needs next and is sent back that step's result. :func:`run_plan`
and :func:`run_plan_async` are the only code that does I/O; they also translate errors,
so both variants refuse a job with the same :class:`~graphile_py.errors.JobRejected`.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import AdaptersMap
from psycopg.rows import dict_row, tuple_row
from psycopg.types.string import TextBinaryLoader, TextLoader

from graphile_py.db.rows import JOB_COLUMNS, Row, jobs_from_rows
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors
from graphile_py.errors import DatabaseError
from graphile_py.jobs import Job

__all__ = [
    "KEY_RACE_RETRIES",
    "EnqueueStatements",
    "Plan",
    "Step",
    "enqueue_statements_for",
    "key_race_error",
    "run_plan",
    "run_plan_async",
]

T = TypeVar("T")

# add_job returns an all-NULL row when a job with the same key was locked between its
# "retire locked jobs" step and its upsert (graphile-worker issue 580); trying again is
# the documented answer, and the second try retires the now-locked job.
KEY_RACE_RETRIES = 3


def key_race_error(job_key: str | None) -> DatabaseError:
    """The error for a job key whose job stayed locked through every try."""
    return DatabaseError(
        f"add_job returned no row for job key {job_key!r}: the job with that key kept being"
        " locked by a worker while this job was added; try again"
    )


class Step(NamedTuple):
    """One statement of a plan, and how its result is read."""

    query: bytes
    params: Sequence[Any] | Mapping[str, Any]
    #: What was being done, for the message of a translated error.
    action: str
    #: Rows as dicts (``dict_row``); otherwise tuples.
    dict_rows: bool = False
    #: Fetch every row; otherwise the first (or None).
    many: bool = False
    #: ``json`` columns as their text, to be decoded by the plan.
    json_as_text: bool = False
    #: Results in binary: many rows of numbers and timestamps load faster.
    binary: bool = False


#: A generator of the steps of one operation, returning its result.
Plan = Generator[Step, Any, T]


def run_plan(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run ``plan``'s steps on ``conn``, in the caller's transaction; return its result."""
    result: Any = None
    while True:
        try:
            step = plan.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        with (
            map_db_errors(step.action, adding_jobs=True),
            conn.cursor(
                row_factory=dict_row if step.dict_rows else tuple_row, binary=step.binary
            ) as cur,
        ):
            if step.json_as_text:
                _json_as_text(cur.adapters)
            cur.execute(step.query, step.params)
            result = cur.fetchall() if step.many else cur.fetchone()


async def run_plan_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """:func:`run_plan` on an async connection."""
    result: Any = None
    while True:
        try:
            step = plan.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        with map_db_errors(step.action, adding_jobs=True):
            async with conn.cursor(
                row_factory=dict_row if step.dict_rows else tuple_row, binary=step.binary
            ) as cur:
                if step.json_as_text:
                    _json_as_text(cur.adapters)
                await cur.execute(step.query, step.params)
                result = await (cur.fetchall() if step.many else cur.fetchone())


def _json_as_text(adapters: AdaptersMap) -> None:
    adapters.register_loader("json", TextLoader)
    adapters.register_loader("json", TextBinaryLoader)


def enqueue_statements_for(schema: str) -> EnqueueStatements:
    """The enqueueing statements for one worker schema (built once per schema per process)."""
    return EnqueueStatements.for_schema(schema)


class EnqueueStatements(StatementSet):
    """The enqueueing statements of one worker schema, and the plans that use them."""

    add_job_sql = Statement(
        "select * from {schema}.add_job("
        "identifier => %s::text, payload => %s::json, queue_name => %s::text,"
        " run_at => %s::timestamptz, max_attempts => %s::int, job_key => %s::text,"
        " priority => %s::int, flags => %s::text[], job_key_mode => %s::text)"
    )
    # add_job without a job key, as one statement: what the add_job function does for
    # it (register the task and queue names, insert, announce with count 1) without
    # the PL/pgSQL call into add_jobs, which costs about twice the insert itself. It
    # inserts nothing if the task or queue row is not visible in this statement's
    # snapshot (a concurrent first use of the name); the plan then calls add_job.
    add_job_unkeyed_sql = Statement(
        "with new_task as (insert into {schema}._private_tasks (identifier)"
        " select %(identifier)s::text where not exists (select 1 from"
        " {schema}._private_tasks as known where known.identifier = %(identifier)s::text)"
        " on conflict do nothing returning id),"
        " task as (select id from new_task union all select id from {schema}._private_tasks"
        " where identifier = %(identifier)s::text limit 1),"
        " new_queue as (insert into {schema}._private_job_queues (queue_name)"
        " select %(queue)s::text where %(queue)s::text is not null and not exists ("
        "select 1 from {schema}._private_job_queues as known"
        " where known.queue_name = %(queue)s::text) on conflict do nothing returning id),"
        " queue as (select id from new_queue union all select id from"
        " {schema}._private_job_queues where queue_name = %(queue)s::text limit 1),"
        " announced as (select pg_notify('jobs:insert',"
        " '{{\"r\":' || random()::text || ',\"count\":1}}') as done)"
        " insert into {schema}._private_jobs"
        " (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)"
        " select queue.id, task.id, coalesce(%(payload)s::json, '{{}}'::json),"
        " coalesce(%(run_at)s::timestamptz, now()),"
        " coalesce(%(max_attempts)s::int::smallint, 25::smallint), null,"
        " coalesce(%(priority)s::int::smallint, 0::smallint),"
        " (select jsonb_object_agg(f.name, true) from unnest(%(flags)s::text[]) as f(name))"
        " from task cross join announced left join queue on true"
        " where %(queue)s::text is null or queue.id is not null"
        " returning *"
    )
    # A JSON array of specs becomes job_spec[] in the database, as Node sends it.
    # Payloads travel apart, as one JSON array whose elements are taken verbatim,
    # because json_populate_recordset turns a json field into text and refuses \u0000.
    add_jobs_sql = Statement(
        "select {columns} from {schema}.add_jobs(array("
        "select row(spec.identifier, payload.text, spec.queue_name, spec.run_at,"
        " spec.max_attempts, spec.job_key, spec.priority, spec.flags)::{schema}.job_spec"
        " from json_populate_recordset(null::{schema}.job_spec, %s::json)"
        " with ordinality as spec(identifier, payload, queue_name, run_at, max_attempts,"
        " job_key, priority, flags, n)"
        " join json_array_elements(%s::json) with ordinality as payload(text, n) using (n)"
        " order by n), %s::boolean) order by id",
        columns=sql.SQL(", ".join(JOB_COLUMNS)),
    )
    # add_jobs returns rows in no promised order, so rows are labelled with their task
    # and queue names from the database rather than matched to specs by position.
    # (A separate statement: the one calling add_jobs cannot see the task and queue
    # rows that add_jobs inserts.)
    names_for_ids_sql = Statement(
        "select (select coalesce(json_object_agg(id, identifier), '{{}}')"
        " from {schema}._private_tasks where id = any(%s::int[])) as tasks,"
        " (select coalesce(json_object_agg(id, queue_name), '{{}}')"
        " from {schema}._private_job_queues where id = any(%s::int[])) as queues"
    )

    def add_job_plan(self, params: Sequence[Any]) -> Plan[Row]:
        """Add one job from the nine parameters of the ``add_job`` function; its row.

        When ``unsafe_dedupe`` returns an existing job, its task and queue may not be
        those of the call, so the row is labelled with its own names from the database.
        """
        for _ in range(KEY_RACE_RETRIES):
            row: Row | None = None
            if params[5] is None:
                row = yield Step(
                    self.add_job_unkeyed_sql,
                    _unkeyed_params(params),
                    "Adding a job",
                    dict_rows=True,
                )
            if row is None:
                row = yield Step(self.add_job_sql, params, "Adding a job", dict_rows=True)
            assert row is not None
            if row["id"] is not None:
                break
        else:
            raise key_race_error(params[5])
        if _deduplicated(row, params):
            names = yield Step(self.names_for_ids_sql, _ids_to_name(row), "Adding a job")
            _named(row, names)
        return row

    def add_jobs_plan(
        self, specs_json: str, payloads_json: str, preserve_run_at: bool
    ) -> Plan[list[Job]]:
        """Add jobs from a JSON array of job specs; each job named from its row."""
        rows = yield Step(
            self.add_jobs_sql,
            (specs_json, payloads_json, preserve_run_at),
            "Adding jobs",
            many=True,
            json_as_text=True,
            binary=True,
        )
        names = yield Step(self.names_for_ids_sql, _ids_of(rows), "Adding jobs")
        return _jobs_of(rows, names)

    def add_job(self, conn: psycopg.Connection[Any], params: Sequence[Any]) -> Row:
        """Run :meth:`add_job_plan` on ``conn``."""
        return run_plan(conn, self.add_job_plan(params))

    def add_jobs(
        self,
        conn: psycopg.Connection[Any],
        specs_json: str,
        payloads_json: str,
        preserve_run_at: bool,
    ) -> list[Job]:
        """Run :meth:`add_jobs_plan` on ``conn``."""
        return run_plan(conn, self.add_jobs_plan(specs_json, payloads_json, preserve_run_at))


def _unkeyed_params(params: Sequence[Any]) -> dict[str, Any]:
    """The named parameters of ``add_job_unkeyed_sql`` from add_job's nine."""
    identifier, payload, queue, run_at, max_attempts, _key, priority, flags, _mode = params
    return {
        "identifier": identifier,
        "payload": payload,
        "queue": queue,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "priority": priority,
        "flags": flags,
    }


def _deduplicated(row: Row, params: Sequence[Any]) -> bool:
    # params[8] is job_key_mode; a revision above 0 means an existing row came back.
    return params[8] == "unsafe_dedupe" and row["id"] is not None and row["revision"] > 0


def _ids_of(rows: Sequence[tuple[Any, ...]]) -> tuple[list[int], list[int]]:
    """The task ids and queue ids of rows of JOB_COLUMNS, to look their names up."""
    task_ids = sorted({row[3] for row in rows if row[3] is not None})
    queue_ids = sorted({row[2] for row in rows if row[2] is not None})
    return task_ids, queue_ids


def _jobs_of(rows: list[tuple[Any, ...]], names: tuple[Any, ...] | None) -> list[Job]:
    """Jobs from add_jobs' rows, payloads (fetched as text) decoded in one call for all.

    (One ``json.loads`` per row, as psycopg's json loader makes, costs several times more.)
    """
    assert names is not None
    if not rows:
        return []
    payloads = json.loads("[" + ",".join(row[1] for row in rows) + "]")
    tasks = {int(key): value for key, value in names[0].items()}
    queues = {int(key): value for key, value in names[1].items()}
    return jobs_from_rows(rows, tasks, queues, payloads)


def _ids_to_name(row: Row) -> tuple[list[int], list[int]]:
    """The task id and queue id of one add_job row, to look their names up."""
    task_ids = [row["task_id"]] if row["task_id"] is not None else []
    queue_ids = [row["job_queue_id"]] if row["job_queue_id"] is not None else []
    return task_ids, queue_ids


def _named(row: Row, names: tuple[Any, ...] | None) -> None:
    """Label an add_job row with the task and queue names the database gave for its ids."""
    assert names is not None
    tasks, queues = names
    row["task_identifier"] = tasks.get(str(row["task_id"]))
    queue_id = row["job_queue_id"]
    row["queue_name"] = queues.get(str(queue_id)) if queue_id is not None else None
