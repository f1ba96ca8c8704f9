"""``manage.py graphile_migrate`` and ``manage.py graphile_worker``, run as real processes."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from graphile_py import add_job
from graphile_py.db.side_schema import side_schema_for
from graphile_py.settings import SETTINGS
from tests.contrib.django.helpers import MANAGE, manage, queue_jobs, runs
from tests.contrib.django.project.shop import tasks
from tests.support import TestDatabase
from tests.support.workers import wait_for


def _schemas(db: TestDatabase) -> set[str]:
    with db.connect() as conn:
        rows = conn.execute("select nspname from pg_namespace").fetchall()
    return {row[0] for row in rows}


def _tables(db: TestDatabase) -> set[str]:
    with db.connect() as conn:
        rows = conn.execute("select tablename from pg_tables where schemaname = 'public'")
        return {row[0] for row in rows.fetchall()}


def _env_for(db: TestDatabase, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "GRAPHILE_PY_DJANGO_DSN": db.dsn}


def _command(*args: str) -> str:
    """Run a management command in this process (the cheaper twin of ``manage``)."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_graphile_migrate_installs_the_schemas(
    make_db: Callable[..., TestDatabase], project_env: dict[str, Any]
) -> None:
    empty = make_db()
    result = manage(_env_for(empty, project_env), "graphile_migrate")
    assert "is up to date (migrations applied: 1, 2," in result.stdout
    assert {empty.schema, side_schema_for(empty.schema)} <= _schemas(empty)
    assert "migrations applied: none needed" in _command("graphile_migrate", "--backend", "once")
    with pytest.raises(CommandError, match="no GraphileBackend 'nope'"):
        _command("graphile_migrate", "--backend", "nope")


def test_django_migrate_installs_the_queue_too(
    make_db: Callable[..., TestDatabase], project_env: dict[str, Any]
) -> None:
    empty = make_db()
    manage(_env_for(empty, project_env), "migrate", "--verbosity", "0")
    assert {empty.schema, side_schema_for(empty.schema)} <= _schemas(empty)
    assert {"shop_order", "shop_run"} <= _tables(empty)


def test_worker_runs_django_tasks_and_results_show_with_history(
    django_db: TestDatabase, project_env: dict[str, Any]
) -> None:
    added = tasks.add.enqueue(20, 22)
    with_context = tasks.with_context.enqueue("in a process")
    manage(project_env, "graphile_worker", "--once", "--history", "--jobs", "2")
    assert sorted(run.label for run in runs()) == ["add:42", "in a process"]
    done = tasks.add.get_result(added.id)
    assert done.status == "SUCCESSFUL"
    [pool] = done.worker_ids
    assert pool and tasks.with_context.get_result(with_context.id).worker_ids == [pool]
    assert queue_jobs(django_db) == []


def test_worker_queue_option_routes_by_django_queue(
    django_db: TestDatabase, project_env: dict[str, Any]
) -> None:
    tasks.add.enqueue(1, 2)  # the "emails" queue
    tasks.record.enqueue("default queue")
    manage(project_env, "graphile_worker", "--once", "--queue", "emails")
    assert [run.label for run in runs()] == ["add:3"]
    [left] = queue_jobs(django_db)
    assert left["payload"]["args"] == ["default queue"]
    _command("graphile_worker", "--once", "--queue", "default", "--queue", "ledger")
    assert [run.label for run in runs()] == ["add:3", "default queue"]
    with pytest.raises(CommandError, match=r"nowhere: not in TASKS\['default'\]\['QUEUES'\]"):
        _command("graphile_worker", "--once", "--queue", "nowhere")


def test_worker_takes_the_settings_of_graphile_py_worker() -> None:
    from graphile_py.contrib.django.management.commands.graphile_worker import Command

    shown = Command().create_parser("manage.py", "graphile_worker").format_help()
    for name in ("jobs", "history", "task_timeout", "forbidden_flags", "tasks", "log_format"):
        for flag in SETTINGS[name].flags:
            assert flag in shown, (flag, shown)
    # Where to connect comes from DATABASES, the schema from the backend's OPTIONS.
    for name in ("database_url", "worker_schema", "embedded"):
        assert SETTINGS[name].flags[-1] not in shown
    assert "GRAPHILE_PY_JOBS" in shown


def test_worker_reports_bad_settings(
    django_db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CommandError, match="invalid configuration: jobs"):
        _command("graphile_worker", "--once", "--jobs", "0")
    monkeypatch.setenv("GRAPHILE_PY_HISTORY_RETENTION", "-5")
    with pytest.raises(CommandError, match="history_retention"):
        _command("graphile_worker", "--once")


def test_worker_runs_plain_graphile_tasks_beside(
    django_db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain_tasks.py").write_text(
        "from graphile_py import TaskRegistry\n"
        "registry = TaskRegistry()\n"
        "@registry.task\n"
        "def plain(payload, helpers):\n"
        "    with helpers.connection() as conn:\n"
        "        conn.execute('insert into shop_run (label, attempt, result_id, started)"
        " values (%s, 0, %s, now())', (payload['label'], ''))\n"
    )
    monkeypatch.chdir(tmp_path)  # where --tasks looks first, as with graphile-py worker
    with django_db.connect() as conn:
        add_job(conn, "plain", {"label": "plain task"}, schema=django_db.schema)
    tasks.record.enqueue("django task")
    _command("graphile_worker", "--once", "--tasks", "plain_tasks:registry")
    assert sorted(run.label for run in runs()) == ["django task", "plain task"]
    with pytest.raises(CommandError, match="both a Django task and in --tasks"):
        (tmp_path / "clash.py").write_text(
            "from tests.contrib.django.project.shop.tasks import record\n"
            "tasks = {record.module_path: lambda payload, helpers: None}\n"
        )
        _command("graphile_worker", "--once", "--tasks", "clash:tasks")


def test_a_running_worker_is_woken_by_enqueue_and_stops_on_sigterm(
    django_db: TestDatabase, project_env: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "worker.err"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, str(MANAGE), "graphile_worker", "--history"],
            cwd=MANAGE.parent,
            env=project_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: "Worker connected" in log.read_text(), timeout=30)
        with transaction.atomic():
            result = tasks.record.enqueue("woken")
        # Run as soon as the transaction commits: NOTIFY wakes the worker, no polling.
        wait_for(lambda: runs(label="woken"), timeout=10)
        wait_for(lambda: tasks.record.get_result(result.id).status == "SUCCESSFUL")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
