"""add_job and friends join a SQLAlchemy 2 transaction on the psycopg driver, and refuse
everything else with a message that says what would work.

Real SQLAlchemy, real psycopg2 and asyncpg, the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from graphile_py import (
    JobRejected,
    JobSpec,
    UnsupportedConnection,
    add_job,
    add_job_async,
    add_jobs,
    add_jobs_async,
)
from tests.contrib.sqlalchemy.conftest import sa_url
from tests.support import TestDatabase


@pytest.fixture
def engine(db: TestDatabase) -> Iterator[Any]:
    engine = create_engine(sa_url(db))
    yield engine
    engine.dispose()


def identifiers(db: TestDatabase) -> list[str]:
    """The task identifiers of the committed jobs, in id order."""
    query = sql.SQL(
        "select tasks.identifier from {s}._private_jobs as jobs"
        " join {s}._private_tasks as tasks on tasks.id = jobs.task_id order by jobs.id"
    ).format(s=sql.Identifier(db.schema))
    with db.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def test_session_commit_commits_the_job_with_the_session(db: TestDatabase, engine: Any) -> None:
    with Session(engine) as session:
        session.execute(text("create table signups (email text)"))
        session.execute(text("insert into signups values ('a@example.com')"))
        job = add_job(session, "welcome", {"email": "a@example.com"}, schema=db.schema)
        assert job.id is not None and job.task_identifier == "welcome"
        # Not visible from outside before the session commits: it is in its transaction.
        assert identifiers(db) == []
        session.commit()
    assert identifiers(db) == ["welcome"]
    with db.connect() as conn:
        assert conn.execute("select count(*) from signups").fetchone() == (1,)


def test_session_rollback_drops_the_job(db: TestDatabase, engine: Any) -> None:
    with Session(engine) as session:
        add_job(session, "welcome", {"n": 1}, schema=db.schema)
        add_jobs(session, [JobSpec("a"), JobSpec("b")], schema=db.schema)
        session.rollback()
    assert identifiers(db) == []
    # An exception inside session.begin() rolls back the job too.
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        add_job(session, "welcome", schema=db.schema)
        raise RuntimeError("the request failed after enqueueing")
    assert identifiers(db) == []


def test_connection_commit_as_you_go_and_begin_block(db: TestDatabase, engine: Any) -> None:
    # A fresh Connection has not begun: add_job begins it, so commit() commits the job.
    with engine.connect() as conn:
        assert not conn.in_transaction()
        add_job(conn, "one", schema=db.schema)
        assert conn.in_transaction()
        conn.commit()
    with engine.begin() as conn:
        jobs = add_jobs(conn, [JobSpec("two"), JobSpec("three")], schema=db.schema)
        assert [job.task_identifier for job in jobs] == ["two", "three"]
    with engine.connect() as conn:
        add_job(conn, "closed_without_commit", schema=db.schema)
    assert identifiers(db) == ["one", "two", "three"]


def test_async_session_and_connection(db: TestDatabase) -> None:
    async def scenario() -> None:
        engine = create_async_engine(sa_url(db))
        try:
            async with AsyncSession(engine) as session:
                job = await add_job_async(session, "async_one", {"x": 1}, schema=db.schema)
                assert job.payload == {"x": 1}
                await session.commit()
            async with AsyncSession(engine) as session:
                await add_jobs_async(session, [JobSpec("rolled_back")], schema=db.schema)
                await session.rollback()
            async with engine.connect() as conn:
                await add_jobs_async(conn, [JobSpec("async_two")], schema=db.schema)
                await conn.commit()
            async with engine.begin() as conn:
                await add_job_async(conn, "async_three", schema=db.schema)
            with pytest.raises(RuntimeError):
                async with AsyncSession(engine) as session, session.begin():
                    await add_job_async(session, "raised", schema=db.schema)
                    raise RuntimeError("boom")
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert identifiers(db) == ["async_one", "async_two", "async_three"]


def test_scoped_sessions_give_their_current_session(db: TestDatabase, engine: Any) -> None:
    # Flask-SQLAlchemy's db.session is a scoped_session.
    scoped = scoped_session(sessionmaker(engine))
    add_job(scoped, "scoped", schema=db.schema)
    assert identifiers(db) == []
    scoped.commit()
    scoped.remove()

    async def scenario() -> None:
        async_engine = create_async_engine(sa_url(db))
        try:
            current = async_scoped_session(
                async_sessionmaker(async_engine), scopefunc=asyncio.current_task
            )
            await add_job_async(current, "async_scoped", schema=db.schema)
            await current.commit()
            await current.remove()
        finally:
            await async_engine.dispose()

    asyncio.run(scenario())
    assert identifiers(db) == ["scoped", "async_scoped"]


def test_a_job_refused_by_us_leaves_the_session_usable(db: TestDatabase, engine: Any) -> None:
    with Session(engine) as session:
        add_job(session, "kept", schema=db.schema)
        with pytest.raises(JobRejected):
            add_job(session, "bad", schema=db.schema, job_key_mode="nonsense")  # type: ignore[typeddict-item]
        session.commit()
    assert identifiers(db) == ["kept"]


# -- what is refused, and how --------------------------------------------------------------


def refusal(target: object, *, sync: bool = True) -> str:
    with pytest.raises(UnsupportedConnection) as caught:
        if sync:
            add_job(target, "t")  # type: ignore[arg-type]
        else:
            asyncio.run(add_job_async(target, "t"))  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)  # what a wrong argument type is in Python
    return str(caught.value)


def test_none_and_a_connection_string_are_refused_with_what_to_do(db: TestDatabase) -> None:
    message = refusal(None)
    assert message.startswith("got None: add_job/add_jobs accept a psycopg 3 Connection")
    assert "postgresql+psycopg://" in message
    message = refusal(db.dsn)
    assert message.startswith("got str:") and "WorkerUtils(dsn).add_job" in message
    assert "got None: add_job_async/add_jobs_async accept" in refusal(None, sync=False)
    with pytest.raises(UnsupportedConnection, match="got list"):
        add_jobs([], [JobSpec("x")])  # type: ignore[arg-type]
    assert identifiers(db) == []


def test_psycopg2_connection_is_refused(db: TestDatabase) -> None:
    conn = psycopg2.connect(db.dsn)
    try:
        message = refusal(conn)
        assert message.startswith("got psycopg2.extensions.connection:")
        assert "psycopg2 is not supported" in message and "psycopg.connect" in message
        # Nothing was sent on it: its transaction is untouched.
        assert conn.status == psycopg2.extensions.STATUS_READY
    finally:
        conn.close()


def test_asyncpg_connection_is_refused(db: TestDatabase) -> None:
    url = sa_url(db, "asyncpg").render_as_string(hide_password=False).replace("+asyncpg", "")

    async def scenario() -> str:
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(UnsupportedConnection) as caught:
                await add_job_async(conn, "t")
            return str(caught.value)
        finally:
            await conn.close()

    message = asyncio.run(scenario())
    assert message.startswith("got asyncpg.connection.Connection:")
    assert "asyncpg is not supported" in message and "psycopg.AsyncConnection" in message


def test_sqlalchemy_on_other_drivers_is_refused_before_anything_begins(db: TestDatabase) -> None:
    engine = create_engine(sa_url(db, "psycopg2"))
    try:
        with Session(engine) as session:
            message = refusal(session)
            assert message.startswith("got a SQLAlchemy Session on the postgresql+psycopg2 driver")
            assert "postgresql+psycopg://" in message
            assert not session.in_transaction()
        with engine.connect() as conn:
            assert "Connection on the postgresql+psycopg2 driver" in refusal(conn)
            assert not conn.in_transaction()
    finally:
        engine.dispose()

    async def async_refusal() -> str:
        async_engine = create_async_engine(sa_url(db, "asyncpg"))
        try:
            async with AsyncSession(async_engine) as session:
                with pytest.raises(UnsupportedConnection) as caught:
                    await add_job_async(session, "t")
                assert not session.in_transaction()
                return str(caught.value)
        finally:
            await async_engine.dispose()

    message = asyncio.run(async_refusal())
    assert message.startswith("got a SQLAlchemy AsyncSession on the postgresql+asyncpg driver")


def test_sync_and_async_mix_ups_say_which_function_to_use(db: TestDatabase, engine: Any) -> None:
    with Session(engine) as session:
        assert "for a SQLAlchemy Session use add_job(...)" in refusal(session, sync=False)
    assert "an Engine is not a transaction: pass a Session or a Connection" in refusal(engine)

    async def async_mixups() -> list[str]:
        messages = []
        async_engine = create_async_engine(sa_url(db))
        try:
            async with AsyncSession(async_engine) as session:
                with pytest.raises(UnsupportedConnection) as caught:
                    add_job(session, "t")  # type: ignore[arg-type]
                messages.append(str(caught.value))
            async with await psycopg.AsyncConnection.connect(db.dsn) as aconn:
                with pytest.raises(UnsupportedConnection) as caught:
                    add_job(aconn, "t")  # type: ignore[arg-type]
                messages.append(str(caught.value))
        finally:
            await async_engine.dispose()
        return messages

    session_message, aconn_message = asyncio.run(async_mixups())
    assert "for a SQLAlchemy AsyncSession use 'await add_job_async(...)'" in session_message
    assert aconn_message.startswith("got psycopg.AsyncConnection:")
    assert "use 'await add_job_async(...)'" in aconn_message
    with db.connect() as conn:
        assert "for a sync connection use add_job(...)" in refusal(conn, sync=False)
    assert identifiers(db) == []
