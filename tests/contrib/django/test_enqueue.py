"""Enqueueing Django tasks: in the caller's transaction, priorities, run_after, queues.

Every test runs the jobs on a real graphile-py worker against the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from graphile_py.contrib.django.compat import InvalidTask
from tests.contrib.django.helpers import SHOP_TASKS, queue_jobs, run_jobs, runs
from tests.contrib.django.project.shop import tasks
from tests.contrib.django.project.shop.models import Order
from tests.support import TestDatabase


@pytest.mark.parametrize("url", ["/orders/", "/orders/atomic/"])
def test_a_request_that_raises_after_enqueueing_leaves_no_job(
    django_db: TestDatabase, url: str
) -> None:
    client = Client(raise_request_exception=False)
    failed = client.post(url + "?fail=1", {"email": "ada@example.com"})
    assert failed.status_code == 500
    assert Order.objects.count() == 0
    assert queue_jobs(django_db) == []

    ok = client.post(url, {"email": "ada@example.com"})
    assert ok.status_code == 200, ok.content
    order_id = ok.json()["order"]
    [job] = queue_jobs(django_db)
    assert job["task_identifier"] == f"{SHOP_TASKS}.confirm_order"
    assert job["payload"]["args"] == [order_id]
    assert str(job["id"]) == ok.json()["task_result"]

    run_jobs(django_db)
    assert Order.objects.get(id=order_id).confirmed
    assert queue_jobs(django_db) == []


def test_a_job_is_part_of_the_callers_transaction(django_db: TestDatabase) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.record.enqueue("rolled back")
        assert len(queue_jobs(django_db)) == 0, "visible to others before the commit"
        raise RuntimeError("abort")
    assert queue_jobs(django_db) == []

    with transaction.atomic():
        result = tasks.record.enqueue("committed")
        with transaction.atomic():  # a savepoint rolled back takes only its own job
            tasks.record.enqueue("savepoint")
            transaction.set_rollback(True)
    assert [job["id"] for job in queue_jobs(django_db)] == [int(result.id)]

    # Outside atomic(), Django autocommits: the job is there at once.
    outside = tasks.record.enqueue("autocommit")
    assert int(outside.id) in [job["id"] for job in queue_jobs(django_db)]


def test_the_enqueued_result_and_the_job(django_db: TestDatabase) -> None:
    result = tasks.add.enqueue(2, b=3)
    assert result.status == "READY"
    assert result.args == [2] and result.kwargs == {"b": 3}
    assert result.backend == "default"
    assert result.enqueued_at is not None and timezone.is_aware(result.enqueued_at)
    [job] = queue_jobs(django_db)
    assert job["id"] == int(result.id)
    assert job["task_identifier"] == f"{SHOP_TASKS}.add"
    assert job["payload"] == {
        "args": [2],
        "kwargs": {"b": 3},
        "django": {"backend": "default", "queue_name": "emails"},
    }
    # A Django queue is a routing name, not a serial queue of graphile-worker's.
    assert job["queue_name"] is None
    assert job["flags"] == {"django-queue:emails": True}
    assert job["max_attempts"] == 25
    run_jobs(django_db)
    assert [run.label for run in runs()] == ["add:5"]


def test_django_priority_larger_runs_sooner(django_db: TestDatabase) -> None:
    for label, priority in [("low", -50), ("middle", 0), ("high", 50), ("top", 100)]:
        tasks.record.using(priority=priority).enqueue(label)
    bottom = tasks.record.using(priority=-100).enqueue("bottom")
    assert tasks.record.get_result(bottom.id).task.priority == -100
    stored = {job["payload"]["args"][0]: job["priority"] for job in queue_jobs(django_db)}
    assert stored == {"low": 50, "middle": 0, "high": -50, "top": -100, "bottom": 100}
    run_jobs(django_db, jobs=1)
    assert [run.label for run in runs()] == ["top", "high", "middle", "low", "bottom"]


def test_priority_out_of_range_is_refused(django_db: TestDatabase) -> None:
    with pytest.raises(InvalidTask, match="priority"):
        tasks.record.using(priority=101)
    assert queue_jobs(django_db) == []


def test_run_after_defers_the_job(django_db: TestDatabase) -> None:
    later = timezone.now() + datetime.timedelta(hours=1)
    deferred = tasks.record.using(run_after=later).enqueue("later")
    tasks.record.enqueue("now")
    run_jobs(django_db)
    assert [run.label for run in runs()] == ["now"]
    [job] = queue_jobs(django_db)
    assert job["run_at"] == later
    result = tasks.record.get_result(deferred.id)
    assert result.status == "READY"
    assert result.task.run_after == later


def test_run_after_must_be_aware_with_use_tz(django_db: TestDatabase) -> None:
    naive = datetime.datetime(2030, 1, 1, 12, 0)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.record.using(run_after=naive)


def _overlaps(labels: list[str]) -> int:
    """The largest number of these runs that were running at one moment."""
    chosen = [run for run in runs() if run.label in labels]
    assert len(chosen) == len(labels)
    return max(
        sum(1 for other in chosen if other.started < run.finished and run.started < other.finished)
        for run in chosen
    )


def test_serial_queue_runs_one_at_a_time_and_others_do_not(django_db: TestDatabase) -> None:
    ledger = [f"ledger-{n}" for n in range(3)]
    parallel = [f"default-{n}" for n in range(3)]
    for label in ledger:
        tasks.record.using(queue_name="ledger").enqueue(label, sleep=0.4)
    for label in parallel:
        tasks.record.enqueue(label, sleep=0.4)
    queues = {job["payload"]["args"][0]: job["queue_name"] for job in queue_jobs(django_db)}
    assert queues == {**dict.fromkeys(ledger, "shop-ledger"), **dict.fromkeys(parallel, None)}
    run_jobs(django_db, jobs=3)
    assert _overlaps(ledger) == 1
    assert _overlaps(parallel) >= 2
    # The serial queue keeps the order of its jobs.
    assert [run.label for run in runs() if run.label in ledger] == ledger


def test_unknown_queue_is_refused(django_db: TestDatabase) -> None:
    with pytest.raises(InvalidTask, match="nowhere"):
        tasks.record.using(queue_name="nowhere")


def test_takes_context(django_db: TestDatabase) -> None:
    result = tasks.with_context.enqueue("with context")
    run_jobs(django_db)
    [run] = runs()
    assert (run.label, run.attempt, run.result_id) == ("with context", 1, result.id)


def test_async_task_and_aenqueue(django_db: TestDatabase) -> None:
    tasks.arecord.enqueue("async, enqueued")

    async def enqueue() -> Any:
        return await tasks.arecord.aenqueue("async, aenqueued")

    result = asyncio.run(enqueue())
    assert result.id.isdigit()
    run_jobs(django_db, jobs=2)
    assert sorted(run.label for run in runs()) == ["async, aenqueued", "async, enqueued"]


def test_arguments_must_be_json(django_db: TestDatabase) -> None:
    with pytest.raises(TypeError):
        tasks.record.enqueue(object())
    assert queue_jobs(django_db) == []


def test_tasks_from_task_modules_option_run(django_db: TestDatabase) -> None:
    from tests.contrib.django.project.shop import more_tasks

    more_tasks.elsewhere.enqueue("from TASK_MODULES")
    run_jobs(django_db)
    assert [run.label for run in runs()] == ["from TASK_MODULES"]


def test_signals_are_sent_per_attempt(django_db: TestDatabase) -> None:
    from graphile_py.contrib.django.compat import task_enqueued, task_finished, task_started

    seen: list[tuple[str, str, str]] = []

    def receiver(signal_name: str) -> Any:
        def receive(sender: Any, task_result: Any, **_: Any) -> None:
            seen.append((signal_name, task_result.task.name, str(task_result.status)))

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        tasks.record.enqueue("signalled")
        tasks.refuse.using(backend="once").enqueue("no")
        run_jobs(django_db, jobs=1)
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    assert seen == [
        ("enqueued", "record", "READY"),
        ("enqueued", "refuse", "READY"),
        ("started", "record", "RUNNING"),
        ("finished", "record", "SUCCESSFUL"),
        ("started", "refuse", "RUNNING"),
        ("finished", "refuse", "FAILED"),
    ]


def test_the_framework_is_the_one_of_this_django() -> None:
    import django

    from graphile_py.contrib.django.compat import FRAMEWORK

    assert ("django.tasks" if django.VERSION >= (6, 0) else "django_tasks") == FRAMEWORK
    expected = os.environ.get("GRAPHILE_PY_EXPECT_DJANGO")
    if expected:  # set by test_django6.py for the Django 6 run
        assert django.VERSION[0] == int(expected), django.get_version()


def test_without_use_tz_run_after_is_local_time(django_db: TestDatabase) -> None:
    from django.test import override_settings

    with override_settings(USE_TZ=False):
        local_noon = datetime.datetime(2030, 6, 1, 12, 0)  # Europe/Paris, summer: UTC+2
        result = tasks.record.using(run_after=local_noon).enqueue("local")
        [job] = queue_jobs(django_db)
        assert job["run_at"] == datetime.datetime(2030, 6, 1, 10, 0, tzinfo=datetime.UTC)
        again = tasks.record.get_result(result.id)
        assert again.task.run_after == local_noon  # naive local time, as Django gives it
        assert timezone.is_naive(again.enqueued_at)
