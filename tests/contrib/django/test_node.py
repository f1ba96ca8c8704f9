"""Node graphile-worker 0.18.0 sharing the Django project's queue, both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contrib.django.helpers import SHOP_TASKS, queue_jobs, run_jobs, runs
from tests.contrib.django.project.shop import tasks
from tests.interop.test_jobs_cross_runtime import Node, exec_rows, prepare
from tests.support import TestDatabase

pytestmark = pytest.mark.node


@pytest.fixture
def node(node_worker: Path, django_db: TestDatabase, tmp_path: Path) -> Node:
    prepare(django_db)
    return Node(node_worker, django_db, tmp_path / "node")


def test_a_job_node_adds_for_a_django_task_runs_on_our_worker(
    node: Node, django_db: TestDatabase
) -> None:
    [by_add_job, by_quick] = node.add(
        [
            {
                "via": "addJob",
                "jobs": [
                    {
                        "identifier": f"{SHOP_TASKS}.add",
                        "payload": {"args": [40], "kwargs": {"b": 2}},
                        "priority": -1,
                    }
                ],
            },
            # The least a Node service has to write: args only.
            {
                "via": "quickAddJob",
                "jobs": [{"identifier": f"{SHOP_TASKS}.add", "payload": {"args": [1, 1]}}],
            },
        ]
    )
    waiting = tasks.add.get_result(str(by_add_job))
    assert waiting.status == "READY" and waiting.args == [40] and waiting.kwargs == {"b": 2}
    assert waiting.task.priority == 1  # graphile's -1: runs sooner, as Django's 1 would
    run_jobs(django_db, history=True)
    assert [run.label for run in runs()] == ["add:42", "add:2"]
    assert tasks.add.get_result(str(by_quick)).status == "SUCCESSFUL"


def test_a_django_job_runs_on_node(node: Node, django_db: TestDatabase) -> None:
    result = tasks.record.using(priority=10, queue_name="ledger").enqueue("for node")
    node.run_once({f"{SHOP_TASKS}.record": {}})
    [row] = exec_rows(django_db)
    assert row["runtime"] == "node" and row["job_id"] == int(result.id)
    assert row["queue_name"] == "shop-ledger"
    assert json.loads(row["payload"])["args"] == ["for node"]
    assert queue_jobs(django_db) == []
