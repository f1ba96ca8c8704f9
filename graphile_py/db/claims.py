"""The worker's claim: lock ready jobs for a pool, and the task and queue names it needs.

The claim reproduces graphile-worker 0.18.0's ``getJob`` (spec 3.4) so that Node and
Python pools can share jobs, queues and locks. Its variants (batch, forbidden flags,
clock source, complete-first) are composed on first use and kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from graphile_py.db.history import ATTEMPT_COLUMNS, History, record_attempts
from graphile_py.db.outcomes import COMPLETION_FENCE
from graphile_py.db.rows import JOB_COLUMNS, int_array, jobs_from_rows
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors
from graphile_py.jobs import Job

__all__ = ["ClaimStatements"]

_CLAIMED_COLUMNS = ", ".join("jobs." + column for column in JOB_COLUMNS)


class ClaimStatements(StatementSet):
    """Claiming jobs, and naming the tasks and queues of claimed jobs."""

    register_tasks_sql = Statement(
        "insert into {schema}._private_tasks as tasks (identifier)"
        " select wanted.identifier from unnest(%s::text[]) as wanted(identifier)"
        " where not exists (select 1 from {schema}._private_tasks as known"
        " where known.identifier = wanted.identifier)"
        " on conflict do nothing"
    )
    task_ids_sql = Statement(
        "select id, identifier from {schema}._private_tasks where identifier = any(%s::text[])"
    )
    queue_names_sql = Statement(
        "select id, queue_name from {schema}._private_job_queues where id = any(%s::int[])"
    )

    def __init__(self, schema: str) -> None:
        super().__init__(schema)
        self._claim: dict[tuple[bool, bool, bool, bool, bool], bytes] = {}
        self._claim_recording: dict[tuple[bool, bool, str, bool], bytes] = {}
        self._claim_function: dict[tuple[str, bool], bytes] = {}

    def claim_next(
        self,
        conn: psycopg.Connection[Any],
        side_schema: str,
        *,
        pool_id: str,
        task_ids: Sequence[int],
        done_id: int | None = None,
        identifiers: Mapping[int, str] | None = None,
        per_task: bool = False,
    ) -> list[Job]:
        """The one-job claim (after completing ``done_id``, if given) through the side
        schema's ``claim_next`` function (side migration 2), or with ``per_task`` its
        ``claim_next_by_task`` (side migration 3, for graphile_py_jobs_task_index).

        For connections without prepared statements (a transaction-mode pooler): the
        function's plan is kept by the server backend, where the same statement sent by
        the client would be planned again on every claim. No forbidden flags, no Node
        time, no history: the pool uses the client statements for those.
        """
        statement = self._claim_function.get((side_schema, per_task))
        if statement is None:
            side = sql.SQL(sql.Identifier(side_schema).as_string(None).replace("%", "%%"))
            function = "claim_next_by_task" if per_task else "claim_next"
            statement = self._claim_function[(side_schema, per_task)] = self.compose(
                "select " + ", ".join(JOB_COLUMNS) + " from {side}." + function + "("
                "%(done)s::bigint, %(pool)s::text, %(task_ids)s::int[])",
                side=side,
            )
        params = {"done": done_id, "pool": pool_id, "task_ids": int_array(task_ids)}
        with map_db_errors("Claiming jobs"), conn.cursor() as cur:
            cur.execute(statement, params)
            return jobs_from_rows(cur.fetchall(), identifiers)

    def claim_statement(
        self,
        *,
        batch: bool,
        flags: bool,
        node_time: bool,
        complete_first: bool = False,
        per_task: bool = False,
    ) -> bytes:
        """The claim statement variant for a batch size, forbidden flags and clock source.

        With ``complete_first`` it also deletes the finished job ``%(done)s`` first. With
        ``per_task`` it claims each task's jobs apart, through graphile_py_jobs_task_index
        (:mod:`graphile_py.db.task_index`), for a pool that found that index at start.
        """
        key = (batch, flags, node_time, complete_first, per_task)
        statement = self._claim.get(key)
        if statement is None:
            statement = self._claim[key] = self.compose(
                _claim_template(
                    batch=batch, flags=flags, complete_first=complete_first, per_task=per_task
                ),
                now=sql.SQL("%(now)s::timestamptz" if node_time else "now()"),
            )
        return statement

    def complete_recording_and_claim_statement(
        self, history: History, *, flags: bool, node_time: bool, per_task: bool = False
    ) -> bytes:
        """The complete-first claim that also records the completed attempt in ``history``."""
        key = (flags, node_time, history.side_schema, per_task)
        statement = self._claim_recording.get(key)
        if statement is None:
            template = _claim_template(
                batch=False, flags=flags, complete_first=True, record=True, per_task=per_task
            )
            statement = self._claim_recording[key] = history.statements.compose(
                template, now=sql.SQL("%(now)s::timestamptz" if node_time else "now()")
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
        per_task: bool = False,
    ) -> list[Job]:
        """Lock up to ``batch_size`` ready jobs for ``pool_id``.

        ``identifiers`` (task id to task identifier) labels the jobs; the claim never
        returns a task outside ``task_ids``. ``per_task`` as in :meth:`claim_statement`.
        """
        params = _claim_params(pool_id, task_ids, batch_size, forbidden_flags, now)
        statement = self.claim_statement(
            batch=batch_size > 1,
            flags="flags" in params,
            node_time=now is not None,
            per_task=per_task,
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
        history: History | None = None,
        started_at: float | None = None,
        done_task: str = "",
        per_task: bool = False,
    ) -> list[Job]:
        """Delete finished job ``done_id`` (of no named queue) and claim the next, atomically.

        With ``history``, the same statement records the attempt of task ``done_task``,
        started at ``started_at`` (epoch seconds), as a success.

        The delete is fenced as every completion is (``COMPLETION_FENCE``): a job that
        another pool holds now is left to it.

        One statement, so one round trip and one transaction per job. The deleted job is
        still locked in the statement's snapshot, so the claim cannot pick it again. Not
        for a job of a named queue: the queue would be released and taken back in one
        transaction, and no other pool would ever see it free.
        """
        params = _claim_params(pool_id, task_ids, 1, forbidden_flags, now)
        params["done"] = done_id
        if history is None:
            statement = self.claim_statement(
                batch=False,
                flags="flags" in params,
                node_time=now is not None,
                complete_first=True,
                per_task=per_task,
            )
        else:
            params["started"] = started_at
            params["task"] = done_task
            params["payload_limit"] = history.payload_limit
            statement = self.complete_recording_and_claim_statement(
                history, flags="flags" in params, node_time=now is not None, per_task=per_task
            )
        with map_db_errors("Completing a job and claiming the next"), conn.cursor() as cur:
            cur.execute(statement, params)
            return jobs_from_rows(cur.fetchall(), identifiers)

    def register_task_identifiers(
        self, conn: psycopg.Connection[Any], identifiers: Sequence[str]
    ) -> dict[int, str]:
        """Make sure each identifier has a task row; return ``{task_id: identifier}``."""
        names = list(identifiers)
        with map_db_errors("Registering tasks"):
            conn.execute(self.register_tasks_sql, (names,))
            rows = conn.execute(self.task_ids_sql, (names,)).fetchall()
        return {int(task_id): str(identifier) for task_id, identifier in rows}

    def lookup_queue_names(
        self, conn: psycopg.Connection[Any], ids: Sequence[int]
    ) -> dict[int, str]:
        """``{job_queue_id: queue_name}`` for the given ids."""
        with map_db_errors("Looking up queue names"):
            rows = conn.execute(self.queue_names_sql, (list(ids),)).fetchall()
        return {int(queue_id): str(name) for queue_id, name in rows}


def _claim_params(
    pool_id: str,
    task_ids: Sequence[int],
    limit: int,
    forbidden_flags: Sequence[str] | None,
    now: datetime | None,
) -> dict[str, Any]:
    """The claim statement's parameters; ``flags`` and ``now`` only when they are used."""
    params: dict[str, Any] = {"pool": pool_id, "task_ids": int_array(task_ids), "limit": limit}
    if forbidden_flags:
        params["flags"] = list(forbidden_flags)
    if now is not None:
        params["now"] = now
    return params


def _claim_template(
    *,
    batch: bool,
    flags: bool,
    complete_first: bool = False,
    record: bool = False,
    per_task: bool = False,
) -> str:
    # "Queue strategy 2" of graphile-worker: lock available queue rows up front with SKIP
    # LOCKED, then pick jobs that have no queue or whose queue we now hold.
    # "(select now())": the planner cannot estimate it from the statistics, which with
    # many future-dated jobs say that none is due and made the claim a sequential scan
    # and sort of all of them (tests/integration/test_claim_plans.py). "limit 1" rather
    # than a parameter: the generic plan is then as cheap as a custom one, and the
    # prepared statement stops being planned again on every execution.
    flag_filter = " and (jobs.flags ?| %(flags)s::text[]) is not true" if flags else ""
    limit = "%(limit)s" if batch else "1"
    ready = (
        " jobs.is_available = true and jobs.run_at <= (select {now})"
        " and (jobs.job_queue_id is null or jobs.job_queue_id in ("
        "select queues.id from {schema}._private_job_queues as queues"
        " where queues.is_available = true for update skip locked))" + flag_filter
    )
    if per_task:
        candidates = _per_task_candidates(ready, limit, batch=batch)
    else:
        candidates = (
            "candidates as (select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at"
            " from {schema}._private_jobs as jobs where jobs.task_id = any(%(task_ids)s::int[])"
            " and"
            + ready
            + " order by jobs.priority asc, jobs.run_at asc limit "
            + limit
            + " for update skip locked)"
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
        "completed as (delete from {schema}._private_jobs as jobs"
        " where jobs.id = %(done)s::bigint" + COMPLETION_FENCE + "), "
        if complete_first
        else ""
    )
    if record:
        # The job history: the deleted row is the attempt's (db/history.py).
        completed = (
            "completed as (delete from {schema}._private_jobs as jobs"
            " where jobs.id = %(done)s::bigint"
            + COMPLETION_FENCE
            + " returning "
            + ATTEMPT_COLUMNS
            + "),"
            " recorded as ("
            + record_attempts(
                "completed as ran",
                started="%(started)s::float8",
                unqueued_task="%(task)s::text",
                outcome="'success'",
                error="null",
            )
            + "), "
        )
    if per_task:
        # The per-task candidates' row estimate is far too high for a generic plan (a
        # recursive CTE, a LIMIT parameter taken as 10% of a large guess), which then
        # joined them by a full scan of the jobs' primary key: "= any(array(...))" keeps
        # both updates on their primary keys whatever the estimate.
        queue_target = " where queues.id = any(array(select job_queue_id from " + source + "))"
        job_target = " where jobs.id = any(array(select id from " + source + "))"
    else:
        queue_target = " from " + source + " where queues.id = " + source + ".job_queue_id"
        job_target = " from " + source + " where jobs.id = " + source + ".id"
    return (
        ("with recursive " if per_task else "with ")
        + completed
        + candidates
        + chosen
        + ", locked_queues as (update {schema}._private_job_queues as queues"
        " set locked_by = %(pool)s::text, locked_at = {now}"
        + queue_target
        + ") update {schema}._private_jobs as jobs"
        " set attempts = jobs.attempts + 1, locked_by = %(pool)s::text, locked_at = {now}"
        + job_target
        + " returning "
        + _CLAIMED_COLUMNS
    )


def _per_task_candidates(ready: str, limit: str, *, batch: bool) -> str:
    """The ``candidates`` CTE of the per-task claim (``ready``: the common conditions)."""
    # Through graphile_py_jobs_task_index (db/task_index.py). Each of our tasks' job
    # priorities first, one index probe each (a recursive "loose index scan"), then for
    # each (task, priority) its first due jobs, locked (SKIP LOCKED) under that pair's
    # own limit, so a job another pool holds is stepped over within its pair; then the
    # first of those overall. Every scan is bounded by run_at <= now: due jobs of tasks
    # we do not serve are never read, nor are our own jobs scheduled for later (with
    # only "task_id = ?" bounding it, a claim that finds nothing due read all of them).
    # One job: "(select ...)" hides the task ids from every plan, so custom plans cost
    # what the generic one does and the server keeps the generic plan. A batch: its
    # limit is a parameter (taken as 10% of a guess), so its generic plan would cost
    # far too much; custom plans that see how many tasks there are stay cheap, and
    # under jit_above_cost for a few tasks (a plan is cheap to make; a batch is rare).
    task_ids = "%(task_ids)s::int[]" if batch else "(select %(task_ids)s::int[])"
    probe = (
        "(select jobs.priority from {schema}._private_jobs as jobs"
        " where jobs.task_id = {side}.task_id and jobs.is_available = true{after}"
        " order by jobs.priority asc limit 1)"
    )
    return (
        "task_priorities(task_id, priority) as (select wanted.task_id, "
        + probe.format(schema="{schema}", side="wanted", after="")
        + " from unnest("
        + task_ids
        + ") as wanted(task_id)"
        " union all select known.task_id, "
        + probe.format(schema="{schema}", side="known", after=" and jobs.priority > known.priority")
        + " from task_priorities as known where known.priority is not null), "
        "candidates as (select picked.id, picked.job_queue_id, picked.priority, picked.run_at"
        " from task_priorities as wanted cross join lateral ("
        "select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at"
        " from {schema}._private_jobs as jobs where jobs.task_id = wanted.task_id"
        " and jobs.priority = wanted.priority and"
        + ready
        + " order by jobs.run_at asc limit "
        + limit
        + " for update of jobs skip locked) as picked"
        " order by picked.priority asc, picked.run_at asc limit " + limit + ")"
    )
