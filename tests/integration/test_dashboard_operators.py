"""The dashboard's API for the side schema: workers, history, a job's attempts, replay.

Over real HTTP against a real database; the registry and history rows are written
directly (tests/support/side_rows.py). Each answer is compared with what the command
line's ``--json`` prints, since both come from admin/views.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import WorkerUtils
from graphile_py.admin.history import HISTORY_OFF
from graphile_py.cli import main
from graphile_py.db.side_schema import side_schema_for
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase
from tests.support.side_rows import (
    ALIVE,
    record_attempt,
    record_sample_history,
    register_pool,
    side_identifier,
)
from tests.support.workers import claim_like_a_worker, jobs_rows

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema, run_migrations=False) as utils:
        yield utils


def _serve(utils: WorkerUtils, **options: Any) -> Any:
    return BackgroundServer(create_app(utils, sample_interval=0.5, **options))


@pytest.fixture
def client(utils: WorkerUtils) -> Iterator[httpx.Client]:
    with (
        _serve(utils, allow_actions=True) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def _cli(db: TestDatabase, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json", "-c", db.dsn, "-s", db.schema])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_workers(db: TestDatabase, utils: WorkerUtils, client: httpx.Client) -> None:
    register_pool(db, ALIVE, succeeded=5)
    register_pool(db, "pool-lost", heartbeat_ago=900, lost_ago=30)
    register_pool(db, "pool-stopped", stopped=True)
    utils.add_job("email")
    claim_like_a_worker(db, "email", ALIVE)
    answer = client.get("/api/v1/workers")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert [(pool["id"], pool["state"]) for pool in data["pools"]] == [
        (ALIVE, "alive"),
        ("pool-lost", "lost"),
    ]
    assert data["pools"][0]["running_jobs"] == 1 and data["pools"][0]["jobs_succeeded"] == 5
    assert data["alive"] == 1 and data["unregistered"] == []
    everything = client.get("/api/v1/workers", params={"all": "true"}).json()
    assert {pool["id"] for pool in everything["pools"]} == {ALIVE, "pool-lost", "pool-stopped"}
    cli = _cli(db, "workers", "--all")
    # Taken a moment apart: the heartbeat ages and the snapshot time differ.
    for shown in (cli, everything):
        for pool in shown["pools"]:
            pool.pop("heartbeat_age_seconds")
        shown.pop("taken_at")
    assert cli == everything


def test_history_pages_and_the_off_note(db: TestDatabase, client: httpx.Client) -> None:
    off = client.get("/api/v1/history").json()
    assert off == {"attempts": [], "next_before_id": None, "note": HISTORY_OFF}
    record_sample_history(db)
    page = client.get("/api/v1/history", params={"limit": 2}).json()
    assert [(a["job_id"], a["outcome"]) for a in page["attempts"]] == [(9, "lost"), (8, "success")]
    assert page["next_before_id"] == page["attempts"][-1]["id"] and page["note"] is None
    rest = client.get("/api/v1/history", params={"before_id": page["next_before_id"]}).json()
    assert [a["attempt"] for a in rest["attempts"]] == [3, 2, 1]
    since = (datetime.now(UTC) - timedelta(minutes=4)).isoformat()
    recent = client.get(
        "/api/v1/history", params={"since": since, "outcome": "failure", "task": "email"}
    ).json()
    assert [a["error"] for a in recent["attempts"]] == ["refused\nsecond line"]
    (only,) = client.get("/api/v1/history", params={"job_id": 8}).json()["attempts"]
    assert only["queue_name"] == "reports"
    assert client.get("/api/v1/history").json() == _cli(db, "jobs", "history")
    bad = client.get("/api/v1/history", params={"outcome": "maybe"})
    assert bad.status_code == 422
    naive = client.get("/api/v1/history", params={"since": "2030-01-01T00:00:00"})
    assert naive.status_code == 422


def test_a_jobs_page_has_its_attempts_even_once_gone(
    db: TestDatabase, utils: WorkerUtils, client: httpx.Client
) -> None:
    record_sample_history(db)
    gone = client.get("/api/v1/jobs/7")
    assert gone.status_code == 404
    timeline = client.get("/api/v1/jobs/7/attempts").json()
    assert timeline["job_id"] == 7 and timeline["exists"] is False
    assert [a["outcome"] for a in timeline["attempts"]] == ["failure", "failure", "success"]
    assert timeline == _cli(db, "jobs", "show", "7")
    missing = client.get("/api/v1/jobs/123456/attempts")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    job = utils.add_job("email", {"to": "z"})
    record_attempt(db, job.id, "email", "failure", error="boom", finished_ago=1)
    shown = client.get(f"/api/v1/jobs/{job.id}").json()
    assert [a["error"] for a in shown["history"]] == ["boom"] and shown["payload"] == {"to": "z"}
    assert shown == _cli(db, "jobs", "show", str(job.id))
    assert client.get(f"/api/v1/jobs/{job.id}/attempts").json()["exists"] is True


def test_replay(db: TestDatabase, utils: WorkerUtils, client: httpx.Client) -> None:
    live = utils.add_job("email", {"to": "q"}, priority=3, flags=["x"], queue_name="mail")
    answer = client.post(f"/api/v1/jobs/{live.id}/replay", headers=JSON, json={})
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert data["source"] == "job" and data["replayed"] == live.id
    assert (data["job"]["priority"], data["job"]["flags"], data["job"]["queue_name"]) == (
        3,
        ["x"],
        "mail",
    )
    record_sample_history(db)
    from_history = client.post("/api/v1/jobs/7/replay", headers=JSON, json={}).json()
    assert from_history["source"] == "history" and from_history["job"]["payload"] == {"to": "a"}
    record_attempt(db, 40, "email", "success", payload=None, payload_bytes=9000)
    refused = client.post("/api/v1/jobs/40/replay", headers=JSON, json={})
    assert refused.status_code == 400 and "did not keep its payload" in refused.json()["message"]
    assert client.post("/api/v1/jobs/41/replay", headers=JSON, json={}).status_code == 404
    assert len(jobs_rows(db)) == 3


def test_read_only_refuses_replay(db: TestDatabase, utils: WorkerUtils) -> None:
    job = utils.add_job("email")
    with _serve(utils) as server, httpx.Client(base_url=server.url) as client:
        answer = client.post(f"/api/v1/jobs/{job.id}/replay", headers=JSON, json={})
    assert answer.status_code == 403 and answer.json()["error"] == "read_only"
    assert len(jobs_rows(db)) == 1


def test_without_the_side_schema(
    db: TestDatabase, utils: WorkerUtils, client: httpx.Client
) -> None:
    job = utils.add_job("email")
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(side_identifier(db)))
    for path in ("/api/v1/workers", "/api/v1/history"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.json()["error"] == "not_installed"
        message = answer.json()["message"]
        assert f"the {side_schema_for(db.schema)} schema is not installed" in message
        assert "graphile-py migrate" in message
    assert client.get(f"/api/v1/jobs/{job.id}").json()["history"] == []
    assert client.get("/api/v1/stats").status_code == 200


def test_openapi_describes_the_new_routes(client: httpx.Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in ("/api/v1/workers", "/api/v1/history", "/api/v1/jobs/{job_id}/attempts"):
        assert "get" in paths[path], path
    assert "post" in paths["/api/v1/jobs/{job_id}/replay"]
    schemas = document["components"]["schemas"]
    assert {"WorkersOut", "WorkerPoolOut", "AttemptOut", "AttemptListOut", "ReplayOut"} <= set(
        schemas
    )
    assert "history" in schemas["JobShowOut"]["properties"]
