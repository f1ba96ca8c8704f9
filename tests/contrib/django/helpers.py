"""Running the project's Django tasks on a real graphile-py worker, and reading the queue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from graphile_py import WorkerOptions
from tests.support import TestDatabase

PROJECT = Path(__file__).parent / "project"
MANAGE = PROJECT / "manage.py"
SHOP_TASKS = "tests.contrib.django.project.shop.tasks"


def run_jobs(db: TestDatabase, *, jobs: int = 1, history: bool = True, **options: Any) -> None:
    """Run every job that is ready now with the project's Django tasks, then return."""
    from graphile_py.contrib.django.worker import django_task_map
    from graphile_py.runner import run_worker

    status = run_worker(
        django_task_map(),
        conninfo=db.dsn,
        options=WorkerOptions(schema=db.schema, concurrency=jobs, history=history, **options),
        once=True,
        handle_signals=False,
    )
    assert status == 0


def queue_jobs(db: TestDatabase) -> list[dict[str, Any]]:
    """Every job in the queue, with its payload, task identifier and queue name, by id."""
    query = sql.SQL(
        "select jobs.*, tasks.identifier as task_identifier, queues.queue_name"
        " from {schema}._private_jobs as jobs"
        " join {schema}._private_tasks as tasks on tasks.id = jobs.task_id"
        " left join {schema}._private_job_queues as queues on queues.id = jobs.job_queue_id"
        " order by jobs.id"
    ).format(schema=sql.Identifier(db.schema))
    with db.connect(row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def runs(**filters: Any) -> list[Any]:
    """The project's Run rows (one per task run), in the order they were written."""
    from tests.contrib.django.project.shop.models import Run

    return list(Run.objects.filter(**filters).order_by("id"))


def manage(
    env: dict[str, Any], *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the project's ``manage.py`` as a real process."""
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        cwd=PROJECT,  # no crontab file here
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr}"
    return result
