"""The example project's tests, as its authors would write them with the plugin."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from myapp.signup import schedule_reminder, sign_up

from graphile_py import add_job, add_job_async
from graphile_py.contrib.pytest import RunawayJobs


def sent(graphile_db: Any) -> list[tuple[str, str]]:
    with graphile_db.connect() as conn:
        return conn.execute("select kind, email from sent_emails order by id").fetchall()


def test_sign_up_enqueues_the_welcome_email(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        sign_up(conn, "ada@example.com")
    jobs = graphile_jobs.assert_job_enqueued(
        "send_welcome", payload_contains={"email": "ada@example.com"}, count=1
    )
    assert jobs[0].key == "welcome:ada@example.com"
    assert [job.payload for job in graphile_jobs.queued_jobs("send_welcome")] == [
        {"email": "ada@example.com"}
    ]


def test_failed_sign_up_leaves_no_job(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn, pytest.raises(RuntimeError):
        sign_up(conn, "bob@example.com", fail=True)
    graphile_jobs.assert_no_jobs()


def test_run_jobs_runs_the_job_and_what_it_enqueues(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        sign_up(conn, "cy@example.com")
    run = graphile_jobs.run_jobs()
    assert run.identifiers() == ["send_welcome", "send_tips"]
    assert run.errors == []
    assert sent(graphile_db) == [("welcome", "cy@example.com"), ("tips", "cy@example.com")]
    graphile_jobs.assert_no_jobs()


def test_retries_run_at_once_until_success(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "flaky_sync", {"email": "dee@example.com"})
    run = graphile_jobs.run_jobs()
    assert [str(e.error) for e in run.errors] == [
        "mail server down (attempt 1)",
        "mail server down (attempt 2)",
    ]
    assert run.identifiers() == ["flaky_sync"] and run.rounds == 3
    assert sent(graphile_db) == [("flaky", "dee@example.com")]


def test_without_retries_a_failed_job_waits_for_its_backoff(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "flaky_sync", {"email": "eve@example.com"})
    run = graphile_jobs.run_jobs(retries=False)
    assert len(run.errors) == 1 and run.completed == []
    (job,) = graphile_jobs.queued_jobs("flaky_sync")
    assert job.attempts == 1 and "mail server down" in (job.last_error or "")


def test_permanent_failure_and_raise_errors(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "always_fails", {"email": "x@example.com"}, max_attempts=2)
    run = graphile_jobs.run_jobs()
    assert [job.task_identifier for job in run.failed] == ["always_fails"]
    assert graphile_jobs.queued_jobs() == []
    assert len(graphile_jobs.queued_jobs(include_failed=True)) == 1
    with graphile_db.connect() as conn:
        add_job(conn, "always_fails", {"email": "y@example.com"}, max_attempts=1)
    with pytest.raises(ValueError, match=r"no such mailbox: y@example\.com"):
        graphile_jobs.run_jobs(raise_errors=True)


def test_future_jobs_wait_unless_asked(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        schedule_reminder(conn, "fay@example.com", datetime.now(UTC) + timedelta(days=3))
    assert graphile_jobs.run_jobs().completed == []
    graphile_jobs.assert_job_enqueued(
        "send_tips", payload={"email": "fay@example.com", "reminder": True}
    )
    run = graphile_jobs.run_jobs(include_future=True)
    assert run.identifiers() == ["send_tips"]


def test_a_task_that_enqueues_itself_forever_is_stopped(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "forever", {})
    with pytest.raises(RunawayJobs, match=r"stopped after 20 attempts \(max_jobs=20\)"):
        graphile_jobs.run_jobs(max_jobs=20)


def test_async_task_and_run_jobs_async(graphile_db, graphile_jobs):
    async def scenario() -> Any:
        import psycopg

        async with await psycopg.AsyncConnection.connect(graphile_db.dsn) as conn:
            await add_job_async(conn, "send_async", {"email": "gus@example.com"})
        return await graphile_jobs.run_jobs_async()

    run = asyncio.run(scenario())
    assert run.identifiers() == ["send_async"]
    assert sent(graphile_db) == [("async", "gus@example.com")]


def test_inline_mode_runs_at_commit_and_never_after_rollback(graphile_db, graphile_inline):
    with graphile_db.connect() as conn:
        sign_up(conn, "hal@example.com")
        # Committed: the task ran before sign_up returned, and so did the job it added.
        assert sent(graphile_db) == [("welcome", "hal@example.com"), ("tips", "hal@example.com")]
        with pytest.raises(RuntimeError):
            sign_up(conn, "ivy@example.com", fail=True)
    assert [job.task_identifier for job in graphile_inline.completed] == [
        "send_welcome",
        "send_tips",
    ]
    assert len(sent(graphile_db)) == 2


def test_inline_mode_with_a_sqlalchemy_session(graphile_db, graphile_inline):
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(graphile_db.sqlalchemy_url())
    try:
        with Session(engine) as session:
            session.execute(text("insert into users values ('jo@example.com')"))
            add_job(session, "send_tips", {"email": "jo@example.com"})
            assert sent(graphile_db) == []
            session.commit()
            assert sent(graphile_db) == [("tips", "jo@example.com")]
    finally:
        engine.dispose()


def test_inline_failures_are_reported(graphile_db, graphile_inline):
    with graphile_db.connect() as conn:
        add_job(conn, "always_fails", {"email": "kim@example.com"})
    (error,) = graphile_inline.errors
    assert str(error.error) == "no such mailbox: kim@example.com"
    graphile_inline.errors.clear()  # expected: do not fail the test at teardown


def test_inline_mode_on_an_async_connection(graphile_db, graphile_inline):
    import psycopg

    async def scenario() -> list[tuple[str, str]]:
        async with await psycopg.AsyncConnection.connect(graphile_db.dsn) as conn:
            async with conn.transaction():
                await add_job_async(conn, "send_async", {"email": "lu@example.com"})
                assert sent(graphile_db) == []
            return sent(graphile_db)

    assert asyncio.run(scenario()) == [("async", "lu@example.com")]


def test_inline_mode_on_autocommit_and_for_later_jobs(graphile_db, graphile_inline):
    import psycopg

    from graphile_py import WorkerUtils

    with psycopg.connect(graphile_db.dsn, autocommit=True) as conn:
        add_job(conn, "send_tips", {"email": "max@example.com"})  # committed at once: runs now
        assert sent(graphile_db) == [("tips", "max@example.com")]
        # A job for later runs at commit too: inline means "now".
        schedule_reminder(conn, "ned@example.com", datetime.now(UTC) + timedelta(days=1))
        assert sent(graphile_db)[-1] == ("tips", "ned@example.com")
    with WorkerUtils(graphile_db.dsn, run_migrations=False) as utils:
        utils.add_job("send_tips", {"email": "oz@example.com"})
    assert sent(graphile_db)[-1] == ("tips", "oz@example.com")


def test_run_jobs_with_options_of_your_own(graphile_db, graphile_jobs):
    from graphile_py import JobSpec, WorkerOptions, add_jobs

    with graphile_db.connect() as conn:
        add_jobs(conn, [JobSpec("send_tips", {"email": f"{n}@example.com"}) for n in range(6)])
    run = graphile_jobs.run_jobs(options=WorkerOptions(concurrency=3))
    assert run.identifiers() == ["send_tips"] * 6 and run.rounds == 1
    assert len(sent(graphile_db)) == 6
