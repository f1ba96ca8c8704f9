"""Our SQL functions behave exactly like graphile-worker 0.18.0's.

The same scripted sequence of calls (every ``add_job`` option and job-key mode, the
outcome table of spec 4.4, batch payload merging, ``add_jobs``, ``remove_job`` and the
admin functions, and the error cases) runs against a database migrated by us and one
migrated by the Node CLI. Everything observable must be identical: returned rows,
errors (SQLSTATE, constraint, message), the final table contents, identity values
used, and the ``jobs:insert`` notifications.

Two modes:

* ``one-transaction``: the whole script runs in one transaction, each call under a
  savepoint, so ``now()`` is fixed and every timestamp is compared exactly as an offset
  from it. Notifications arrive at the commit and are compared in order.
* ``autocommit``: every call commits on its own, so the notifications can be
  attributed to the call that sent them; timestamps are only compared as set or NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from graphile_py.db.migrate import migrate
from tests.interop.node_schema import DEFAULT_SCHEMA, ODD_SCHEMA, node_schema_only
from tests.interop.recorder import Recorder, compare_runs, entry, errors, run_script
from tests.support import TestDatabase

pytestmark = pytest.mark.node

MakeDb = Callable[..., TestDatabase]
LONG_129 = "x" * 129
LONG_513 = "k" * 513


def scenario(r: Recorder) -> None:
    """The scripted calls. Comments name the behaviour each group pins down."""
    # Defaults, every option, flags (duplicates collapse, empty array gives NULL).
    r.add_job("defaults", "task_a")
    r.add_job(
        "every option",
        "task_b",
        payload={"tag": "b"},
        queue_name="q1",
        run_at=r.at(hours=1),
        max_attempts=7,
        priority=-3,
        flags=["f1", "f2", "f1"],
    )
    r.add_job("empty flags", "task_a", payload={"tag": "noflags"}, flags=[])
    r.add_job(
        "explicit nulls",
        "task_a",
        payload=None,
        queue_name=None,
        run_at=None,
        max_attempts=None,
        job_key=None,
        priority=None,
        flags=None,
        job_key_mode=None,
    )
    r.add_job(
        "bogus mode without key is accepted", "task_a", payload={"tag": "nk"}, job_key_mode="bogus"
    )

    # Spec 4.4: replace / NULL mode on an idle job updates it in place.
    r.add_job(
        "key: new",
        "task_k",
        payload={"tag": "k1"},
        job_key="k1",
        queue_name="q1",
        run_at=r.at(hours=1),
        priority=2,
        flags=["x"],
        max_attempts=3,
    )
    r.add_job(
        "key: replace (NULL mode)",
        "task_k2",
        payload={"tag": "k1b"},
        job_key="k1",
        job_key_mode=None,
    )
    r.add_job(
        "key: replace (explicit)",
        "task_k",
        payload={"tag": "k1c"},
        job_key="k1",
        job_key_mode="replace",
        queue_name="q2",
        run_at=r.at(minutes=5),
    )

    # preserve_run_at keeps the slot only while attempts = 0.
    r.add_job(
        "preserve: new",
        "task_p",
        payload={"tag": "p"},
        job_key="p",
        run_at=r.at(hours=2),
        job_key_mode="preserve_run_at",
    )
    r.add_job(
        "preserve: keeps run_at",
        "task_p",
        payload={"tag": "p2"},
        job_key="p",
        run_at=r.at(hours=3),
        job_key_mode="preserve_run_at",
    )
    r.sql(
        "simulate a failed attempt",
        "update {s}._private_jobs set attempts = 1,"
        " last_error = 'boom', run_at = %s where key = 'p'",
        [r.at(seconds=30)],
    )
    r.add_job(
        "preserve: failed job takes new run_at",
        "task_p",
        payload={"tag": "p3"},
        job_key="p",
        run_at=r.at(hours=4),
        job_key_mode="preserve_run_at",
    )

    # A locked holder is retired (key NULL, attempts = max) and a new job created.
    r.add_job("locked: target", "task_l", payload={"tag": "l"}, job_key="l", max_attempts=4)
    r.lock("l")
    r.add_job("locked: replace", "task_l", payload={"tag": "l2"}, job_key="l")
    r.lock("l", by="worker-2")
    r.add_job(
        "locked: preserve_run_at",
        "task_l",
        payload={"tag": "l3"},
        job_key="l",
        job_key_mode="preserve_run_at",
        run_at=r.at(hours=1),
    )
    # Even a stale lock makes the job unavailable, so it is retired too.
    r.add_job("stale: target", "task_s", payload={"tag": "s"}, job_key="s")
    r.lock("s", hours_ago=5)
    r.add_job("stale: replace", "task_s", payload={"tag": "s2"}, job_key="s")
    # Permanently failed holders are retired and replaced as well.
    r.add_job("failed: target", "task_f", payload={"tag": "f"}, job_key="f", max_attempts=2)
    r.sql(
        "simulate permanent failure",
        "update {s}._private_jobs set attempts = max_attempts, last_error = 'x' where key = 'f'",
    )
    r.add_job("failed: replace", "task_f", payload={"tag": "f2"}, job_key="f")

    # unsafe_dedupe: the existing row wins whatever its state; notify only when new.
    r.add_job(
        "dedupe: new",
        "task_u",
        payload={"tag": "u"},
        job_key="u",
        job_key_mode="unsafe_dedupe",
        queue_name="q_u",
        flags=["z", "y"],
        priority=1,
    )
    r.add_job(
        "dedupe: existing idle",
        "task_other",
        payload={"tag": "u2"},
        job_key="u",
        job_key_mode="unsafe_dedupe",
        queue_name="q_other",
    )
    r.lock("u")
    r.add_job(
        "dedupe: existing locked",
        "task_u",
        payload={"tag": "u3"},
        job_key="u",
        job_key_mode="unsafe_dedupe",
    )
    r.sql(
        "simulate permanent failure of u",
        "update {s}._private_jobs set attempts = max_attempts where key = 'u'",
    )
    r.add_job(
        "dedupe: existing failed",
        "task_u",
        payload={"tag": "u4"},
        job_key="u",
        job_key_mode="unsafe_dedupe",
    )
    r.add_job(
        "dedupe: known task and queue",
        "task_u",
        payload={"tag": "u5"},
        job_key="u5",
        job_key_mode="unsafe_dedupe",
        queue_name="q_u",
    )
    r.add_job("dedupe: all defaults", "task_new_dd", job_key="u6", job_key_mode="unsafe_dedupe")
    r.add_job("invalid mode with key", "task_a", job_key="kb", job_key_mode="bogus")
    r.add_job("invalid mode with empty key", "task_a", job_key="", job_key_mode="Replace")

    # Batch jobs: two arrays concatenate (old first); anything else replaces.
    for n in (1, 2, 3):
        r.add_job(f"batch: add {n}", "task_batch", payload=[{"a": n}], job_key="batch")
    r.add_job(
        "batch: preserve",
        "task_batch",
        payload=[{"a": 4}, {"b": [1, 2]}],
        job_key="batch",
        job_key_mode="preserve_run_at",
        run_at=r.at(hours=1),
    )
    r.add_job("batch: object replaces", "task_batch", payload={"not": "array"}, job_key="batch")
    r.add_job("batch: array after object", "task_batch", payload=[5], job_key="batch")
    r.add_job(
        "batch: dedupe does not merge",
        "task_batch",
        payload=[6],
        job_key="batch",
        job_key_mode="unsafe_dedupe",
    )

    # add_jobs, as Node's addJobs sends it.
    r.add_jobs(
        "add_jobs: mixed",
        [
            {
                "identifier": "task_m1",
                "payload": {"tag": "m1"},
                "queue_name": "q_m",
                "run_at": r.at(hours=1),
                "max_attempts": 5,
                "priority": 4,
                "flags": ["a"],
            },
            {"identifier": "task_m2", "payload": {"tag": "m2"}, "job_key": "k1"},
            {"identifier": "task_l", "payload": {"tag": "m3"}, "job_key": "l"},
            {"identifier": "task_m1"},
            {"identifier": "task_batch", "payload": [7, 8], "job_key": "batch"},
        ],
    )
    r.add_jobs(
        "add_jobs: preserve run_at",
        [
            {
                "identifier": "task_p",
                "payload": {"tag": "p4"},
                "job_key": "p",
                "run_at": r.at(hours=6),
            },
            {
                "identifier": "task_m1",
                "payload": {"tag": "aj1"},
                "job_key": "aj1",
                "run_at": r.at(hours=7),
            },
        ],
        preserve_run_at=True,
    )
    r.add_jobs(
        "add_jobs: preserve run_at again",
        [
            {
                "identifier": "task_m1",
                "payload": {"tag": "aj1b"},
                "job_key": "aj1",
                "run_at": r.at(hours=8),
            }
        ],
        preserve_run_at=True,
    )
    r.add_jobs("add_jobs: explicit false", [{"identifier": "task_m1", "job_key": "aj1"}], False)
    r.add_jobs(
        "add_jobs: same key twice",
        [{"identifier": "task_m1", "job_key": "dup"}, {"identifier": "task_m1", "job_key": "dup"}],
    )
    r.add_jobs("add_jobs: empty", [])
    r.sql("add_jobs: NULL array", "select * from {s}.add_jobs(null)")
    r.add_jobs("add_jobs: bad max_attempts", [{"identifier": "task_m1", "max_attempts": 0}])
    r.add_jobs("add_jobs: long identifier", [{"identifier": LONG_129}])

    # Known tasks and queues must not use up identity values (migration 20).
    for n in range(3):
        r.add_job(
            f"reuse task and queue {n}", "task_a", queue_name="q1", payload={"tag": f"reuse{n}"}
        )

    # remove_job: idle deleted (notify -1), locked retired, missing gives a NULL row.
    r.add_job(
        "remove: idle target", "task_r", payload={"tag": "r1"}, job_key="r1", queue_name="q_r"
    )
    r.sql("remove: idle", "select * from {s}.remove_job(%s)", ["r1"])
    r.add_job("remove: locked target", "task_r", payload={"tag": "r2"}, job_key="r2")
    r.lock("r2")
    r.sql("remove: locked", "select * from {s}.remove_job(%s)", ["r2"])
    r.add_job("remove: stale target", "task_r", payload={"tag": "r3"}, job_key="r3")
    r.lock("r3", hours_ago=4.5)
    r.sql("remove: stale lock", "select * from {s}.remove_job(%s)", ["r3"])
    r.sql("remove: missing", "select * from {s}.remove_job(%s)", ["nope"])
    r.sql("remove: NULL (strict)", "select * from {s}.remove_job(NULL)")

    # Admin functions skip jobs locked in the last four hours.
    for tag in ("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"):
        r.add_job(
            f"admin target {tag}",
            "task_c",
            payload={"tag": tag},
            job_key=tag,
            queue_name="q_c",
            max_attempts=5,
        )
    r.lock("c2", by="worker-a")
    r.lock("c3", by="worker-a", hours_ago=5)
    r.lock("c5", by="worker-b")
    r.lock("c8", by="worker-a")
    r.sql(
        "lock queue q_c",
        "update {s}._private_job_queues set locked_at = %s,"
        " locked_by = 'worker-a' where queue_name = 'q_c'",
        [r.at()],
    )
    r.sql(
        "lock queue q1",
        "update {s}._private_job_queues set locked_at = %s,"
        " locked_by = 'worker-b' where queue_name = 'q1'",
        [r.at()],
    )
    r.sql(
        "complete_jobs",
        "select * from {s}.complete_jobs(" + r.tagged("c1", "c2", "c3") + " || 999999::bigint)",
    )
    r.sql(
        "permanently_fail_jobs with message",
        "select * from {s}.permanently_fail_jobs(" + r.tagged("c4", "c5") + ", 'given up')",
    )
    r.sql(
        "permanently_fail_jobs default message",
        "select * from {s}.permanently_fail_jobs(" + r.tagged("c6") + ")",
    )
    r.sql(
        "reschedule_jobs every option",
        "select * from {s}.reschedule_jobs("
        + r.tagged("c7", "c8")
        + ", run_at => %s, priority => 3, attempts => 2, max_attempts => 9)",
        [r.at(days=1)],
    )
    r.sql(
        "reschedule_jobs run_at only",
        "select * from {s}.reschedule_jobs(" + r.tagged("c9") + ", run_at => %s)",
        [r.at(hours=2)],
    )
    r.sql("reschedule_jobs nothing", "select * from {s}.reschedule_jobs(" + r.tagged("c9") + ")")
    r.sql(
        "reschedule_jobs priority out of range",
        "select * from {s}.reschedule_jobs(" + r.tagged("c9") + ", priority => 40000)",
    )
    r.sql(
        "reschedule_jobs max_attempts 0",
        "select * from {s}.reschedule_jobs(" + r.tagged("c9") + ", max_attempts => 0)",
    )
    r.sql("force_unlock_workers", "select {s}.force_unlock_workers(array['worker-a'])")
    r.sql("force_unlock_workers none", "select * from {s}.force_unlock_workers('{{}}')")

    # Error cases: constraint violations and range errors, through both add paths.
    r.add_job("error: identifier too long", LONG_129)
    r.add_job("error: queue name too long", "task_e", queue_name=LONG_129)
    r.add_job("error: empty key", "task_e", job_key="")
    r.add_job("error: key too long", "task_e", job_key=LONG_513)
    r.add_job("ok: key of 512", "task_e", job_key="k" * 512, payload={"tag": "k512"})
    r.add_job("error: max_attempts 0", "task_e", max_attempts=0)
    r.add_job("error: max_attempts out of range", "task_e", max_attempts=40000)
    r.add_job("error: priority out of range", "task_e", priority=-40000)
    r.add_job("error: NULL identifier", None)
    r.add_job("error: NULL flag", "task_e", flags=["a", None])
    r.add_job(
        "error: dedupe identifier too long", LONG_129, job_key="e1", job_key_mode="unsafe_dedupe"
    )
    r.add_job(
        "error: dedupe queue too long",
        "task_e",
        job_key="e2",
        queue_name=LONG_129,
        job_key_mode="unsafe_dedupe",
    )
    r.add_job(
        "error: dedupe max_attempts 0",
        "task_e",
        job_key="e3",
        max_attempts=0,
        job_key_mode="unsafe_dedupe",
    )
    r.add_job(
        "error: dedupe priority out of range",
        "task_e",
        job_key="e4",
        priority=99999,
        job_key_mode="unsafe_dedupe",
    )
    r.add_job("error: dedupe NULL identifier", None, job_key="e5", job_key_mode="unsafe_dedupe")
    r.dump(
        ("_private_jobs", "id"),
        ("_private_tasks", "id"),
        ("_private_job_queues", "id"),
        ("jobs", "id"),
    )
    r.dump_sequences()


def _databases(
    make_db: MakeDb, node_worker: Path, schema: str
) -> tuple[TestDatabase, TestDatabase]:
    ours = make_db(schema=schema)
    with ours.connect() as conn:
        migrate(conn, schema=schema)
    theirs = make_db(schema=schema)
    result = node_schema_only(node_worker, theirs.dsn, schema)
    assert result.returncode == 0, result.stdout + result.stderr
    return ours, theirs


# The script must fail exactly where intended; otherwise "identical" could mean
# "identically broken".
EXPECTED_ERRORS = {
    "invalid mode with key": ("GWBKM", None),
    "invalid mode with empty key": ("GWBKM", None),
    "add_jobs: same key twice": ("21000", None),
    "add_jobs: bad max_attempts": ("23514", "jobs_max_attempts_check"),
    "add_jobs: long identifier": ("23514", "tasks_identifier_check"),
    "reschedule_jobs priority out of range": ("22003", None),
    "reschedule_jobs max_attempts 0": ("23514", "jobs_max_attempts_check"),
    "error: identifier too long": ("23514", "tasks_identifier_check"),
    "error: queue name too long": ("23514", "job_queues_queue_name_check"),
    "error: empty key": ("23514", "jobs_key_check"),
    "error: key too long": ("23514", "jobs_key_check"),
    "error: max_attempts 0": ("23514", "jobs_max_attempts_check"),
    "error: max_attempts out of range": ("22003", None),
    "error: priority out of range": ("22003", None),
    "error: NULL identifier": ("23502", None),
    "error: NULL flag": ("22023", None),
    "error: dedupe identifier too long": ("23514", "tasks_identifier_check"),
    "error: dedupe queue too long": ("23514", "job_queues_queue_name_check"),
    "error: dedupe max_attempts 0": ("23514", "jobs_max_attempts_check"),
    "error: dedupe priority out of range": ("22003", None),
    "error: dedupe NULL identifier": ("23502", None),
}


@pytest.mark.parametrize(
    ("schema", "one_transaction"),
    [
        pytest.param(DEFAULT_SCHEMA, True, id="default-one-transaction"),
        pytest.param(ODD_SCHEMA, True, id="odd-one-transaction"),
        pytest.param(DEFAULT_SCHEMA, False, id="default-autocommit"),
    ],
)
def test_functions_behave_like_node(
    make_db: MakeDb, node_worker: Path, schema: str, one_transaction: bool
) -> None:
    ours_db, node_db = _databases(make_db, node_worker, schema)
    node = run_script(node_db, scenario, one_transaction=one_transaction)
    ours = run_script(ours_db, scenario, one_transaction=one_transaction)

    assert errors(node) == EXPECTED_ERRORS
    compare_runs(ours, node)

    # Spot checks that the script exercised what it claims to (on the shared result).
    jobs = entry(ours, "dump _private_jobs")["rows"]
    batch = next(row for row in jobs if row["key"] == "batch")
    assert batch["payload"] == [5, 7, 8]
    assert entry(ours, "remove: missing")["rows"] == [dict.fromkeys(batch, None)]
    if one_transaction:
        preserved = entry(ours, "preserve: keeps run_at")["rows"][0]
        assert preserved["run_at"] == "now+2:00:00"
        assert preserved["revision"] == 1
        assert len(ours["notifications"]) > 20
    else:
        assert entry(ours, "remove: idle")["notifications"] == ['jobs:insert {"r":R,"count":-1}']
        assert entry(ours, "dedupe: existing idle")["notifications"] == []
        assert entry(ours, "dedupe: new")["notifications"] == ['jobs:insert {"r":R,"count":1}']
        assert entry(ours, "add_jobs: mixed")["notifications"] == ['jobs:insert {"r":R,"count":5}']
        assert entry(ours, "add_jobs: empty")["notifications"] == ["jobs:insert "]
