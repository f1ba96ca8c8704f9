"""``manage.py graphile_migrate`` and ``manage.py graphile_worker``, run as real processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql

from graphile_py.db.side_schema import side_schema_for
from graphile_py.settings import SETTINGS
from tests.contrib.django.helpers import manage, queue_jobs, runs
from tests.contrib.django.project.shop import tasks
from tests.support import TestDatabase


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


def test_graphile_migrate_installs_the_schemas(
    make_db: Callable[..., TestDatabase], project_env: dict[str, Any]
) -> None:
    empty = make_db()
    result = manage(_env_for(empty, project_env), "graphile_migrate")
    assert "is up to date (migrations applied: 1, 2," in result.stdout
    assert {empty.schema, side_schema_for(empty.schema)} <= _schemas(empty)
    again = manage(_env_for(empty, project_env), "graphile_migrate", "--backend", "once")
    assert "migrations applied: none needed" in again.stdout
    unknown = manage(
        _env_for(empty, project_env), "graphile_migrate", "--backend", "nope", check=False
    )
    assert unknown.returncode == 1 and "no GraphileBackend 'nope'" in unknown.stderr


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
    manage(project_env, "graphile_worker", "--once", "--queue", "default", "--queue", "ledger")
    assert [run.label for run in runs()] == ["add:3", "default queue"]

    bad = manage(project_env, "graphile_worker", "--once", "--queue", "nowhere", check=False)
    assert bad.returncode == 1 and "nowhere: not in TASKS['default']['QUEUES']" in bad.stderr


def test_worker_takes_the_settings_of_graphile_py_worker(project_env: dict[str, Any]) -> None:
    shown = manage(project_env, "graphile_worker", "--help").stdout
    for name in ("jobs", "history", "task_timeout", "forbidden_flags", "tasks", "log_format"):
        for flag in SETTINGS[name].flags:
            assert flag in shown, (flag, shown)
    # Where to connect comes from DATABASES, the schema from the backend's OPTIONS.
    for name in ("database_url", "worker_schema", "embedded"):
        assert SETTINGS[name].flags[-1] not in shown
    assert "GRAPHILE_PY_JOBS" in shown


def test_worker_reports_bad_settings(django_db: TestDatabase, project_env: dict[str, Any]) -> None:
    bad = manage(project_env, "graphile_worker", "--once", "--jobs", "0", check=False)
    assert bad.returncode == 1
    assert "invalid configuration" in bad.stderr and "jobs" in bad.stderr
    from_env = manage(
        {**project_env, "GRAPHILE_PY_HISTORY_RETENTION": "-5"},
        "graphile_worker",
        "--once",
        check=False,
    )
    assert from_env.returncode == 1 and "history_retention" in from_env.stderr


def test_worker_runs_plain_graphile_tasks_beside(
    django_db: TestDatabase, project_env: dict[str, Any], tmp_path: Any
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
    from graphile_py import add_job

    with django_db.connect() as conn:
        add_job(conn, "plain", {"label": "plain task"}, schema=django_db.schema)
    tasks.record.enqueue("django task")
    env = {**project_env, "PYTHONPATH": str(tmp_path)}
    manage(env, "graphile_worker", "--once", "--tasks", "plain_tasks:registry")
    assert sorted(run.label for run in runs()) == ["django task", "plain task"]


def test_jobs_stay_in_the_backend_schema(django_db: TestDatabase) -> None:
    # The job went into the schema of the backend's OPTIONS, the worker's schema.
    tasks.record.enqueue("where")
    with django_db.connect() as conn:
        count = conn.execute(
            sql.SQL("select count(*) from {}._private_jobs").format(
                sql.Identifier(django_db.schema)
            )
        ).fetchone()
    assert count == (1,)
