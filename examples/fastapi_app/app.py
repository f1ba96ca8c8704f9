"""Sign-ups: the row and its welcome email's job commit together, in one SQLAlchemy
transaction; a worker pool inside the app runs the job.

Settings come from the environment: ``DATABASE_URL`` (a ``postgresql://`` URL),
``GRAPHILE_WORKER_SCHEMA`` (default ``graphile_worker``) and ``SHUTDOWN_TIMEOUT``
(seconds a running job gets to finish when the app stops; default 10).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from examples.fastapi_app.tasks import registry
from graphile_py import WorkerOptions, add_job_async
from graphile_py.contrib.fastapi import graphile_lifespan

# uvicorn configures its own loggers only: show the worker's (jobs started, failed, shutdown).
logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")

DATABASE_URL = os.environ["DATABASE_URL"]
SCHEMA = os.environ.get("GRAPHILE_WORKER_SCHEMA", "graphile_worker")


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "signups"

    email: Mapped[str] = mapped_column(String, primary_key=True)
    welcomed_at: Mapped[datetime | None]


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]


@asynccontextmanager
async def database(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """The app's own lifespan: an engine on the psycopg 3 driver, and its tables."""
    # postgresql+psycopg:// is SQLAlchemy's psycopg 3 driver, the one graphile-py speaks.
    engine = create_async_engine(DATABASE_URL.replace("postgresql://", "postgresql+psycopg://"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield {"sessions": async_sessionmaker(engine, expire_on_commit=False)}
    await engine.dispose()


app = FastAPI(
    # The worker starts after `database` and stops before it: jobs never outlive the engine.
    lifespan=graphile_lifespan(
        registry,
        conninfo=DATABASE_URL,
        options=WorkerOptions(
            schema=SCHEMA,
            concurrency=2,
            shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "10")),
        ),
        lifespan=database,
    )
)


class SignupIn(BaseModel):
    email: str
    #: For the demonstration: fail the request after the job was added.
    fail_after_enqueue: bool = False


class ReportIn(BaseModel):
    label: str
    seconds: float


@app.post("/signups", status_code=201)
async def sign_up(body: SignupIn, request: Request) -> dict[str, Any]:
    session: AsyncSession
    async with request.state.sessions() as session, session.begin():
        session.add(Signup(email=body.email))
        # The job joins the session's transaction: it exists only if the sign-up commits.
        job = await add_job_async(session, "send_welcome", {"email": body.email}, schema=SCHEMA)
        if body.fail_after_enqueue:
            raise HTTPException(status_code=500, detail="failed after enqueueing")
    return {"email": body.email, "job_id": job.id}


@app.get("/signups/{email}")
async def get_signup(email: str, request: Request) -> dict[str, Any]:
    async with request.state.sessions() as session:
        signup = await session.scalar(select(Signup).where(Signup.email == email))
    if signup is None:
        raise HTTPException(status_code=404, detail="no such sign-up")
    return {"email": signup.email, "welcomed": signup.welcomed_at is not None}


@app.post("/reports", status_code=202)
async def start_report(body: ReportIn, request: Request) -> dict[str, Any]:
    async with request.state.sessions() as session, session.begin():
        job = await add_job_async(session, "slow_report", body.model_dump(), schema=SCHEMA)
    return {"job_id": job.id}


@app.get("/health")
async def health(request: Request) -> dict[str, Any]:
    worker = request.state.graphile_worker
    return {"worker_running": worker.running}
