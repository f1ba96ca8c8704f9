"""get_result / aget_result: what the queue and the job history tell of a Django task."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql

from graphile_py import WorkerUtils, add_job
from graphile_py.contrib.django import ReturnValueNotKept
from graphile_py.contrib.django.backend import GraphileBackend
from graphile_py.contrib.django.compat import TaskResultDoesNotExist, task_backends
from graphile_py.contrib.django.errors import BackendMisconfigured, JobFailed
from tests.contrib.django.helpers import queue_jobs, run_jobs, runs
from tests.contrib.django.project.shop import tasks
from tests.support import TestDatabase

try:
    from django.tasks.exceptions import TaskResultMismatch
except ImportError:
    from django_tasks.exceptions import TaskResultMismatch  # type: ignore[no-redef]


def test_successful_with_history(django_db: TestDatabase) -> None:
    result = tasks.add.enqueue(2, 3)
    run_jobs(django_db, history=True)
    assert [run.label for run in runs()] == ["add:5"]
    done = tasks.add.get_result(result.id)
    assert done.status == "SUCCESSFUL" and done.is_finished
    assert done.args == [2, 3] and done.kwargs == {}
    assert done.errors == []
    assert len(done.worker_ids) == 1 and done.worker_ids[0]
    assert done.started_at <= done.finished_at
    assert done.task.queue_name == "emails"
    with pytest.raises(ReturnValueNotKept, match="does not keep return values"):
        _ = done.return_value
    # The result the caller holds catches up, sync and async.
    result.refresh()
    assert result.status == "SUCCESSFUL"
    with pytest.raises(ReturnValueNotKept):
        _ = result.return_value
    again = asyncio.run(tasks.add.aget_result(result.id))
    assert again.status == "SUCCESSFUL" and again.id == result.id


def test_finished_without_history_is_unknown(django_db: TestDatabase) -> None:
    result = tasks.add.enqueue(1, 1)
    run_jobs(django_db, history=False)
    assert [run.label for run in runs()] == ["add:2"]
    with pytest.raises(TaskResultDoesNotExist, match="--history"):
        tasks.add.get_result(result.id)


def test_ready_then_retrying_then_successful(django_db: TestDatabase) -> None:
    result = tasks.flaky.enqueue("flaky")
    assert tasks.flaky.get_result(result.id).status == "READY"
    run_jobs(django_db)
    waiting = tasks.flaky.get_result(result.id)
    # Django has no "retrying": a job waiting for its next attempt is ready again.
    assert waiting.status == "READY"
    assert waiting.attempts == 1
    [error] = waiting.errors
    assert error.exception_class is tasks.Refused
    assert "not yet: flaky" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="not finished"):
        _ = waiting.return_value

    with WorkerUtils(conninfo=django_db.dsn, schema=django_db.schema) as utils:
        utils.reschedule_jobs([int(result.id)], run_at=datetime.now(UTC))  # ready now
    run_jobs(django_db)
    done = tasks.flaky.get_result(result.id)
    assert done.status == "SUCCESSFUL"
    assert done.attempts == 2 and all(done.worker_ids)
    assert [e.exception_class for e in done.errors] == [tasks.Refused]
    assert [(run.label, run.attempt) for run in runs()] == [("flaky", 1), ("flaky", 2)]


def test_failed_for_good(django_db: TestDatabase) -> None:
    result = tasks.refuse.using(backend="once").enqueue("no thanks")
    run_jobs(django_db, history=False)
    failed = tasks.refuse.get_result(result.id)  # the job is kept: no history needed
    assert failed.status == "FAILED" and failed.is_finished
    assert failed.backend == "once"
    [error] = failed.errors
    assert error.exception_class_path == f"{tasks.Refused.__module__}.Refused"
    assert failed.finished_at is not None
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value


def test_failed_and_deleted_is_known_from_history(django_db: TestDatabase) -> None:
    result = tasks.refuse.using(backend="once").enqueue("gone")
    run_jobs(django_db, history=True)
    with WorkerUtils(conninfo=django_db.dsn, schema=django_db.schema) as utils:
        utils.complete_jobs([int(result.id)])  # an operator deletes the failed job
    assert queue_jobs(django_db) == []
    failed = tasks.refuse.get_result(result.id)
    assert failed.status == "FAILED"
    assert failed.args == ["gone"]
    assert failed.errors[0].exception_class is tasks.Refused


def test_running(django_db: TestDatabase) -> None:
    result = tasks.record.enqueue("slow", sleep=1.5)
    worker = threading.Thread(target=run_jobs, args=(django_db,))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            status = tasks.record.get_result(result.id)
            if status.status == "RUNNING":
                break
            time.sleep(0.05)
        assert status is not None and status.status == "RUNNING"
        assert status.worker_ids[0] and status.last_attempted_at is not None
    finally:
        worker.join(30)
    assert tasks.record.get_result(result.id).status == "SUCCESSFUL"


def test_a_node_style_error_is_named_job_failed(django_db: TestDatabase) -> None:
    result = tasks.record.using(backend="once").enqueue("x")
    with django_db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {}._private_jobs set attempts = 1, last_error = 'Error: from Node'"
            ).format(sql.Identifier(django_db.schema))
        )
    failed = tasks.record.get_result(result.id)
    assert failed.status == "FAILED"
    assert failed.errors[0].exception_class is JobFailed
    assert failed.errors[0].traceback == "Error: from Node"
    assert failed.worker_ids == [""]


@pytest.mark.parametrize("result_id", ["abc", "0", "-1", "1.5", "99999999999999999999", "\u0661"])
def test_ids_that_name_no_job(django_db: TestDatabase, result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist, match="job id"):
        task_backends["default"].get_result(result_id)


def test_no_such_job(django_db: TestDatabase) -> None:
    with pytest.raises(TaskResultDoesNotExist, match="no job 12345"):
        task_backends["default"].get_result("12345")


def test_a_job_that_is_not_a_django_task(django_db: TestDatabase) -> None:
    with django_db.connect() as conn:
        job = add_job(conn, "send_email", {"to": "ada@example.com"}, schema=django_db.schema)
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        task_backends["default"].get_result(str(job.id))


def test_a_result_of_another_task_is_a_mismatch(django_db: TestDatabase) -> None:
    result = tasks.record.enqueue("x")
    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(result.id)


def test_reading_a_result_inside_a_transaction_leaves_it_usable(django_db: TestDatabase) -> None:
    from django.db import transaction

    from tests.contrib.django.project.shop.models import Order

    with transaction.atomic():
        result = tasks.record.enqueue("mine")
        # Visible to this transaction before it commits.
        assert tasks.record.get_result(result.id).status == "READY"
        with pytest.raises(TaskResultDoesNotExist):
            tasks.record.get_result("987654")
        Order.objects.create(email="still@usable.example")
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"NOPE": 1}, "unknown keys"),
        ({"MAX_ATTEMPTS": 0}, "MAX_ATTEMPTS"),
        ({"SERIAL_QUEUES": {"elsewhere": "x"}}, "not in this backend's QUEUES"),
        ({"SERIAL_QUEUES": {"default": ""}}, "queue name"),
        ({"SCHEMA": ""}, "SCHEMA"),
        ({"TASK_MODULES": "myapp.jobs"}, "TASK_MODULES"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendMisconfigured, match=message):
        GraphileBackend("broken", {"OPTIONS": options})


@pytest.mark.parametrize("payload", [["not", "an object"], {"args": {"a": 1}}, {"kwargs": [1]}])
def test_a_payload_that_is_not_a_django_tasks_fails_at_once(
    django_db: TestDatabase, payload: Any
) -> None:
    with django_db.connect() as conn:
        job = add_job(conn, f"{tasks.record.module_path}", payload, schema=django_db.schema)
    run_jobs(django_db)
    failed = tasks.record.get_result(str(job.id))
    assert failed.status == "FAILED"
    assert (failed.args, failed.kwargs) == ([], {})
    [error] = failed.errors  # one attempt recorded: the job's attempts were used up at once
    assert failed.attempts == 25  # as the queue says: none left
    assert error.exception_class is JobFailed
    assert "must be a JSON object" in error.traceback or "must hold a list" in error.traceback
    assert runs() == []


def test_system_checks_name_a_missing_or_foreign_database() -> None:
    from django.core import checks

    assert task_backends["default"].check() == []
    missing = GraphileBackend("elsewhere", {"OPTIONS": {"DATABASE": "reporting"}}).check()
    assert [(type(m), m.id) for m in missing] == [(checks.Error, "graphile_py.E001")]
    assert "DATABASES['reporting']" in missing[0].msg
