"""Fencing at the statement level: a pool never completes or fails a job another pool holds.

Once a pool has been declared lost, its jobs are released and may be claimed again by
another pool; if the lost pool was only frozen, it wakes up and tries to record the
outcome of the job it was running. Each of its writes checks ``locked_by``: a completion
deletes the job only if this pool (or nobody) holds it, a failure only if this pool does.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from graphile_py import JobSpec, add_jobs
from graphile_py.db import FailureSpec, statements_for
from graphile_py.jobs import Job
from tests.support import TestDatabase
from tests.support.workers import jobs_rows, queue_rows

ME = "pool-me"
OTHER = "pool-other"


def _claim(db: TestDatabase, pool_id: str, count: int) -> list[Job]:
    statements = statements_for(db.schema)
    with db.connect() as conn:
        task_ids = list(statements.register_task_identifiers(conn, ["t"]))
        return statements.claim_jobs(conn, pool_id=pool_id, task_ids=task_ids, batch_size=count)


def _relock(db: TestDatabase, job_ids: list[int], pool_id: str | None) -> None:
    """What a rescue followed by another pool's claim does to locked_by."""
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {s}._private_jobs set locked_by = %s,"
                " locked_at = case when %s::text is null then null else now() end"
                " where id = any(%s)"
            ).format(s=sql.Identifier(db.schema)),
            (pool_id, pool_id, job_ids),
        )
        conn.execute(
            sql.SQL(
                "update {s}._private_job_queues set locked_by = %s,"
                " locked_at = case when %s::text is null then null else now() end"
                " where locked_by is not null"
            ).format(s=sql.Identifier(db.schema)),
            (pool_id, pool_id),
        )


@pytest.mark.parametrize("queued", [False, True], ids=["plain", "named-queue"])
@pytest.mark.parametrize("count", [1, 3])
def test_completion_leaves_a_job_another_pool_holds(
    db: TestDatabase, queued: bool, count: int
) -> None:
    with db.connect() as conn:
        add_jobs(
            conn,
            [JobSpec("t", {"n": n}, queue_name=f"q{n}" if queued else None) for n in range(count)],
            schema=db.schema,
        )
    jobs = _claim(db, ME, count)
    assert len(jobs) == count
    ids = [job.id for job in jobs]
    _relock(db, ids, OTHER)
    with db.connect() as conn:
        statements_for(db.schema).complete_jobs(conn, ME, jobs)
    assert [row["locked_by"] for row in jobs_rows(db)] == [OTHER] * count
    if queued:
        assert {row["locked_by"] for row in queue_rows(db)} == {OTHER}
    # Held by nobody (released, not claimed again yet): it did run, so it is completed.
    _relock(db, ids, None)
    with db.connect() as conn:
        statements_for(db.schema).complete_jobs(conn, ME, jobs)
    assert jobs_rows(db) == []


def test_failure_leaves_a_job_another_pool_holds(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_jobs(conn, [JobSpec("t", {}), JobSpec("t", {}, queue_name="q")], schema=db.schema)
    jobs = _claim(db, ME, 2)
    _relock(db, [job.id for job in jobs], OTHER)
    with db.connect() as conn:
        statements_for(db.schema).fail_jobs(
            conn,
            ME,
            [FailureSpec(job, "boom") for job in jobs],
        )
    rows = jobs_rows(db)
    assert [(row["locked_by"], row["last_error"]) for row in rows] == [(OTHER, None)] * 2
    assert {row["locked_by"] for row in queue_rows(db)} == {OTHER}


def test_complete_and_claim_leaves_a_job_another_pool_holds(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_jobs(conn, [JobSpec("t", {"n": n}) for n in range(3)], schema=db.schema)
    [first] = _claim(db, ME, 1)
    _relock(db, [first.id], OTHER)
    statements = statements_for(db.schema)
    with db.connect() as conn:
        task_ids = list(statements.register_task_identifiers(conn, ["t"]))
        [second] = statements.complete_and_claim(
            conn,
            done_id=first.id,
            pool_id=ME,
            task_ids=task_ids,
        )
    by_id = {row["id"]: row["locked_by"] for row in jobs_rows(db)}
    assert by_id[first.id] == OTHER
    assert by_id[second.id] == ME
    # A job of ours is deleted as before.
    with db.connect() as conn:
        statements.complete_and_claim(conn, done_id=second.id, pool_id=ME, task_ids=task_ids)
    assert second.id not in {row["id"] for row in jobs_rows(db)}
