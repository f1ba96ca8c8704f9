"""What operators see of the side schema: ``workers``, ``jobs history``, the timeline, replay.

States such as a lost pool or a job's three attempts are set up by writing the registry
and history tables directly (the pools and the history recording have their own tests);
the commands run in-process against a real database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import sql

from graphile_py import Inspector, WorkerUtils
from graphile_py.admin.history import HISTORY_OFF, HistoryFilter, Outcome
from graphile_py.admin.pools import PoolState
from graphile_py.cli import main
from graphile_py.db.side_schema import side_schema_for
from graphile_py.errors import DatabaseError, JobRejected
from graphile_py.pool.execution import error_summary
from tests.support import TestDatabase
from tests.support.side_rows import (
    ALIVE,
    record_attempt,
    record_sample_history,
    register_pool,
    side_identifier,
)
from tests.support.workers import claim_like_a_worker, jobs_rows, running_pool, wait_for

OVERDUE, LOST = "pool-overdue", "pool-lost"
OLD_LOST, STOPPED = "pool-old", "pool-stopped"
NODE = "node-pool-unregistered"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, (self.stdout, self.stderr)
        return json.loads(self.stdout)


def _cli(db: TestDatabase, command: str, *args: str) -> Result:
    result = CliRunner().invoke(main, [*command.split(), "-c", db.dsn, "-s", db.schema, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema, run_migrations=False) as utils:
        yield utils


# -- workers ----------------------------------------------------------------------------------


@pytest.fixture
def pools(db: TestDatabase, utils: WorkerUtils) -> int:
    """Five registered pools in every state, and a Node pool holding a lock; returns a job."""
    register_pool(db, ALIVE, succeeded=12, failed=3)
    register_pool(db, OVERDUE, heartbeat_ago=300)
    register_pool(db, LOST, heartbeat_ago=600, lost_ago=60)
    register_pool(db, OLD_LOST, heartbeat_ago=3 * 86400, lost_ago=2 * 86400)
    register_pool(db, STOPPED, stopped=True)
    utils.add_job("email", {"n": 1}, queue_name="serial")
    held = claim_like_a_worker(db, "email", ALIVE)
    utils.add_job("report")
    claim_like_a_worker(db, "report", NODE)
    return held


def test_workers_lists_live_and_recently_lost_pools(db: TestDatabase, pools: int) -> None:
    data = _cli(db, "workers", "--json").json()
    states = {pool["id"]: pool["state"] for pool in data["pools"]}
    assert states == {ALIVE: "alive", OVERDUE: "overdue", LOST: "lost"}
    assert [pool["id"] for pool in data["pools"]][-1] == LOST  # live pools come first
    alive = next(pool for pool in data["pools"] if pool["id"] == ALIVE)
    assert alive["running_jobs"] == 1 and alive["locked_queues"] == 1
    assert (alive["jobs_succeeded"], alive["jobs_failed"]) == (12, 3)
    assert alive["hostname"] == "host-" + ALIVE and alive["pid"] == 1234
    assert alive["tasks"] == ["email", "report"] and alive["concurrency"] == 4
    assert 0 <= alive["heartbeat_age_seconds"] < 30 and alive["heartbeat_timeout_seconds"] == 20
    lost = next(pool for pool in data["pools"] if pool["id"] == LOST)
    assert lost["lost_by"] == ALIVE and lost["jobs_rescued"] == 2 and lost["running_jobs"] == 0
    assert data["alive"] == 1
    assert [holder["pool_id"] for holder in data["unregistered"]] == [NODE]

    everything = _cli(db, "workers", "--all", "--json").json()
    assert {pool["id"]: pool["state"] for pool in everything["pools"]} == {
        **states,
        OLD_LOST: "lost",
        STOPPED: "stopped",
    }


def test_workers_table(db: TestDatabase, pools: int) -> None:
    result = _cli(db, "workers")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 pool alive at ")
    header = next(line for line in lines if line.startswith("pool "))
    assert header.split()[:6] == ["pool", "state", "host", "pid", "version", "jobs"]
    lost = next(line for line in lines if line.startswith(LOST))
    assert f"{ALIVE} at " in lost and "(2 jobs released)" in lost
    assert "without registering" in result.stdout and NODE in result.stdout
    assert STOPPED not in result.stdout


def test_workers_on_an_empty_registry(db: TestDatabase) -> None:
    result = _cli(db, "workers")
    assert result.code == 0 and "No registered worker pool is running." in result.stdout
    assert _cli(db, "workers", "--json").json()["pools"] == []


def test_without_the_side_schema_the_views_say_to_migrate(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    job = utils.add_job("email", {"n": 1}).id
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(side_identifier(db)))
    for command in ("workers", "jobs history", f"jobs replay {job + 1}"):
        result = _cli(db, command)
        assert result.code == 1, (command, result.stdout)
        assert f"the {side_schema_for(db.schema)} schema is not installed" in result.stderr
        assert "run graphile-py migrate" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(DatabaseError, match="not installed") as caught:
        Inspector(utils).workers()
    assert caught.value.sqlstate in {"3F000", "42P01"}
    # The job itself still shows (without a timeline), and replays from itself.
    shown = _cli(db, "jobs show", str(job), "--json").json()
    assert shown["id"] == job and shown["history"] == []
    assert _cli(db, "jobs replay", str(job), "--json").json()["source"] == "job"


# -- history and the timeline ----------------------------------------------------------------


@pytest.fixture
def history(db: TestDatabase) -> None:
    record_sample_history(db)


def _ids(db: TestDatabase, *args: str) -> list[tuple[int, str]]:
    data = _cli(db, "jobs history", "--json", *args).json()
    return [(attempt["job_id"], attempt["outcome"]) for attempt in data["attempts"]]


def test_history_filters_and_pages(db: TestDatabase, history: None) -> None:
    everything = _cli(db, "jobs history", "--json").json()
    assert everything["note"] is None and everything["next_before_id"] is None
    assert [(a["job_id"], a["attempt"]) for a in everything["attempts"]] == [
        (9, 1),
        (8, 1),
        (7, 3),
        (7, 2),
        (7, 1),
    ]
    first = everything["attempts"][2]
    assert first["error"] is None and first["pool_id"] == ALIVE
    assert first["duration_seconds"] == 1.5 and first["payload_stored"] is True
    assert _ids(db, "--task", "report") == [(9, "lost"), (8, "success")]
    assert _ids(db, "--queue", "reports", "--outcome", "success") == [(8, "success")]
    assert _ids(db, "--outcome", "failure") == [(7, "failure"), (7, "failure")]
    within_an_hour = [(9, "lost"), (7, "success"), (7, "failure"), (7, "failure")]
    assert _ids(db, "--since", "1h") == within_an_hour
    since = (datetime.now(UTC) - timedelta(seconds=150)).isoformat()
    assert _ids(db, "--since", since) == [(9, "lost"), (7, "success")]
    assert _ids(db, "--job", "7", "--outcome", "success") == [(7, "success")]
    page = _cli(db, "jobs history", "--json", "--limit", "2").json()
    assert page["next_before_id"] == page["attempts"][-1]["id"]
    rest = _ids(db, "--before-id", str(page["next_before_id"]))
    assert rest == [(7, "success"), (7, "failure"), (7, "failure")]

    table = _cli(db, "jobs history", "--task", "email").stdout.splitlines()
    assert table[0].split()[:6] == ["id", "job", "task", "queue", "attempt", "outcome"]
    assert "refused second line" in table[2] and "3/3" in table[1]
    assert _cli(db, "jobs history", "--task", "nobody").stdout.strip() == "No attempt matches."
    bad = _cli(db, "jobs history", "--since", "yesterday")
    assert bad.code == 2 and "'yesterday' is neither a duration" in bad.stderr


def test_history_off_says_so(db: TestDatabase, utils: WorkerUtils) -> None:
    data = _cli(db, "jobs history", "--json").json()
    assert data == {"attempts": [], "next_before_id": None, "note": HISTORY_OFF}
    assert "--history" in _cli(db, "jobs history").stdout
    page = Inspector(utils).history(HistoryFilter(outcome=Outcome.SUCCESS))
    assert (list(page.attempts), page.recorded) == ([], False)


def test_jobs_show_gives_the_timeline_of_a_job_and_of_one_that_is_gone(
    db: TestDatabase, utils: WorkerUtils, history: None
) -> None:
    gone = _cli(db, "jobs show", "7", "--json").json()
    assert gone["job_id"] == 7 and gone["exists"] is False
    assert [(a["attempt"], a["outcome"], a["error"]) for a in gone["attempts"]] == [
        (1, "failure", "timeout"),
        (2, "failure", "refused\nsecond line"),
        (3, "success", None),
    ]
    text = _cli(db, "jobs show", "7").stdout
    assert text.startswith("Job 7 no longer exists") and "refused\n" in text
    assert "#3/3  success" in text

    job = utils.add_job("email", {"to": "b"})
    record_attempt(db, job.id, "email", "failure", error="first try failed", finished_ago=5)
    shown = _cli(db, "jobs show", str(job.id), "--json").json()
    assert shown["state"] == "ready" and shown["payload"] == {"to": "b"}
    assert [a["error"] for a in shown["history"]] == ["first try failed"]
    assert "attempts recorded:" in _cli(db, "jobs show", str(job.id)).stdout
    missing = _cli(db, "jobs show", "987654")
    assert missing.code == 1 and missing.stderr.strip() == "Error: no job with id 987654"


# -- replay -----------------------------------------------------------------------------------


def test_replay_copies_a_live_job(db: TestDatabase, utils: WorkerUtils) -> None:
    job = utils.add_job(
        "email",
        {"to": "c", "n": [1, 2]},
        queue_name="mail",
        priority=5,
        max_attempts=7,
        flags=["slow", "eu"],
        job_key="only-once",
    )
    data = _cli(db, "jobs replay", str(job.id), "--json").json()
    assert data["replayed"] == job.id and data["source"] == "job" and data["defaulted"] == []
    new = data["job"]
    assert new["id"] != job.id and new["state"] == "ready"
    assert (new["task_identifier"], new["payload"], new["queue_name"]) == (
        "email",
        {"to": "c", "n": [1, 2]},
        "mail",
    )
    assert (new["priority"], new["max_attempts"], new["flags"]) == (5, 7, ["eu", "slow"])
    assert new["key"] is None  # a copy with the key would replace the original
    assert len(jobs_rows(db)) == 2


def test_replay_of_a_gone_job_uses_its_history(
    db: TestDatabase, utils: WorkerUtils, history: None
) -> None:
    result = _cli(db, "jobs replay", "7")
    assert result.code == 0, result.stderr
    assert "from its history" in result.stdout and "priority, flags" in result.stdout
    (row,) = jobs_rows(db)
    assert row["payload"] == {"to": "a"} and row["max_attempts"] == 3
    replay = Inspector(utils).replay(8)
    assert replay is not None and replay.source == "history"
    assert replay.job.queue_name == "reports" and replay.job.task_identifier == "report"
    assert replay.job.payload == {"m": 1} and replay.defaulted == ("priority", "flags")


def test_replay_refuses_a_payload_history_did_not_keep(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    record_attempt(db, 11, "email", "success", payload=None, payload_bytes=20_000)
    result = _cli(db, "jobs replay", "11")
    assert result.code == 1 and "did not keep its payload (20000 bytes" in result.stderr
    with pytest.raises(JobRejected, match="history_payload_limit"):
        Inspector(utils).replay(11)
    assert jobs_rows(db) == []
    nothing = _cli(db, "jobs replay", "12")
    assert nothing.code == 1 and "no job with id 12, and no recorded attempt" in nothing.stderr


def test_inspector_reads_pools(db: TestDatabase, utils: WorkerUtils, pools: int) -> None:
    report = Inspector(utils).workers()
    assert report.count(PoolState.OVERDUE) == 1 and report.count(PoolState.STOPPED) == 0
    assert [holder.pool_id for holder in report.unregistered] == [NODE]


# -- with a real pool -------------------------------------------------------------------------


def test_a_real_pools_attempts_their_timeline_and_a_replay(
    db: TestDatabase, utils: WorkerUtils
) -> None:
    runs: list[dict[str, Any]] = []

    def flaky(payload: Any, helpers: Any) -> None:
        runs.append(payload)
        if len(runs) <= 2:
            raise RuntimeError(f"attempt {len(runs)} failed")

    def failures(n: int) -> bool:
        rows = jobs_rows(db)
        return len(runs) == n and bool(rows) and rows[0]["locked_at"] is None

    job = utils.add_job("flaky", {"to": "ops"}, max_attempts=5, priority=2)
    with running_pool(db, {"flaky": flaky}, history=True, poll_interval=0.2) as pool:
        for n in (1, 2):
            wait_for(lambda n=n: failures(n), timeout=20)
            utils.reschedule_jobs([job.id], run_at=datetime.now(UTC))  # skip the backoff
        wait_for(lambda: len(runs) == 3 and not jobs_rows(db), timeout=20)

        shown = _cli(db, "jobs show", str(job.id), "--json").json()
        assert shown["exists"] is False
        assert [
            (a["attempt"], a["outcome"], a["error"] and error_summary(a["error"]))
            for a in shown["attempts"]
        ] == [
            (1, "failure", "attempt 1 failed"),
            (2, "failure", "attempt 2 failed"),
            (3, "success", None),
        ]
        assert {a["pool_id"] for a in shown["attempts"]} == {pool.id}
        history = _cli(db, "jobs history", "--task", "flaky", "--json").json()
        assert [a["outcome"] for a in history["attempts"]] == ["success", "failure", "failure"]
        assert pool.id in _cli(db, "workers").stdout

        replayed = _cli(db, "jobs replay", str(job.id), "--json").json()
        assert replayed["source"] == "history" and replayed["job"]["payload"] == {"to": "ops"}
        wait_for(lambda: len(runs) == 4, timeout=20)
    assert runs == [{"to": "ops"}] * 4
