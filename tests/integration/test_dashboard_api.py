"""The dashboard's JSON API over real HTTP: uvicorn on a thread, a real database behind it.

Jobs are put in every state the way workers put them there (claimed and failed through
the worker's own statements, or by a running pool); every endpoint is read and every
action taken; then credentials, read-only mode, cross-site and host checks, and the
4xx answers (404 unknown job, 409 job held by a worker, 422 invalid request).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg import sql

from graphile_py import WorkerUtils
from graphile_py.errors import CrontabError
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase
from tests.support.workers import claim_like_a_worker, run_once, running_pool, wait_for

POOL = "pool-dashboard-test"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


@contextmanager
def serve(utils: WorkerUtils, **options: Any) -> Iterator[httpx.Client]:
    """A real dashboard server for the block, and an HTTP client pointed at it."""
    options.setdefault("allow_actions", True)
    options.setdefault("sample_interval", 0.2)
    with (
        BackgroundServer(create_app(utils, **options)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def client(utils: WorkerUtils) -> Iterator[httpx.Client]:
    with serve(utils) as client:
        yield client


def _claim(db: TestDatabase, task: str) -> int:
    return claim_like_a_worker(db, task, POOL)


@dataclass
class Jobs:
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int
    queued: int


@pytest.fixture
def jobs(db: TestDatabase, utils: WorkerUtils) -> Jobs:
    """A job in every state; failures come from a real worker running a failing task."""

    def boom(payload: Any, helpers: Any) -> None:
        raise RuntimeError(f"boom: {payload['n']}")

    retrying = utils.add_job("boom", {"n": "retrying"}, max_attempts=5).id
    failed = utils.add_job("boom", {"n": "failed"}, max_attempts=1, queue_name="mail").id
    run_once(db, {"boom": boom})
    ready = utils.add_job("greet", {"name": "Ada"}, job_key="greet-ada").id
    scheduled = utils.add_job(
        "greet", {"name": "Bob"}, run_at=datetime.now(UTC) + timedelta(hours=2), priority=3
    ).id
    utils.add_job("ordered", {"n": 1}, queue_name="serial")
    running = _claim(db, "ordered")
    queued = utils.add_job("ordered", {"n": 2}, queue_name="serial").id
    return Jobs(ready, scheduled, running, retrying, failed, queued)


# -- reads ------------------------------------------------------------------------------------


def test_stats_tasks_queues_and_pools(client: httpx.Client, jobs: Jobs) -> None:
    stats = client.get("/api/v1/stats").json()
    assert stats["totals"] == {
        "ready": 2,
        "scheduled": 1,
        "running": 1,
        "retrying": 1,
        "failed": 1,
        "total": 6,
    }
    tasks = {task["task"]: task["counts"] for task in stats["tasks"]}
    assert tasks["boom"]["retrying"] == 1 and tasks["boom"]["failed"] == 1
    assert tasks["greet"]["ready"] == 1 and tasks["greet"]["scheduled"] == 1
    assert stats["oldest_ready_age_seconds"] >= 0
    assert stats["locked_queues"] == ["serial"]
    queues = {queue["name"]: queue for queue in stats["queues"]}
    assert queues["serial"]["locked_by"] == POOL and queues["serial"]["counts"]["running"] == 1
    assert queues["mail"]["locked_by"] is None and queues["mail"]["counts"]["failed"] == 1
    assert [(p["pool_id"], p["jobs"], p["queues"]) for p in stats["pools"]] == [(POOL, 1, 1)]

    assert [t["task"] for t in client.get("/api/v1/tasks").json()] == ["boom", "greet", "ordered"]
    assert [q["name"] for q in client.get("/api/v1/queues").json()] == ["mail", "serial"]


def test_jobs_list_filters_and_pages(client: httpx.Client, jobs: Jobs) -> None:
    def ids(**params: Any) -> list[int]:
        response = client.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["jobs"]]

    everything = ids()
    assert everything == sorted(everything, reverse=True) and len(everything) == 6
    assert ids(state="failed") == [jobs.failed]
    assert ids(state="retrying") == [jobs.retrying]
    assert ids(state="running") == [jobs.running]
    assert ids(state="scheduled") == [jobs.scheduled]
    assert ids(state="ready") == sorted([jobs.ready, jobs.queued], reverse=True)
    assert ids(task="greet") == sorted([jobs.ready, jobs.scheduled], reverse=True)
    assert ids(queue="serial") == sorted([jobs.running, jobs.queued], reverse=True)
    assert ids(key="greet-ada") == [jobs.ready]
    assert ids(task="nobody") == []

    first = client.get("/api/v1/jobs", params={"limit": 4}).json()
    assert len(first["jobs"]) == 4 and first["next_before_id"] == first["jobs"][-1]["id"]
    rest = client.get(
        "/api/v1/jobs", params={"limit": 4, "before_id": first["next_before_id"]}
    ).json()
    assert [j["id"] for j in first["jobs"] + rest["jobs"]] == everything
    assert rest["next_before_id"] is None
    listed = client.get("/api/v1/jobs", params={"state": "failed"}).json()["jobs"][0]
    assert "payload" not in listed and listed["last_error"].startswith("boom: failed")


def test_job_detail_and_unknown_job(client: httpx.Client, jobs: Jobs) -> None:
    failed = client.get(f"/api/v1/jobs/{jobs.failed}").json()
    assert failed["state"] == "failed" and failed["payload"] == {"n": "failed"}
    assert "RuntimeError" in failed["last_error"] or "boom: failed" in failed["last_error"]
    assert (failed["attempts"], failed["max_attempts"], failed["queue_name"]) == (1, 1, "mail")
    scheduled = client.get(f"/api/v1/jobs/{jobs.scheduled}").json()
    assert scheduled["state"] == "scheduled" and scheduled["priority"] == 3
    running = client.get(f"/api/v1/jobs/{jobs.running}").json()
    assert running["locked_by"] == POOL and running["state"] == "running"

    missing = client.get("/api/v1/jobs/987654321")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "There is no job 987654321."}


def test_the_api_and_the_cli_json_give_one_shape(
    client: httpx.Client, db: TestDatabase, utils: WorkerUtils, jobs: Jobs
) -> None:
    """A job, the queues and the status read the same through the API and ``--json``."""
    import json

    from click.testing import CliRunner

    from graphile_py.cli import main

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--json", "-c", db.dsn, "-s", db.schema])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    flagged = utils.add_job("flagged", {"x": [1, "ü"]}, flags=["b", "a"], queue_name="q").id
    for job_id in (jobs.failed, jobs.running, flagged):
        assert cli("jobs", "show", str(job_id)) == client.get(f"/api/v1/jobs/{job_id}").json()
    shown = client.get(f"/api/v1/jobs/{flagged}").json()
    assert shown["flags"] == ["a", "b"]
    assert client.get(f"/api/v1/jobs/{jobs.ready}").json()["flags"] == []
    assert cli("queues", "list") == client.get("/api/v1/queues").json()
    cli_status, api_status = cli("status"), client.get("/api/v1/stats").json()
    assert set(cli_status) == set(api_status) and cli_status["queues"] == api_status["queues"]

    def counts(status: Any) -> list[Any]:  # the ages differ: they are taken a moment apart
        return [(task["task"], task["counts"]) for task in status["tasks"]]

    assert counts(cli_status) == counts(api_status)


def test_cron(db: TestDatabase, utils: WorkerUtils) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_known_crontabs (identifier, known_since, last_execution)"
                " values ('nightly', now() - interval '1 day', now() - interval '1 hour')"
            ).format(sql.Identifier(db.schema))
        )
    with serve(utils) as client:
        [plain] = client.get("/api/v1/cron").json()
        assert plain["identifier"] == "nightly" and plain["next_run"] is None
    with serve(utils, crontab="0 4 * * * nightly_cleanup ?id=nightly\n") as client:
        [item] = client.get("/api/v1/cron").json()
        assert item["task"] == "nightly_cleanup" and item["in_crontab"] is True
        assert datetime.fromisoformat(item["next_run"]).hour == 4
    with pytest.raises(CrontabError):
        create_app(utils, crontab="61 * * * * nope\n")


def test_metrics_history_counts_created_completed_and_failed(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    def ok(payload: Any, helpers: Any) -> None:
        pass

    def boom(payload: Any, helpers: Any) -> None:
        raise RuntimeError("boom")

    with serve(utils, sample_interval=0.2) as client:
        wait_for(lambda: client.get("/api/v1/metrics/history").json()["points"], timeout=10)
        for n in range(5):
            utils.add_job("ok", {"n": n})
        utils.add_job("boom", max_attempts=1)
        utils.add_job("boom", max_attempts=3)
        run_once(db, {"ok": ok, "boom": boom})

        def totals() -> dict[str, int]:
            points = client.get("/api/v1/metrics/history").json()["points"]
            return {
                name: sum(p[name] for p in points) for name in ("created", "completed", "failed")
            }

        wait_for(lambda: totals() == {"created": 7, "completed": 5, "failed": 2}, timeout=15)
        history = client.get("/api/v1/metrics/history", params={"bucket": 60}).json()
        assert history["bucket"] == 60 and history["window"] == 3600
        assert 1 <= len(history["points"]) <= 2  # the last minute or two
        assert sum(p["completed"] for p in history["points"]) == 5
        last = history["points"][-1]
        assert (last["failed_total"], last["retrying"]) == (1, 1)


# -- actions ----------------------------------------------------------------------------------


def test_retry_reschedule_and_remove(client: httpx.Client, jobs: Jobs) -> None:
    retried = client.post(f"/api/v1/jobs/{jobs.failed}/retry", headers=JSON)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert (body["id"], body["state"], body["attempts"]) == (jobs.failed, "ready", 0)

    later = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    moved = client.post(f"/api/v1/jobs/{jobs.ready}/reschedule", json={"run_at": later.isoformat()})
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "scheduled"
    assert datetime.fromisoformat(moved.json()["run_at"]) == later

    removed = client.delete(f"/api/v1/jobs/{jobs.scheduled}")
    assert removed.status_code == 200 and removed.json()["id"] == jobs.scheduled
    assert client.get(f"/api/v1/jobs/{jobs.scheduled}").status_code == 404
    for method, path in [
        ("POST", "/api/v1/jobs/424242/retry"),
        ("DELETE", "/api/v1/jobs/424242"),
    ]:
        assert client.request(method, path, headers=JSON).status_code == 404
    missing = client.post("/api/v1/jobs/424242/reschedule", json={"run_at": later.isoformat()})
    assert missing.status_code == 404


def test_actions_on_a_running_job_answer_409(client: httpx.Client, jobs: Jobs) -> None:
    later = {"run_at": datetime(2031, 1, 1, tzinfo=UTC).isoformat()}
    for response in [
        client.post(f"/api/v1/jobs/{jobs.running}/retry", headers=JSON),
        client.post(f"/api/v1/jobs/{jobs.running}/reschedule", json=later),
        client.delete(f"/api/v1/jobs/{jobs.running}"),
    ]:
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "conflict"
        assert POOL in response.json()["message"]
    assert client.get(f"/api/v1/jobs/{jobs.running}").json()["state"] == "running"


def test_409_for_a_job_a_real_worker_is_running(db: TestDatabase, utils: WorkerUtils) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(payload: Any, helpers: Any) -> None:
        started.set()
        release.wait(60)

    with running_pool(db, {"slow": slow}) as pool, serve(utils) as client:
        job = utils.add_job("slow")
        try:
            wait_for(started.is_set)
            response = client.delete(f"/api/v1/jobs/{job.id}")
            assert response.status_code == 409 and pool.id in response.json()["message"]
            pools = client.get("/api/v1/stats").json()["pools"]
            assert [p["pool_id"] for p in pools] == [pool.id]
        finally:
            release.set()
        wait_for(lambda: client.get(f"/api/v1/jobs/{job.id}").status_code == 404)


def test_bulk_retry(client: httpx.Client, db: TestDatabase, utils: WorkerUtils, jobs: Jobs) -> None:
    result = client.post(
        "/api/v1/jobs/retry", json={"ids": [jobs.retrying, jobs.running, 999999]}
    ).json()
    assert result == {"changed": [jobs.retrying], "skipped": [jobs.running, 999999]}

    other = utils.add_job("other", max_attempts=1)
    utils.permanently_fail_jobs([other.id], "gave up")
    by_task = client.post("/api/v1/jobs/retry", json={"all_failed": True, "task": "other"})
    assert by_task.json() == {"changed": [other.id], "skipped": []}
    rest = client.post("/api/v1/jobs/retry", json={"all_failed": True}).json()
    assert rest["changed"] == [jobs.failed]
    assert client.get("/api/v1/jobs", params={"state": "failed"}).json()["jobs"] == []


def test_enqueue_then_list(client: httpx.Client) -> None:
    run_at = datetime.now(UTC) + timedelta(days=1)
    response = client.post(
        "/api/v1/jobs",
        json={
            "task": "send_email",
            "payload": {"to": "ada@example.com", "tags": ["a", "ü"]},
            "queue": "mail",
            "run_at": run_at.isoformat(),
            "max_attempts": 3,
            "key": "welcome-ada",
            "priority": -1,
            "flags": ["slow", "smtp"],
        },
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "scheduled" and job["payload"]["tags"] == ["a", "ü"]
    assert (job["queue_name"], job["max_attempts"], job["key"], job["priority"]) == (
        "mail",
        3,
        "welcome-ada",
        -1,
    )
    assert job["flags"] == ["slow", "smtp"]
    assert datetime.fromisoformat(job["run_at"]) == run_at
    listed = client.get("/api/v1/jobs", params={"task": "send_email"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]

    minimal = client.post("/api/v1/jobs", json={"task": "ping"})
    assert minimal.status_code == 201 and minimal.json()["payload"] == {}
    assert minimal.json()["state"] == "ready"


# -- invalid requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/jobs?state=lost", None),
        ("GET", "/api/v1/jobs?limit=0", None),
        ("GET", "/api/v1/jobs?limit=1001", None),
        ("GET", "/api/v1/jobs?before_id=-1", None),
        ("GET", "/api/v1/jobs?task=a%00b", None),
        ("GET", "/api/v1/jobs/abc", None),
        ("GET", "/api/v1/jobs/0", None),
        ("GET", "/api/v1/jobs/99999999999999999999", None),
        ("GET", "/api/v1/jobs/9007199254740992", None),
        ("GET", "/api/v1/metrics/history?bucket=-5", None),
        ("POST", "/api/v1/jobs", {}),
        ("POST", "/api/v1/jobs", {"task": ""}),
        ("POST", "/api/v1/jobs", {"task": "x" * 129}),
        ("POST", "/api/v1/jobs", {"task": "a\u0000b"}),
        ("POST", "/api/v1/jobs", {"task": "t", "run_at": "2030-01-01T00:00:00"}),
        ("POST", "/api/v1/jobs", {"task": "t", "max_attempts": 0}),
        ("POST", "/api/v1/jobs", {"task": "t", "priority": 40000}),
        ("POST", "/api/v1/jobs", {"task": "t", "key": ""}),
        ("POST", "/api/v1/jobs", {"task": "t", "key_mode": "sometimes"}),
        ("POST", "/api/v1/jobs", {"task": "t", "queue_name": "typo"}),
        ("POST", "/api/v1/jobs", "not an object"),
        ("POST", "/api/v1/jobs/retry", {}),
        ("POST", "/api/v1/jobs/retry", {"ids": [1], "all_failed": True}),
        ("POST", "/api/v1/jobs/retry", {"ids": [1], "task": "t"}),
        ("POST", "/api/v1/jobs/retry", {"ids": [0]}),
        ("POST", "/api/v1/jobs/1/reschedule", {}),
        ("POST", "/api/v1/jobs/1/reschedule", {"run_at": "soon"}),
    ],
)
def test_invalid_requests_answer_422(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body, headers=JSON)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"] and error["detail"]


def test_malformed_json_and_unencodable_text_answer_4xx(client: httpx.Client) -> None:
    broken = client.post("/api/v1/jobs", content=b'{"task": ', headers=JSON)
    assert broken.status_code == 422 and "JSON" in broken.json()["message"]
    surrogate = client.post("/api/v1/jobs", content=b'{"task": "\\ud800"}', headers=JSON)
    assert surrogate.status_code == 400, surrogate.text
    assert surrogate.json()["error"] in {"invalid_text", "rejected"}
    deep = b'{"task": "t", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert 400 <= client.post("/api/v1/jobs", content=deep, headers=JSON).status_code < 500


def test_openapi_document(client: httpx.Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    assert set(paths) >= {
        "/api/v1/stats",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/queues",
        "/api/v1/tasks",
        "/api/v1/cron",
        "/api/v1/metrics/history",
        "/api/v1/jobs/retry",
        "/api/v1/jobs/{job_id}/retry",
        "/api/v1/jobs/{job_id}/reschedule",
    }
    assert set(paths["/api/v1/jobs"]) == {"get", "post"}
    assert set(paths["/api/v1/jobs/{job_id}"]) == {"get", "delete"}


# -- security ---------------------------------------------------------------------------------


def test_token(utils: WorkerUtils) -> None:
    with serve(utils, token="s3cret-token") as client:
        page = client.get("/")
        assert page.status_code == 200 and "graphile-py" in page.text  # no data in the page
        assert client.get("/static/app.js").status_code == 200
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}]:
            refused = client.get("/api/v1/stats", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/v1/openapi.json").status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/v1/stats", headers=good).status_code == 200
        assert client.post("/api/v1/jobs", json={"task": "t"}).status_code == 401
        assert client.post("/api/v1/jobs", json={"task": "t"}, headers=good).status_code == 201
        assert client.get("/api/v1/info", headers=good).json()["auth"] == ["token"]


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def test_basic_auth(utils: WorkerUtils) -> None:
    with serve(utils, basic_auth="admin:pa:ss wörd") as client:
        for path in ["/", "/static/app.js", "/api/v1/stats"]:
            refused = client.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic realm=")
        for wrong in [_basic("admin", "nope"), _basic("root", "pa:ss wörd"), _basic("admin", "")]:
            assert client.get("/api/v1/stats", headers=wrong).status_code == 401
        assert (
            client.get("/api/v1/stats", headers={"Authorization": "Basic %%%"}).status_code == 401
        )
        good = _basic("admin", "pa:ss wörd")
        assert client.get("/", headers=good).status_code == 200
        assert client.get("/api/v1/stats", headers=good).status_code == 200


def test_token_and_basic_auth_together_accept_either(utils: WorkerUtils) -> None:
    with serve(utils, token="tok", basic_auth=("u", "p")) as client:
        assert client.get("/api/v1/stats", headers={"Authorization": "Bearer tok"}).is_success
        assert client.get("/api/v1/stats", headers=_basic("u", "p")).is_success
        assert client.get("/api/v1/stats").status_code == 401
        assert client.get("/").status_code == 401  # basic auth protects the page too


def test_read_only_mode(utils: WorkerUtils, jobs: Jobs) -> None:
    with serve(utils, allow_actions=False) as client:
        assert client.get("/api/v1/info").json()["allow_actions"] is False
        assert client.get("/api/v1/stats").status_code == 200
        for method, path, body in [
            ("POST", "/api/v1/jobs", {"task": "t"}),
            ("POST", f"/api/v1/jobs/{jobs.failed}/retry", {}),
            ("POST", "/api/v1/jobs/retry", {"all_failed": True}),
            ("POST", f"/api/v1/jobs/{jobs.ready}/reschedule", {"run_at": "2030-01-01T00:00Z"}),
            ("DELETE", f"/api/v1/jobs/{jobs.ready}", None),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "read_only"
        assert client.get(f"/api/v1/jobs/{jobs.ready}").json()["state"] == "ready"


def test_cross_site_requests_are_refused(client: httpx.Client, jobs: Jobs) -> None:
    # A form post from another site: not JSON, no custom header.
    form = client.post(
        f"/api/v1/jobs/{jobs.failed}/retry",
        content=b"x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 403 and form.json()["error"] == "csrf"
    foreign = {"Origin": "https://evil.example"}
    assert client.post("/api/v1/jobs", json={"task": "t"}, headers=foreign).status_code == 403
    assert client.delete(f"/api/v1/jobs/{jobs.ready}", headers=foreign).status_code == 403
    assert client.get(f"/api/v1/jobs/{jobs.ready}").json()["state"] == "ready"
    own = {"Origin": str(client.base_url).rstrip("/")}
    assert client.post("/api/v1/jobs", json={"task": "t"}, headers=own).status_code == 201
    header_only = client.post(
        f"/api/v1/jobs/{jobs.failed}/retry", headers={"X-Requested-With": "curl"}
    )
    assert header_only.status_code == 200


def test_host_names_other_than_loopback_are_refused(utils: WorkerUtils) -> None:
    with serve(utils, allowed_hosts=["localhost", "127.0.0.1", "::1"]) as client:
        assert client.get("/api/v1/info").status_code == 200
        rebound = client.get("/api/v1/info", headers={"Host": "attacker.example:8787"})
        assert rebound.status_code == 400 and rebound.json()["error"] == "bad_host"
        assert client.get("/", headers={"Host": "localhost:1234"}).status_code == 200


def test_security_headers(client: httpx.Client) -> None:
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert client.get("/api/v1/stats").headers["cache-control"] == "no-store"


def test_the_sampler_stops_with_the_server(utils: WorkerUtils) -> None:
    app = create_app(utils, sample_interval=0.1)
    sampler = app.state.dashboard.sampler
    with BackgroundServer(app) as server:
        wait_for(lambda: len(sampler.samples()) >= 2)
        assert httpx.get(server.url + "/api/v1/info").status_code == 200
    count = len(sampler.samples())
    time.sleep(0.4)
    assert len(sampler.samples()) == count


def test_a_role_that_may_only_read_gets_403_for_actions(db: TestDatabase, jobs: Jobs) -> None:
    from tests.reliability.helpers import login_role
    from tests.support import admin_connection

    with login_role(db, "gpy_dash_reader") as (role, dsn):
        with admin_connection() as conn:
            # The private tables have row-level security: only the owner, or a role that
            # bypasses it, sees their rows.
            conn.execute(sql.SQL("alter role {} bypassrls").format(sql.Identifier(role)))
        with db.connect() as conn:
            schema = sql.Identifier(db.schema)
            role_name = sql.Identifier(role)
            conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role_name))
            for kind in ("tables", "sequences"):
                conn.execute(
                    sql.SQL("grant select on all " + kind + " in schema {} to {}").format(
                        schema, role_name
                    )
                )
        with (
            WorkerUtils(dsn, schema=db.schema, run_migrations=False) as reader,
            serve(reader) as client,
        ):
            assert client.get("/api/v1/stats").json()["totals"]["failed"] == 1
            wait_for(lambda: client.get("/api/v1/metrics/history").json()["points"])
            assert client.get("/api/v1/metrics/history").json()["last_error"] is None
            refused = client.post(f"/api/v1/jobs/{jobs.failed}/retry", headers=JSON)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "forbidden_by_database"
            added = client.post("/api/v1/jobs", json={"task": "t"})
            assert added.status_code == 403, added.text
