"""add_job and add_jobs read their own rows whatever the caller's connection returns."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.rows import dict_row, namedtuple_row

from graphile_py import JobSpec, add_job, add_jobs, add_jobs_async
from tests.support import TestDatabase


def test_a_dict_row_connection(db: TestDatabase) -> None:
    with db.connect(row_factory=dict_row) as conn:
        job = add_job(conn, "one", {"a": 1}, schema=db.schema)
        jobs = add_jobs(
            conn, [JobSpec("many", {"n": 1}), JobSpec("many", queue_name="q")], schema=db.schema
        )
    assert (job.task_identifier, job.payload) == ("one", {"a": 1})
    assert [(j.task_identifier, j.queue_name, j.payload) for j in jobs] == [
        ("many", None, {"n": 1}),
        ("many", "q", {}),
    ]


def test_a_namedtuple_row_async_connection(db: TestDatabase) -> None:
    async def scenario() -> list[str | None]:
        async with await psycopg.AsyncConnection.connect(
            db.dsn, autocommit=True, row_factory=namedtuple_row
        ) as conn:
            jobs = await add_jobs_async(
                conn, [JobSpec("a", queue_name="qa"), JobSpec("b")], schema=db.schema
            )
        return [job.queue_name for job in jobs]

    assert asyncio.run(scenario()) == ["qa", None]
