"""Jobs whose task no worker serves are marked: status, jobs list, add-job, the JSON API.

Against a real database: with the worker registry in use (a real pool serving another
task), with it installed but unused, and without the side schema, where the verdict
rests on the jobs themselves. Over real HTTP for the dashboard's API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import WorkerUtils
from graphile_py.admin.inspector import Inspector
from graphile_py.admin.served import UNATTEMPTED_AFTER, Registry, Service
from graphile_py.cli import main
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase
from tests.support.side_rows import register_pool, side_identifier
from tests.support.workers import claim_like_a_worker, running_pool

NOT_VISIBLE = "no live graphile-py pool serves it; Node workers are not visible to graphile-py"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, (self.stdout, self.stderr)
        return json.loads(self.stdout)


def _cli(db: TestDatabase, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "-c", db.dsn, "-s", db.schema])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


def _ok(payload: Any, helpers: Any) -> None:
    pass


def _backdate(db: TestDatabase, task: str, seconds: float) -> None:
    """Make the ready jobs of ``task`` due ``seconds`` ago (they have waited that long)."""
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {s}._private_jobs set run_at = now() - make_interval(secs => %s)"
                " where task_id = (select id from {s}._private_tasks where identifier = %s)"
            ).format(s=sql.Identifier(db.schema)),
            (seconds, task),
        )


def _drop_side_schema(db: TestDatabase) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(side_identifier(db)))


def test_with_a_live_pool_serving_another_task(db: TestDatabase, utils: WorkerUtils) -> None:
    with running_pool(db, {"other": _ok}, poll_interval=0.5) as pool:
        # Scheduled, so the pool leaves it alone while we look.
        served = utils.add_job("other", run_at=_in_an_hour())
        stuck = utils.add_job("nobody_knows", {"n": 1})
        status = _cli(db, "status", "--json").json()
        assert status["registry"] == "in_use"
        assert status["unserved"] == ["nobody_knows"]
        by_task = {t["task"]: t["service"] for t in status["tasks"]}
        assert by_task["nobody_knows"] == {"status": "unserved", "pools": [], "note": NOT_VISIBLE}
        assert by_task["other"]["status"] == "served"
        assert by_task["other"]["pools"] == [pool.id]

        text = _cli(db, "status").stdout
        assert f"! Task 'nobody_knows' has 1 job ready: {NOT_VISIBLE}." in text
        row = next(line for line in text.splitlines() if line.startswith("nobody_knows"))
        assert row.split()[-1] == "NO"
        row = next(line for line in text.splitlines() if line.startswith("other"))
        assert row.split()[-2:] == ["1", "pool"]

        jobs = {j["id"]: j for j in _cli(db, "jobs", "list", "--json").json()}
        assert jobs[stuck.id]["unserved"] == NOT_VISIBLE
        assert jobs[served.id]["unserved"] is None
        listing = _cli(db, "jobs", "list").stdout
        lines = {line.split()[0]: line.split() for line in listing.splitlines()[1:] if line}
        assert lines[str(stuck.id)][1] == "ready*" and lines[str(served.id)][1] == "scheduled"
        assert f"* task 'nobody_knows': {NOT_VISIBLE}." in listing
        assert _cli(db, "jobs", "show", str(stuck.id), "--json").json()["unserved"] == NOT_VISIBLE
        shown = _cli(db, "jobs", "show", str(stuck.id)).stdout.splitlines()
        assert [line.split(None, 1) for line in shown if line.startswith("unserved")] == [
            ["unserved", NOT_VISIBLE]
        ]
    # The pool stopped: now nothing serves "other" either.
    status = _cli(db, "status", "--json").json()
    assert status["unserved"] == ["nobody_knows", "other"]


def test_a_job_held_by_a_worker_outside_the_registry_counts_as_served(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    register_pool(db, "pool-python")  # serves email and report
    utils.add_job("node_task")
    utils.add_job("node_task")
    claim_like_a_worker(db, "node_task", "node-pool-1")  # claims one of the two
    report = Inspector(utils)
    status = report.status()
    verdict = report.task_services(status.tasks).tasks["node_task"]
    assert verdict.service is Service.SERVED
    assert "outside the registry" in verdict.note
    records = report.list_jobs()
    services = report.job_services(records)
    assert [services.marks(r) for r in records] == [None, None]


def test_without_the_registry_the_jobs_tell_what_they_can(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    """Installed but unused (a Node-only database), then not installed at all."""
    for registry in (Registry.EMPTY, Registry.NOT_INSTALLED):
        if registry is Registry.NOT_INSTALLED:
            _drop_side_schema(db)
        with db.connect() as conn:
            conn.execute(sql.SQL("delete from {}._private_jobs").format(sql.Identifier(db.schema)))
        fresh = utils.add_job("fresh")
        old = utils.add_job("old")
        _backdate(db, "old", UNATTEMPTED_AFTER.total_seconds() + 60)
        tried = utils.add_job("tried", max_attempts=3)
        utils.permanently_fail_jobs([tried.id], "boom")  # attempted: a worker ran it before
        utils.add_job("tried")
        _backdate(db, "tried", 3600)

        status = _cli(db, "status", "--json").json()
        assert status["registry"] == registry.value
        services = {t["task"]: t["service"] for t in status["tasks"]}
        assert services["fresh"]["status"] == "unknown"
        assert services["tried"]["status"] == "unknown"
        assert services["old"]["status"] == "unattempted"
        assert "none of its jobs has ever been attempted" in services["old"]["note"]
        why = (
            "no graphile-py pool has registered in this database"
            if registry is Registry.EMPTY
            else "the worker registry is not installed (graphile-py migrate installs it)"
        )
        assert why in services["fresh"]["note"]
        assert status["unserved"] == ["old"]
        jobs = {j["id"]: j["unserved"] for j in _cli(db, "jobs", "list", "--json").json()}
        assert jobs[old.id] == services["old"]["note"]
        assert jobs[fresh.id] is None and jobs[tried.id] is None
        assert "! Task 'old' has 1 job ready: none of its jobs" in _cli(db, "status").stdout


def _warnings(result: Result) -> list[str]:
    # A pool running in this process logs to stderr too: keep only the command's lines.
    assert result.code == 0, (result.stdout, result.stderr)
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_add_job_warns_about_a_new_task_and_an_unserved_one(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    first = _cli(db, "add-job", "brand_new", "-p", '{"a": 1}')
    assert json.loads(first.stdout)["task_identifier"] == "brand_new"
    assert first.stderr == (
        "warning: task 'brand_new' is new to this database: no worker has registered it and"
        " no job was added for it before. Check its spelling; the job waits until a worker"
        " that knows it runs.\n"
    )  # and nothing about pools: none ever registered, so there is nothing to tell
    assert _cli(db, "add-job", "brand_new").stderr == ""

    with running_pool(db, {"served_task": _ok}, poll_interval=0.5):
        assert _warnings(_cli(db, "add-job", "served_task")) == []  # registered and served
        assert _warnings(_cli(db, "add-job", "brand_new")) == [
            f"warning: task 'brand_new': {NOT_VISIBLE}."
        ]
        both = _warnings(_cli(db, "add-job", "typo_tsak"))
        assert len(both) == 2
        assert "'typo_tsak' is new to this database" in both[0] and NOT_VISIBLE in both[1]

    # add-job migrates, so the registry comes back empty: again nothing to tell of pools.
    _drop_side_schema(db)
    assert _warnings(_cli(db, "add-job", "brand_new")) == []


def test_the_dashboard_api_marks_them(db: TestDatabase, utils: WorkerUtils) -> None:
    with (
        running_pool(db, {"other": _ok}, poll_interval=0.5) as pool,
        BackgroundServer(create_app(utils, sample_interval=0.5, allow_actions=True)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        stuck = utils.add_job("nobody_knows")
        utils.add_job("other", run_at=_in_an_hour())
        stats = client.get("/api/v1/stats").json()
        assert stats["unserved"] == ["nobody_knows"] and stats["registry"] == "in_use"
        cli = _cli(db, "status", "--json").json()  # the same shapes, a moment later
        assert [t["service"] for t in cli["tasks"]] == [t["service"] for t in stats["tasks"]]
        assert (cli["unserved"], cli["registry"]) == (stats["unserved"], stats["registry"])
        tasks = {t["task"]: t["service"]["status"] for t in client.get("/api/v1/tasks").json()}
        assert tasks == {"nobody_knows": "unserved", "other": "served"}
        jobs = client.get("/api/v1/jobs").json()["jobs"]
        assert [(j["id"], j["unserved"]) for j in jobs] == [
            (stuck.id + 1, None),
            (stuck.id, NOT_VISIBLE),
        ]
        assert client.get(f"/api/v1/jobs/{stuck.id}").json()["unserved"] == NOT_VISIBLE
        added = client.post("/api/v1/jobs", json={"task": "nobody_knows", "payload": {}})
        assert added.status_code == 201 and added.json()["unserved"] == NOT_VISIBLE
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        served = client.post("/api/v1/jobs", json={"task": "other", "run_at": later})
        assert served.status_code == 201 and served.json()["unserved"] is None
        assert stats["tasks"][1]["service"]["pools"] == [pool.id]
        document = client.get("/api/v1/openapi.json").json()
        schemas = document["components"]["schemas"]
        assert set(schemas["ServiceOut"]["properties"]) == {"status", "pools", "note"}
        assert "unserved" in schemas["JobOut"]["properties"]
        assert {"registry", "unserved"} <= set(schemas["StatsOut"]["properties"])


def _in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)
