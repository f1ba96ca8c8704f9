"""Admin utilities and job keys, compared between graphile-py and Node graphile-worker 0.18.0.

1. Admin utilities across runtimes. A real worker pool of one runtime holds two jobs (a
   task that blocks until the test releases it). The other runtime's admin utilities
   then run one fixed list of operations: complete, permanently fail, reschedule and
   remove_job by key, each aimed at the held jobs and at idle ones; then
   force_unlock_workers with the holder's pool id. Both directions must give the rows
   that spec §5 describes, and so the same rows: held jobs (locked less than 4 hours
   ago) are skipped, except that remove_job retires a held keyed job; idle jobs are
   acted on; force_unlock frees the jobs and the queue; and the holder's own
   completion still deletes its jobs by id once the task ends (spec §3.6).
2. Job keys. One sequence of add_job/add_jobs calls (with a few SQL updates in between
   that make a job failed, locked or permanently failed) runs through Node's
   ``makeWorkerUtils()`` helpers on one fresh database and through
   ``graphile_py.WorkerUtils`` on another. The returned jobs and the stored rows must
   match, covering every row of the §4.4 table, batch payload merging,
   ``job_key_preserve_run_at`` and the "falsy" mappings of §4.5. A few differences are
   deliberate: the last test states each one and says why.

The Node side is ``node/admin_driver.mjs``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from graphile_py import JobSpec, WorkerUtils
from graphile_py.errors import GraphileError, InvalidJobKeyMode, JobRejected
from graphile_py.jobs import Job
from graphile_py.tasks import JobHelpers
from tests.interop.test_jobs_cross_runtime import Node, NodeProcess, python_pool, wait_until
from tests.support import TestDatabase

pytestmark = pytest.mark.node

DRIVER = Path(__file__).parent / "node" / "admin_driver.mjs"
NODE_TIMEOUT = 30.0
POOL_ID = re.compile(r"^pool-[0-9a-f]{18}$")

Op = dict[str, Any]


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Explicit run_at values used by the sequences (whole milliseconds: JS Dates have no more).
T1 = "2031-01-01T00:00:00.000Z"
T2 = "2031-02-01T00:00:00.000Z"
T3 = "2031-03-01T00:00:00.000Z"
T4 = "2030-06-01T12:34:56.789Z"
EXPLICIT = {iso(t) for t in (T1, T2, T3, T4)}
FAKE_POOL = "pool-0123456789abcdef01"


# -- running the same operations in either runtime ------------------------------------------


class NodeRunner(Node):
    """Starts ``admin_driver.mjs`` against one database."""

    def __init__(self, package: Path, db: TestDatabase, directory: Path) -> None:
        super().__init__(package, db, directory, DRIVER)

    def run_ops(self, ops: Sequence[Op]) -> list[dict[str, Any]]:
        """Run ``ops`` through makeWorkerUtils(); one {"ok": ...} or {"error": ...} each."""
        process = self.start({"mode": "utils", "ops": list(ops)})
        try:
            process.finish(timeout=NODE_TIMEOUT)
            line = process.wait_for_line("RESULTS ", 1)
        finally:
            process.close()
            process.kill()
        results: list[dict[str, Any]] = json.loads(line.removeprefix("RESULTS "))
        assert len(results) == len(ops)
        return results

    @contextmanager
    def pool(self, concurrency: int) -> Iterator[NodeProcess]:
        """A running Node pool with the blocking task ``block``; always stopped on exit."""
        process = self.start({"mode": "run", "concurrency": concurrency, "pollInterval": 200})
        try:
            process.wait_for_line("READY", NODE_TIMEOUT)
            yield process
        finally:
            # Closing stdin releases every waiting task and stops the runner gracefully.
            process.close()
            with suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=15)
            process.kill()


def run_python_ops(utils: WorkerUtils, ops: Sequence[Op]) -> list[dict[str, Any]]:
    """The same operations through graphile-py, mapped option for option."""
    results: list[dict[str, Any]] = []
    for op in ops:
        try:
            results.append({"ok": _python_op(utils, op)})
        except GraphileError as exc:
            results.append(
                {
                    "error": {
                        "message": str(exc),
                        "code": exc.sqlstate,
                        "constraint": exc.constraint,
                        "type": type(exc).__name__,
                    }
                }
            )
    return results


_OPTION_NAMES = {
    "queueName": "queue_name",
    "runAt": "run_at",
    "maxAttempts": "max_attempts",
    "jobKey": "job_key",
    "jobKeyMode": "job_key_mode",
    "priority": "priority",
    "flags": "flags",
    "attempts": "attempts",
}


def _options(spec: Mapping[str, Any]) -> dict[str, Any]:
    options = {}
    for name, value in spec.items():
        if name not in _OPTION_NAMES:
            continue
        options[_OPTION_NAMES[name]] = (
            iso(value) if name == "runAt" and isinstance(value, str) else value
        )
    return options


def _python_op(utils: WorkerUtils, op: Op) -> Any:
    kind = op["op"]
    if kind == "addJob":
        return utils.add_job(op["identifier"], op.get("payload"), **_options(op.get("spec", {})))
    if kind == "addJobs":
        specs = [
            JobSpec(spec["identifier"], spec.get("payload"), **_options(spec))
            for spec in op["specs"]
        ]
        return utils.add_jobs(specs, job_key_preserve_run_at=bool(op.get("preserveRunAt")))
    if kind == "completeJobs":
        return utils.complete_jobs(op["ids"])
    if kind == "permanentlyFailJobs":
        return utils.permanently_fail_jobs(op["ids"], op.get("reason"))
    if kind == "rescheduleJobs":
        return utils.reschedule_jobs(op["ids"], **_options(op.get("options", {})))
    if kind == "removeJob":
        job = utils.remove_job(op["key"])
        return [] if job is None else [job]
    if kind == "forceUnlockWorkers":
        utils.force_unlock_workers(op["ids"])
        return None
    if kind == "cleanup":
        utils.cleanup(op["tasks"])
        return None
    if kind == "sql":
        with utils.connection() as conn:
            conn.execute(op["text"])
        return []  # as node-postgres gives for an UPDATE
    raise AssertionError(f"unknown op {kind}")


def remove_job_op(db: TestDatabase, key: str) -> Op:
    """remove_job by key; Node 0.18 has no JS wrapper for it, so Node calls the SQL."""
    return {"op": "removeJob", "key": key, "schema": db.schema}


def node_ops(ops: Sequence[Op]) -> list[Op]:
    """Ops as the Node driver takes them (removeJob becomes the SQL function call)."""
    translated = []
    for op in ops:
        if op["op"] == "removeJob":
            schema = '"' + op["schema"].replace('"', '""') + '"'
            translated.append(
                {
                    "op": "sql",
                    "text": f"select * from {schema}.remove_job($1::text) where id is not null",
                    "params": [op["key"]],
                }
            )
        else:
            translated.append(op)
    return translated


# -- normalising what came back ----------------------------------------------------------


def returned_jobs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs an op returned, from either runtime, as plain dicts with int ids."""
    value = result["ok"]
    items = value if isinstance(value, list) else [value]
    jobs = []
    for item in items:
        if isinstance(item, Job):
            row = {
                "id": item.id,
                "revision": item.revision,
                "key": item.key,
                "attempts": item.attempts,
                "max_attempts": item.max_attempts,
                "priority": item.priority,
                "payload": item.payload,
                "last_error": item.last_error,
                "locked_by": item.locked_by,
                "locked": item.locked_at is not None,
                "run_at": item.run_at,
                "flags": dict(item.flags) if item.flags is not None else None,
                "task_identifier": item.task_identifier,
            }
        else:
            row = {
                "id": int(item["id"]),
                "revision": item["revision"],
                "key": item["key"],
                "attempts": item["attempts"],
                "max_attempts": item["max_attempts"],
                "priority": item["priority"],
                "payload": item["payload"],
                "last_error": item["last_error"],
                "locked_by": item["locked_by"],
                "locked": item["locked_at"] is not None,
                "run_at": iso(item["run_at"]),
                "flags": item["flags"],
                "task_identifier": item.get("task_identifier"),
            }
        jobs.append(row)
    return jobs


def comparable_results(
    ops: Sequence[Op], results: Sequence[dict[str, Any]], ranks: Mapping[int, int]
) -> list[Any]:
    """Per op: "error", or the returned jobs with ids as ranks and clock times blurred.

    Node's admin functions return bare rows; graphile-py's add the task identifier, so
    it is compared for the add operations only.
    """
    out: list[Any] = []
    for op, result in zip(ops, results, strict=True):
        if "error" in result:
            out.append("error")
        elif result["ok"] is None:
            out.append(None)
        else:
            jobs = []
            for returned in returned_jobs(result):
                job = {**returned, "id": ranks[returned["id"]]}
                job["run_at"] = job["run_at"].isoformat() if job["run_at"] in EXPLICIT else "clock"
                if op["op"] not in {"addJob", "addJobs"}:
                    del job["task_identifier"]
                jobs.append(job)
            out.append(sorted(jobs, key=lambda job: job["id"]))
    return out


@dataclass
class Snapshot:
    ids: list[int]
    jobs: list[dict[str, Any]]
    queues: list[tuple[str, str | None, bool]]
    tasks: list[str]
    raw: list[dict[str, Any]] = field(repr=False)

    @property
    def ranks(self) -> dict[int, int]:
        return {job_id: rank for rank, job_id in enumerate(self.ids)}

    def by_key(self, key: str) -> dict[str, Any]:
        [row] = [row for row in self.jobs if row["key"] == key]
        return row


def snapshot(db: TestDatabase) -> Snapshot:
    """Every job row with names for ids, ids as ranks and the clock's times as relations."""
    s = sql.Identifier(db.schema)
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        raw = cur.execute(
            sql.SQL(
                "select j.id, t.identifier as task, q.queue_name, j.payload::text as payload,"
                " j.priority, j.run_at, j.attempts, j.max_attempts, j.last_error,"
                " j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision,"
                " j.flags::text as flags, j.is_available"
                " from {s}._private_jobs j join {s}._private_tasks t on t.id = j.task_id"
                " left join {s}._private_job_queues q on q.id = j.job_queue_id"
                " order by j.id"
            ).format(s=s)
        ).fetchall()
        queues = [
            (row["queue_name"], row["locked_by"], row["locked_at"] is not None)
            for row in cur.execute(
                sql.SQL("select * from {s}._private_job_queues order by queue_name").format(s=s)
            )
        ]
        tasks = [
            row["identifier"]
            for row in cur.execute(
                sql.SQL("select identifier from {s}._private_tasks order by identifier").format(s=s)
            )
        ]
    jobs = []
    for rank, row in enumerate(raw):
        job = dict(row)
        job["id"] = rank
        job["run_at"] = _relative(row["run_at"], row)
        job["created_at"] = "set"
        job["updated_at"] = "=created_at" if row["updated_at"] == row["created_at"] else "later"
        job["locked_at"] = row["locked_at"] is not None
        jobs.append(job)
    return Snapshot([row["id"] for row in raw], jobs, queues, tasks, raw)


def _relative(value: datetime, row: Mapping[str, Any]) -> str:
    if value in EXPLICIT:
        return value.astimezone(UTC).isoformat()
    if value == row["created_at"]:
        return "=created_at"
    if value == row["updated_at"]:
        return "=updated_at"
    return "other"


def run_both(
    node_worker: Path,
    node_db: TestDatabase,
    python_db: TestDatabase,
    tmp_path: Path,
    ops: Sequence[Op],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    node_results = NodeRunner(node_worker, node_db, tmp_path / "node").run_ops(node_ops(ops))
    with WorkerUtils(python_db.dsn, schema=python_db.schema) as utils:
        python_results = run_python_ops(utils, ops)
    return node_results, python_results


def sql_op(db: TestDatabase, text: str) -> Op:
    """A SQL statement for both runtimes; ``{S}`` is the quoted worker schema."""
    return {"op": "sql", "text": text.replace("{S}", '"' + db.schema.replace('"', '""') + '"')}


def add(identifier: str, payload: Any = None, /, **spec: Any) -> Op:
    op: Op = {"op": "addJob", "identifier": identifier, "spec": spec}
    if payload is not None:
        op["payload"] = payload
    return op


# -- 1. Admin utilities on jobs held by the other runtime's pool ------------------------------


@dataclass
class AdminFixture:
    a: int  # held, in queue "admin-q", key "key-a"
    b: int  # held, no queue, no key
    u1: int  # idle: completed
    u2: int  # idle: permanently failed
    u3: int  # idle: rescheduled
    u4: int  # idle, key "key-u4": removed


def add_admin_jobs(db: TestDatabase) -> AdminFixture:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        a = utils.add_job("block", {"job": "A"}, queue_name="admin-q", job_key="key-a")
        b = utils.add_job("block", {"job": "B"})
        idle = [utils.add_job("idle", {"job": f"U{i}"}) for i in range(1, 4)]
        u4 = utils.add_job("idle", {"job": "U4"}, job_key="key-u4")
    u1, u2, u3 = (job.id for job in idle)
    return AdminFixture(a.id, b.id, u1, u2, u3, u4.id)


def job_rows(db: TestDatabase) -> dict[int, dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL("select * from {}._private_jobs order by id").format(sql.Identifier(db.schema))
        ).fetchall()
    return {row["id"]: row for row in rows}


def queue_lock(db: TestDatabase, name: str) -> tuple[str | None, bool]:
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL(
                "select locked_by, locked_at is not null from {}._private_job_queues"
                " where queue_name = %s"
            ).format(sql.Identifier(db.schema)),
            (name,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def lock_holders(db: TestDatabase) -> list[tuple[str, int, int]]:
    with WorkerUtils(db.dsn, schema=db.schema, run_migrations=False) as utils:
        return [(h.pool_id, h.jobs, h.queues) for h in utils.lock_holders()]


def admin_phase_one(db: TestDatabase, f: AdminFixture) -> list[Op]:
    return [
        {"op": "completeJobs", "ids": [f.a, f.b, f.u1]},
        {"op": "permanentlyFailJobs", "ids": [f.a, f.b, f.u2], "reason": "given up by hand"},
        {
            "op": "rescheduleJobs",
            "ids": [f.a, f.b, f.u3],
            "options": {"runAt": T1, "priority": 7, "attempts": 3, "maxAttempts": 11},
        },
        remove_job_op(db, "key-a"),
        remove_job_op(db, "key-u4"),
        remove_job_op(db, "no-such-key"),
    ]


def check_admin_scenario(
    db: TestDatabase,
    f: AdminFixture,
    pool_id: str,
    admin: Callable[[list[Op]], list[dict[str, Any]]],
    release: Callable[[int], None],
) -> None:
    """The shared scenario: ``pool_id`` holds A and B; ``admin`` is the other runtime."""
    before = job_rows(db)
    for held in (f.a, f.b):
        assert before[held]["locked_by"] == pool_id and before[held]["locked_at"] is not None
        assert before[held]["attempts"] == 1
    assert queue_lock(db, "admin-q") == (pool_id, True)
    assert lock_holders(db) == [(pool_id, 2, 1)]

    results = admin(admin_phase_one(db, f))
    assert all("error" not in r for r in results), results
    ids = [[job["id"] for job in returned_jobs(r)] for r in results]
    # Held jobs are skipped by complete/fail/reschedule; idle ones are acted on.
    assert ids == [[f.u1], [f.u2], [f.u3], [f.a], [f.u4], []]
    [retired] = returned_jobs(results[3])
    assert retired["key"] is None and retired["attempts"] == 25
    assert retired["locked_by"] == pool_id and retired["locked"]

    after = job_rows(db)
    assert set(after) == {f.a, f.b, f.u2, f.u3}, "complete_jobs/remove_job deleted the wrong rows"
    # B is untouched by all of it.
    assert after[f.b] == before[f.b]
    # remove_job on a held keyed job does not delete it: it retires it (spec §5): no key,
    # no retries left, still held by the pool.
    changed = {k for k in after[f.a] if after[f.a][k] != before[f.a][k]}
    assert changed == {"key", "attempts", "updated_at"}, changed
    assert after[f.a]["key"] is None and after[f.a]["attempts"] == after[f.a]["max_attempts"]
    assert after[f.a]["locked_by"] == pool_id
    # The idle ones were acted on.
    assert after[f.u2]["attempts"] == after[f.u2]["max_attempts"] == 25
    assert after[f.u2]["last_error"] == "given up by hand"
    u3 = after[f.u3]
    assert (u3["run_at"], u3["priority"], u3["attempts"], u3["max_attempts"]) == (
        iso(T1),
        7,
        3,
        11,
    )
    assert u3["last_error"] is None and u3["updated_at"] > before[f.u3]["updated_at"]
    assert queue_lock(db, "admin-q") == (pool_id, True)
    assert lock_holders(db) == [(pool_id, 2, 1)]

    # Another pool's id changes nothing; the holder's id frees its jobs and its queue.
    assert admin([{"op": "forceUnlockWorkers", "ids": [FAKE_POOL]}]) == [{"ok": None}]
    assert job_rows(db) == after
    assert admin([{"op": "forceUnlockWorkers", "ids": [pool_id]}]) == [{"ok": None}]
    unlocked = job_rows(db)
    for held in (f.a, f.b):
        assert unlocked[held]["locked_by"] is None and unlocked[held]["locked_at"] is None
        others = {k for k in unlocked[held] if unlocked[held][k] != after[held][k]}
        assert others - {"is_available"} == {"locked_by", "locked_at"}, others
    # B can run again (attempts 1 of 25); A, retired by remove_job, cannot.
    assert (unlocked[f.a]["is_available"], unlocked[f.b]["is_available"]) == (False, True)
    assert queue_lock(db, "admin-q") == (None, False)
    assert lock_holders(db) == []

    # The pool still completes its jobs by id: both rows go. B first: it is claimable
    # again now, and the worker that finishes A would otherwise pick it up.
    release(f.b)
    wait_until(lambda: f.b not in job_rows(db), 10, "the pool's completion to delete B")
    release(f.a)
    wait_until(lambda: f.a not in job_rows(db), 10, "the pool's completion to delete A")
    final = job_rows(db)
    assert final == {f.u2: after[f.u2], f.u3: after[f.u3]}
    assert queue_lock(db, "admin-q") == (None, False)
    assert lock_holders(db) == []

    # cleanup: the permanently failed job and the now unused queue go.
    cleanup = {"op": "cleanup", "tasks": ["DELETE_PERMAFAILED_JOBS", "GC_JOB_QUEUES"]}
    assert admin([cleanup]) == [{"ok": None}]
    assert job_rows(db) == {f.u3: after[f.u3]}
    with db.connect() as conn:
        queues = conn.execute(
            sql.SQL("select count(*) from {}._private_job_queues").format(sql.Identifier(db.schema))
        ).fetchone()
    assert queues == (0,)


def test_python_admin_on_jobs_held_by_a_node_pool(
    node_worker: Path, db: TestDatabase, tmp_path: Path
) -> None:
    f = add_admin_jobs(db)
    runner = NodeRunner(node_worker, db, tmp_path / "node")
    with runner.pool(concurrency=2) as pool, WorkerUtils(db.dsn, schema=db.schema) as utils:

        def started() -> set[int]:
            lines = pool.output().splitlines()
            return {int(line.split()[1]) for line in lines if line.startswith("STARTED ")}

        wait_until(lambda: started() >= {f.a, f.b}, NODE_TIMEOUT, "Node to start A and B")
        pool_id = job_rows(db)[f.a]["locked_by"]
        assert POOL_ID.match(pool_id), pool_id

        def release(job_id: int) -> None:
            assert pool.proc.stdin is not None
            pool.proc.stdin.write(f"release {job_id}\n".encode())
            pool.proc.stdin.flush()

        check_admin_scenario(db, f, pool_id, lambda ops: run_python_ops(utils, ops), release)
        assert {line for line in pool.output().splitlines() if line.startswith("FINISHED")} >= {
            f"FINISHED {f.a}",
            f"FINISHED {f.b}",
        }


class Blocker:
    """A Python task that blocks on its first run of each job until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[int, int] = {}
        self.gates: dict[int, threading.Event] = {}
        self.all_released = False

    def gate(self, job_id: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(job_id, threading.Event())

    def __call__(self, payload: Any, helpers: JobHelpers) -> None:
        job_id = helpers.job.id
        with self.lock:
            first = job_id not in self.started
            self.started[job_id] = self.started.get(job_id, 0) + 1
            if self.all_released:
                return
        if first:
            assert self.gate(job_id).wait(30), f"job {job_id} was never released"

    def release_all(self) -> None:
        with self.lock:
            self.all_released = True
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()


def test_node_admin_on_jobs_held_by_a_python_pool(
    node_worker: Path, db: TestDatabase, tmp_path: Path
) -> None:
    f = add_admin_jobs(db)
    runner = NodeRunner(node_worker, db, tmp_path / "node")
    blocker = Blocker()
    with python_pool(db, {"block": blocker}, concurrency=2, poll_interval=0.2) as pool:
        try:
            wait_until(lambda: set(blocker.started) >= {f.a, f.b}, 10, "Python to start A and B")
            assert POOL_ID.match(pool.id), pool.id

            def admin(ops: list[Op]) -> list[dict[str, Any]]:
                return runner.run_ops(node_ops(ops))

            check_admin_scenario(db, f, pool.id, admin, lambda job_id: blocker.gate(job_id).set())
        finally:
            blocker.release_all()
    assert blocker.started[f.a] == 1


# -- 2. Job keys: the same calls from both sides give the same rows -------------------------


def key_table_ops(db: TestDatabase) -> list[Op]:
    """Every row of the §4.4 table, batch merging and add_jobs' preserve_run_at."""
    lock = (
        "update {S}._private_jobs set locked_at = now(), locked_by = '" + FAKE_POOL + "',"
        " attempts = attempts + 1 where key = '%s'"
    )
    return [
        # No job with the key: a new job, revision 0.
        add(
            "t_new",
            {"step": 1},
            jobKey="k-main",
            queueName="q-one",
            runAt=T1,
            maxAttempts=5,
            priority=3,
            flags=["f1", "f2"],
        ),
        # replace: same id, every field replaced (no queue, no flags: NULL), run_at new.
        add("t_other", {"step": 2}, jobKey="k-main", runAt=T2, maxAttempts=7, priority=-4),
        # preserve_run_at: run_at kept, the rest replaced (defaults for the missing ones).
        add(
            "t_new",
            {"step": 3},
            jobKey="k-main",
            jobKeyMode="preserve_run_at",
            runAt=T3,
            queueName="q-two",
        ),
        # replace without run_at: due now.
        add("t_new", {"step": 4, "ünï": "cödé 🐘"}, jobKey="k-main", jobKeyMode="replace"),
        # preserve_run_at with a new key: a new job due now.
        add("t_new", {"step": 5}, jobKey="k-fresh", jobKeyMode="preserve_run_at"),
        # unsafe_dedupe: the first call adds, the second only bumps revision and updated_at.
        add(
            "t_dd", {"d": 1}, jobKey="k-dd", jobKeyMode="unsafe_dedupe", runAt=T1, queueName="q-dd"
        ),
        add(
            "t_other",
            {"d": 2},
            jobKey="k-dd",
            jobKeyMode="unsafe_dedupe",
            runAt=T2,
            priority=9,
            flags=["x"],
        ),
        # Failed, awaiting retry: same id, attempts 0, last_error gone, and run_at takes
        # the new value even in preserve_run_at mode.
        add("t_new", {"r": 1}, jobKey="k-retry", runAt=T1, maxAttempts=4),
        sql_op(
            db,
            "update {S}._private_jobs set attempts = 1, last_error = 'boom',"
            f" run_at = '{T4}' where key = 'k-retry'",
        ),
        add("t_new", {"r": 2}, jobKey="k-retry", jobKeyMode="preserve_run_at", runAt=T2),
        add("t_new", {"r": 3}, jobKey="k-retry2", runAt=T1),
        sql_op(
            db,
            "update {S}._private_jobs set attempts = 2, last_error = 'bang' where key = 'k-retry2'",
        ),
        add("t_new", {"r": 4}, jobKey="k-retry2"),
        # Locked (running): the old job is retired (no key, attempts = max_attempts, still
        # locked), and a new job is created, in either mode.
        add("t_new", {"l": 1}, jobKey="k-locked", queueName="q-locked"),
        sql_op(db, lock % "k-locked"),
        sql_op(
            db,
            "update {S}._private_job_queues set locked_at = now(), locked_by = '"
            + FAKE_POOL
            + "' where queue_name = 'q-locked'",
        ),
        add("t_new", {"l": 2}, jobKey="k-locked", queueName="q-locked"),
        add("t_new", {"l": 3}, jobKey="k-locked2", runAt=T1),
        sql_op(db, lock % "k-locked2"),
        add("t_new", {"l": 4}, jobKey="k-locked2", jobKeyMode="preserve_run_at", runAt=T3),
        # Permanently failed: retired and replaced by a new row too.
        add("t_new", {"p": 1}, jobKey="k-perm", maxAttempts=3, runAt=T1),
        sql_op(
            db,
            "update {S}._private_jobs set attempts = 3, last_error = 'dead' where key = 'k-perm'",
        ),
        add("t_new", {"p": 2}, jobKey="k-perm", jobKeyMode="preserve_run_at", runAt=T2),
        # unsafe_dedupe on a locked and on a permanently failed job: revision bump only.
        add("t_dd", {"ld": 1}, jobKey="k-ldd"),
        sql_op(db, lock % "k-ldd"),
        add("t_dd", {"ld": 2}, jobKey="k-ldd", jobKeyMode="unsafe_dedupe"),
        add("t_dd", {"pd": 1}, jobKey="k-pdd", maxAttempts=1),
        sql_op(db, "update {S}._private_jobs set attempts = 1 where key = 'k-pdd'"),
        add("t_dd", {"pd": 2}, jobKey="k-pdd", jobKeyMode="unsafe_dedupe"),
        # Batch jobs: arrays accumulate (re-serialised by jsonb); a non-array replaces.
        add("t_batch", [{"a": 1}], jobKey="k-batch"),
        add("t_batch", [{"a": 2}], jobKey="k-batch"),
        add("t_batch", [{"a": 3}, "x"], jobKey="k-batch", jobKeyMode="preserve_run_at", runAt=T3),
        add("t_batch", [1], jobKey="k-swap"),
        add("t_batch", {"not": "an array"}, jobKey="k-swap"),
        add("t_batch", [2], jobKey="k-swap"),
        # add_jobs, without and with job_key_preserve_run_at.
        {
            "op": "addJobs",
            "specs": [
                {"identifier": "t_many", "payload": [1], "jobKey": "k-many", "runAt": T1},
                {
                    "identifier": "t_many",
                    "payload": {"n": 1},
                    "queueName": "q-many",
                    "priority": -2,
                    "flags": ["y", "y", "z"],
                    "maxAttempts": 9,
                },
            ],
            "preserveRunAt": False,
        },
        {
            "op": "addJobs",
            "specs": [
                {"identifier": "t_many", "payload": [2], "jobKey": "k-many", "runAt": T2},
                {"identifier": "t_many2", "payload": {"n": 2}, "jobKey": "k-many2", "runAt": T2},
            ],
            "preserveRunAt": True,
        },
        {
            "op": "addJobs",
            "specs": [{"identifier": "t_many", "payload": [3], "jobKey": "k-many", "runAt": T3}],
            "preserveRunAt": False,
        },
        sql_op(db, "update {S}._private_jobs set attempts = 2 where key = 'k-many2'"),
        {
            "op": "addJobs",
            "specs": [
                {"identifier": "t_many2", "payload": {"n": 3}, "jobKey": "k-many2", "runAt": T3}
            ],
            "preserveRunAt": True,
        },
        # Refused by both: one key twice in one add_jobs call; an unknown mode with a key.
        {
            "op": "addJobs",
            "specs": [
                {"identifier": "t_many", "payload": 1, "jobKey": "k-twice"},
                {"identifier": "t_many", "payload": 2, "jobKey": "k-twice"},
            ],
        },
        add("t_new", {"bad": 1}, jobKey="k-main", jobKeyMode="bogus"),
    ]


def assert_same(node: Snapshot, python: Snapshot) -> None:
    assert len(node.jobs) == len(python.jobs), (node.jobs, python.jobs)
    for n, p in zip(node.jobs, python.jobs, strict=True):
        assert n == p, f"row {n['id']} differs:\n node:   {n}\n python: {p}"
    assert node.queues == python.queues
    assert node.tasks == python.tasks


def test_job_key_table_gives_identical_rows(
    node_worker: Path, make_db: Callable[..., TestDatabase], template_db: str, tmp_path: Path
) -> None:
    node_db, python_db = make_db(template=template_db), make_db(template=template_db)
    ops = key_table_ops(node_db)
    assert key_table_ops(python_db) == ops  # same schema: the very same statements
    node_results, python_results = run_both(node_worker, node_db, python_db, tmp_path, ops)
    node_snap, python_snap = snapshot(node_db), snapshot(python_db)

    # Only the two deliberately bad calls at the end fail, on both sides.
    node_failed = [i for i, r in enumerate(node_results) if "error" in r]
    python_failed = [i for i, r in enumerate(python_results) if "error" in r]
    assert node_failed == python_failed == [len(ops) - 2, len(ops) - 1], (
        node_results,
        python_results,
    )
    assert node_results[-2]["error"]["code"] == python_results[-2]["error"]["code"] == "21000"
    assert node_results[-1]["error"]["code"] == "GWBKM"
    assert python_results[-1]["error"]["type"] == InvalidJobKeyMode.__name__

    node_view = comparable_results(ops, node_results, node_snap.ranks)
    python_view = comparable_results(ops, python_results, python_snap.ranks)
    # Deliberate difference: when unsafe_dedupe returns the existing job (step 6), Node's
    # helper labels it with the call's task; graphile-py reports the row's own task.
    assert node_view[6][0]["task_identifier"] == "t_other"
    assert python_view[6][0]["task_identifier"] == "t_dd"
    python_view[6][0]["task_identifier"] = "t_other"
    assert node_view == python_view
    assert_same(node_snap, python_snap)

    # And the rows are the ones §4.4 describes (checked once: they are identical).
    s = python_snap
    main = s.by_key("k-main")
    assert (main["task"], main["queue_name"], main["revision"]) == ("t_new", None, 3)
    assert (main["run_at"], main["updated_at"]) == ("=updated_at", "later")
    assert (main["max_attempts"], main["priority"], main["flags"]) == (25, 0, None)
    assert json.loads(main["payload"]) == {"step": 4, "ünï": "cödé 🐘"}
    step3 = comparable_results(ops, python_results, s.ranks)[2][0]
    assert (step3["run_at"], step3["revision"]) == (iso(T2).isoformat(), 2)  # run_at kept
    dd = s.by_key("k-dd")
    assert (dd["task"], dd["payload"], dd["revision"], dd["queue_name"]) == (
        "t_dd",
        '{"d":1}',
        1,
        "q-dd",
    )
    assert (dd["run_at"], dd["priority"], dd["flags"]) == (iso(T1).isoformat(), 0, None)
    retry = s.by_key("k-retry")
    assert (retry["attempts"], retry["last_error"], retry["revision"]) == (0, None, 1)
    assert retry["run_at"] == iso(T2).isoformat()  # new value despite preserve_run_at
    assert (s.by_key("k-retry2")["attempts"], s.by_key("k-retry2")["run_at"]) == (0, "=updated_at")
    retired = [row for row in s.jobs if row["key"] is None and row["task"] == "t_new"]
    assert [json.loads(row["payload"]) for row in retired] == [{"l": 1}, {"l": 3}, {"p": 1}]
    for row in retired:
        assert row["attempts"] == row["max_attempts"] and row["updated_at"] == "later"
    assert [row["locked_by"] for row in retired] == [FAKE_POOL, FAKE_POOL, None]
    assert s.by_key("k-locked")["revision"] == 0 and not s.by_key("k-locked")["locked_at"]
    assert s.by_key("k-locked2")["run_at"] == iso(T3).isoformat()
    assert s.by_key("k-perm")["run_at"] == iso(T2).isoformat()
    ldd, pdd = s.by_key("k-ldd"), s.by_key("k-pdd")
    assert (ldd["revision"], ldd["locked_by"], ldd["payload"]) == (1, FAKE_POOL, '{"ld":1}')
    assert (pdd["revision"], pdd["attempts"], pdd["payload"]) == (1, 1, '{"pd":1}')
    batch = s.by_key("k-batch")
    assert batch["payload"] == '[{"a": 1}, {"a": 2}, {"a": 3}, "x"]'
    # run_at is the second call's now() (replace), kept by the third (preserve_run_at).
    assert (batch["revision"], batch["run_at"]) == (2, "other")
    assert s.by_key("k-swap")["payload"] == "[2]"
    many, many2 = s.by_key("k-many"), s.by_key("k-many2")
    assert (many["payload"], many["run_at"], many["revision"]) == (
        "[1, 2, 3]",
        iso(T3).isoformat(),
        2,
    )
    assert (many2["run_at"], many2["attempts"], many2["revision"]) == (iso(T3).isoformat(), 0, 1)
    [unkeyed] = [row for row in s.jobs if row["task"] == "t_many" and row["key"] is None]
    assert (unkeyed["queue_name"], unkeyed["priority"], unkeyed["max_attempts"]) == (
        "q-many",
        -2,
        9,
    )
    assert json.loads(unkeyed["flags"]) == {"y": True, "z": True}
    assert not [row for row in s.jobs if row["key"] == "k-twice"]


def test_unsafe_dedupe_returns_the_existing_jobs_queue_name(db: TestDatabase) -> None:
    # The row returned by unsafe_dedupe is the existing job, in its own queue: the Job
    # must say so, not repeat the call's (absent) queue name.
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        first = utils.add_job(
            "t_dd", {"d": 1}, job_key="k-dd", job_key_mode="unsafe_dedupe", queue_name="q-dd"
        )
        again = utils.add_job("t_dd", {"d": 2}, job_key="k-dd", job_key_mode="unsafe_dedupe")
    assert (again.id, again.revision, again.payload) == (first.id, 1, {"d": 1})
    assert again.job_queue_id == first.job_queue_id is not None  # the row is right
    assert again.queue_name == "q-dd"
    assert again.task_identifier == "t_dd"


def falsy_ops() -> list[Op]:
    """The §4.5 mappings where Node's ``x || null`` and graphile-py agree."""
    return [
        # priority 0 -> NULL -> 0; "" queue and key -> none; [] flags -> NULL.
        add("t_falsy", {"f": 1}, priority=0, queueName="", jobKey="", flags=[]),
        # Explicit nulls everywhere: the database's defaults.
        add(
            "t_falsy",
            {"f": 2},
            queueName=None,
            runAt=None,
            maxAttempts=None,
            jobKey=None,
            jobKeyMode=None,
            priority=None,
            flags=None,
        ),
        # A missing payload and an explicit null one are both {}.
        add("t_falsy"),
        {"op": "addJob", "identifier": "t_falsy", "payload": None, "spec": {}},
        # Falsy payloads are stored as themselves (Node: payload ?? {}).
        {"op": "addJob", "identifier": "t_falsy", "payload": 0},
        {"op": "addJob", "identifier": "t_falsy", "payload": False},
        {"op": "addJob", "identifier": "t_falsy", "payload": ""},
        {"op": "addJob", "identifier": "t_falsy", "payload": []},
        # unsafe_dedupe with an empty key: no key, so an ordinary new job.
        add("t_falsy", {"f": 3}, jobKey="", jobKeyMode="unsafe_dedupe"),
        add("t_falsy", {"f": 4}, jobKey="", jobKeyMode="unsafe_dedupe"),
        # A negative priority is truthy: kept.
        add("t_falsy", {"f": 5}, priority=-1),
        # add_jobs passes values through unchanged: priority 0 and [] flags still mean
        # 0 and NULL, a null payload {}.
        {
            "op": "addJobs",
            "specs": [
                {"identifier": "t_falsy2", "payload": {"g": 1}, "priority": 0},
                {"identifier": "t_falsy2", "payload": None, "flags": []},
                {"identifier": "t_falsy2"},
                {"identifier": "t_falsy2", "payload": False, "queueName": None, "jobKey": None},
            ],
        },
        # permanentlyFailJobs(ids, ""): an empty reason means the default message;
        # completeJobs([]) completes nothing.
        {"op": "permanentlyFailJobs", "ids": [1], "reason": ""},
        {"op": "completeJobs", "ids": []},
        # max_attempts 0 in add_jobs is refused by both (the database's check; Python's
        # own check before sending), and nothing is added.
        {
            "op": "addJobs",
            "specs": [{"identifier": "t_falsy2", "payload": {"g": 2}, "maxAttempts": 0}],
        },
    ]


def test_falsy_option_mappings_give_identical_rows(
    node_worker: Path, make_db: Callable[..., TestDatabase], template_db: str, tmp_path: Path
) -> None:
    node_db, python_db = make_db(template=template_db), make_db(template=template_db)
    ops = falsy_ops()
    node_results, python_results = run_both(node_worker, node_db, python_db, tmp_path, ops)
    node_snap, python_snap = snapshot(node_db), snapshot(python_db)

    assert "error" in node_results[-1] and "error" in python_results[-1]
    assert node_results[-1]["error"]["constraint"] == "jobs_max_attempts_check"
    assert python_results[-1]["error"]["constraint"] == "jobs_max_attempts_check"
    assert not [r for r in node_results[:-1] + python_results[:-1] if "error" in r]
    assert comparable_results(ops, node_results, node_snap.ranks) == comparable_results(
        ops, python_results, python_snap.ranks
    )
    assert_same(node_snap, python_snap)

    rows = python_snap.jobs
    payloads = [row["payload"] for row in rows]
    # add_jobs inserts its specs in no promised order: compare the last four sorted.
    assert payloads[:11] + sorted(payloads[11:]) == [
        '{"f":1}',
        '{"f":2}',
        "{}",
        "{}",
        "0",
        "false",
        '""',
        "[]",
        '{"f":3}',
        '{"f":4}',
        '{"f":5}',
        "false",
        '{"g":1}',
        "{}",
        "{}",
    ]
    assert node_snap.ids[0] == python_snap.ids[0] == 1  # the job failed by id 1
    failed, *others = rows
    assert (failed["attempts"], failed["last_error"]) == (25, "Manually marked as failed")
    assert failed["updated_at"] == "later"
    assert node_results[-2] == python_results[-2] == {"ok": []}
    for row in rows:
        assert row["queue_name"] is None and row["key"] is None and row["flags"] is None
        assert (row["max_attempts"], row["revision"]) == (25, 0)
        assert row["run_at"] == "=created_at"
    for row in others:
        assert (row["attempts"], row["updated_at"]) == (0, "=created_at")
    assert [row["priority"] for row in rows] == [0] * 10 + [-1] + [0] * 4
    assert python_snap.queues == []


def test_deliberate_differences_from_the_js_helpers(
    node_worker: Path, make_db: Callable[..., TestDatabase], template_db: str, tmp_path: Path
) -> None:
    """Calls where graphile-py does not do what Node's helpers do, each on purpose."""
    node_db, python_db = make_db(template=template_db), make_db(template=template_db)
    # A job for reschedule_jobs to work on, with the same id in both databases.
    ids = []
    for target in (node_db, python_db):
        with WorkerUtils(target.dsn, schema=target.schema) as utils:
            job = utils.add_job("t_diff", {"r": 1}, priority=5)
            utils.reschedule_jobs([job.id], attempts=2)
            ids.append(job.id)
    assert ids[0] == ids[1]
    ops: list[Op] = [
        # 0. Node maps maxAttempts 0 (falsy) to NULL, so the job gets the default 25;
        #    graphile-py refuses it before sending: 0 attempts is never what was meant,
        #    and the database itself refuses max_attempts < 1 (jobs_max_attempts_check).
        add("t_diff", {"d": 0}, maxAttempts=0),
        # 1. Node maps jobKeyMode "" to NULL (replace); graphile-py refuses any mode that
        #    is not one of the three names (InvalidJobKeyMode), as for "bogus" below.
        add("t_diff", {"d": 1}, jobKey="k-empty-mode", jobKeyMode=""),
        # 2. With no key, the SQL function ignores the mode, so Node adds the job;
        #    graphile-py checks the mode whatever the key.
        add("t_diff", {"d": 2}, jobKeyMode="bogus"),
        # 3. Node's addJobs passes "" through: the job lands in a queue named "" (a
        #    real serialising queue). graphile-py treats "" as "no queue" in add_jobs as
        #    in add_job (docs/enqueueing.md: '"" means none'), as Node's addJob does.
        {
            "op": "addJobs",
            "specs": [{"identifier": "t_diff", "payload": {"d": 3}, "queueName": ""}],
        },
        # 4. Likewise a "" key in Node's addJobs violates jobs_key_check; graphile-py adds
        #    the job without a key, as Node's addJob does.
        {"op": "addJobs", "specs": [{"identifier": "t_diff", "payload": {"d": 4}, "jobKey": ""}]},
        # 5. Node's rescheduleJobs maps 0 to NULL ("leave as is"); graphile-py's
        #    reschedule_jobs takes None for that, so 0 really sets 0.
        {"op": "rescheduleJobs", "ids": [ids[0]], "options": {"priority": 0, "attempts": 0}},
    ]
    node_results, python_results = run_both(node_worker, node_db, python_db, tmp_path, ops)

    ok = ["error" not in r for r in node_results]
    assert ok == [True, True, True, True, False, True], node_results
    assert node_results[4]["error"]["constraint"] == "jobs_key_check"
    assert ["error" not in r for r in python_results] == [False, False, False, True, True, True]
    assert python_results[0]["error"]["type"] == JobRejected.__name__
    assert python_results[0]["error"]["constraint"] == "jobs_max_attempts_check"
    assert python_results[1]["error"]["type"] == InvalidJobKeyMode.__name__
    assert python_results[2]["error"]["type"] == InvalidJobKeyMode.__name__

    node_rows = {json.dumps(json.loads(r["payload"])): r for r in snapshot(node_db).jobs}
    python_rows = {json.dumps(json.loads(r["payload"])): r for r in snapshot(python_db).jobs}
    assert set(node_rows) == {'{"r": 1}', '{"d": 0}', '{"d": 1}', '{"d": 2}', '{"d": 3}'}
    assert set(python_rows) == {'{"r": 1}', '{"d": 3}', '{"d": 4}'}
    assert node_rows['{"d": 0}']["max_attempts"] == 25
    assert node_rows['{"d": 1}']["key"] == "k-empty-mode"
    assert node_rows['{"d": 3}']["queue_name"] == ""
    assert python_rows['{"d": 3}']["queue_name"] is None
    assert python_rows['{"d": 4}']["key"] is None
    node_job, python_job = node_rows['{"r": 1}'], python_rows['{"r": 1}']
    assert (node_job["priority"], node_job["attempts"]) == (5, 2)
    assert (python_job["priority"], python_job["attempts"]) == (0, 0)
