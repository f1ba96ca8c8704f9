"""add_jobs with many specs: plain ones take a shorter path, and every job is as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from graphile_py import JobRejected, JobSpec, add_jobs, add_jobs_async
from graphile_py.db.rows import JOB_COLUMNS
from tests.support import TestDatabase
from tests.support.workers import jobs_rows

# Every stored column the Job carries, and the queue's name.
FIELDS = (*JOB_COLUMNS, "queue_name")


def _specs() -> list[JobSpec]:
    later = datetime.now(UTC) + timedelta(hours=1)
    specs = []
    for n in range(300):
        if n % 7 == 3:
            specs.append(
                JobSpec(
                    "rich",
                    {"n": n},
                    queue_name=f"q{n % 3}",
                    run_at=later,
                    max_attempts=3,
                    job_key=f"key-{n}",
                    priority=-n,
                    flags=["a", "b"],
                )
            )
        else:
            specs.append(JobSpec("plain" if n % 2 else "other", {"n": n} if n % 5 else None))
    return specs


def _as_stored(job: Any) -> dict[str, Any]:
    return {name: getattr(job, name) for name in FIELDS}


def test_mixed_plain_and_full_specs_come_back_in_order_and_as_stored(db: TestDatabase) -> None:
    specs = _specs()
    with db.connect() as conn:
        jobs = add_jobs(conn, specs, schema=db.schema)
    assert [(j.task_identifier, j.queue_name, j.key) for j in jobs] == [
        (s.identifier, s.queue_name, s.job_key) for s in specs
    ]
    assert [j.payload for j in jobs] == [s.payload or {} for s in specs]
    stored = {row["id"]: row for row in jobs_rows(db)}
    assert len(stored) == len(specs)
    for job in jobs:  # the same values and types as a text-format read of the table
        row = stored[job.id]
        assert _as_stored(job) == {name: row[name] for name in FIELDS}
        assert job.run_at is not None and job.run_at.tzinfo is not None


def test_async_variant_returns_the_same_jobs(db: TestDatabase) -> None:
    import asyncio

    async def add() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
            return await add_jobs_async(conn, _specs(), schema=db.schema)

    jobs = asyncio.run(add())
    stored = {row["id"]: row for row in jobs_rows(db)}
    for job in jobs:
        assert _as_stored(job) == {name: stored[job.id][name] for name in FIELDS}


@pytest.mark.parametrize(
    ("identifier", "text"),
    [
        ("x" * 129, "longer than 128"),
        ("", "non-empty"),
        ("nul\x00", "NUL"),
        ("half \ud800", "Unicode|surrogate"),
        (42, "non-empty string"),
        (["not", "hashable"], "non-empty string"),
    ],
)
def test_a_bad_plain_spec_is_refused_before_anything_is_sent(
    db: TestDatabase, identifier: object, text: str
) -> None:
    specs = [JobSpec("fine", {}), JobSpec(identifier, {}), JobSpec(identifier, {})]  # type: ignore[arg-type]
    with psycopg.connect(db.dsn) as conn:
        with pytest.raises(JobRejected, match=text):
            add_jobs(conn, specs, schema=db.schema)
        assert conn.execute("select 1").fetchone() == (1,)
        conn.commit()
    assert jobs_rows(db) == []
