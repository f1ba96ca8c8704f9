"""What the docs promise a new user, checked against the command that does it.

Each test here pins one statement of README.md or docs/ that once disagreed with the
code: the missing ``--crontab`` file, task time limits set on a registry, the exit
status after a failed batched write, and what the embedded server does as root.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from graphile_py.errors import ConfigurationError
from graphile_py.settings import load_settings
from tests.support import TestDatabase
from tests.support.workers import jobs_rows

ROOT = Path(__file__).resolve().parents[2]

TASKS = """\
from graphile_py import TaskRegistry

registry = TaskRegistry()


@registry.task
def ok(payload, helpers):
    pass


@registry.task(timeout=0.3)
def slow(payload, helpers):
    # The limit sets the abort event; were it ignored, this would wait 30 s and pass.
    if helpers.abort_event.wait(30):
        raise TimeoutError("stopped by its 0.3s time limit")
"""


def _command(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "first_hour_tasks.py").write_text(TASKS)
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRAPHILE_PY_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "graphile_py", *args],
        cwd=tmp_path,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- docs/cli.md, docs/configuration.md: a crontab named but missing is an error ----------


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_missing_named_crontab_stops_the_worker_and_names_the_file_and_the_fix(
    how: str, db: TestDatabase, tmp_path: Path
) -> None:
    flags = ["--crontab", "cron/jobs.txt"] if how == "flag" else []
    env = {"GRAPHILE_PY_CRONTAB": "cron/jobs.txt"} if how == "environment" else {}
    result = _command(
        tmp_path,
        "worker",
        "--tasks",
        "first_hour_tasks:registry",
        "-c",
        db.dsn,
        "-s",
        db.schema,
        *flags,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    assert "Error: crontab file 'cron/jobs.txt' does not exist" in result.stderr
    assert "Create it, correct the path, or leave the setting out" in result.stderr
    assert "Traceback" not in result.stderr


def test_crontab_items_follow_the_commands_rules(tmp_path: Path) -> None:
    settings = load_settings({}, directory=tmp_path)
    assert settings.crontab_items(tmp_path) == []  # no ./crontab: no cron
    (tmp_path / "crontab").write_text("0 4 * * * nightly_report\n")
    assert [item.identifier for item in settings.crontab_items(tmp_path)] == ["nightly_report"]
    named = load_settings({"crontab": "elsewhere"}, directory=tmp_path)
    with pytest.raises(ConfigurationError, match=r"crontab file '.*elsewhere' does not exist"):
        named.crontab_items(tmp_path)


# -- README's status section, docs/tasks.md: a registry's time limits are enforced ---------


def test_the_command_enforces_time_limits_set_on_the_registry(
    db: TestDatabase, tmp_path: Path
) -> None:
    from graphile_py import WorkerUtils

    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        utils.add_job("slow", max_attempts=1)
    result = _command(
        tmp_path,
        "worker",
        "--once",
        "--tasks",
        "first_hour_tasks:registry",
        "-c",
        db.dsn,
        "-s",
        db.schema,
    )
    assert result.returncode == 0, result.stderr
    (job,) = jobs_rows(db)
    assert job["attempts"] == 1
    assert "stopped by its 0.3s time limit" in job["last_error"], job["last_error"]


# -- docs/operations.md, docs/node-interop.md: a failed batched write exits 1 --------------


def test_a_failed_batched_write_stops_the_worker_with_status_1(
    db: TestDatabase, tmp_path: Path
) -> None:
    from graphile_py import WorkerUtils

    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(
            "create function public.refuse() returns trigger language plpgsql as"
            " $$ begin raise exception 'no deletes today'; end $$"
        )
        conn.execute(
            sql.SQL(
                "create trigger refuse before delete on {}._private_jobs"
                " for each row execute function public.refuse()"
            ).format(sql.Identifier(db.schema))
        )
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        utils.add_job("ok")
    result = _command(
        tmp_path,
        "worker",
        "--tasks",
        "first_hour_tasks:registry",
        "-c",
        db.dsn,
        "-s",
        db.schema,
        "--complete-job-batch-delay",
        "0",
    )
    assert result.returncode == 1, result.stderr
    assert "Could not complete 1 job in a batch" in result.stderr
    assert "no deletes today" in result.stderr
    assert "Error: the worker pool stopped because of an error" in result.stderr


# -- README's Quickstart: what the embedded server changes when run as root ----------------


def test_the_embedded_server_logs_each_directory_it_opens_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from graphile_py.extras.embedded.host import User, grant_search

    closed = tmp_path / "home"
    target = closed / ".local" / "share"
    target.mkdir(parents=True)
    closed.chmod(0o700)
    target.chmod(0o700)
    (closed / ".local").chmod(0o700)
    stranger = User("someone-else", uid=os.getuid() + 12345, gid=os.getgid() + 12345)
    with caplog.at_level(logging.WARNING, logger="graphile_py.extras.embedded"):
        grant_search([target], stranger)
    assert closed.stat().st_mode & stat.S_IXOTH
    assert not closed.stat().st_mode & stat.S_IROTH  # search only: names stay unlisted
    assert f"running chmod o+x on {closed} so that user 'someone-else'" in caplog.text
    assert "use a database of your own with -c URL instead of --embedded" in caplog.text


def test_cron_list_with_a_missing_crontab_names_it_and_the_fix(
    db: TestDatabase, tmp_path: Path
) -> None:
    result = _command(tmp_path, "cron", "list", "--crontab", "nope", "-c", db.dsn, "-s", db.schema)
    assert result.returncode == 1
    assert "Error: crontab file 'nope' does not exist: correct the path" in result.stderr


# -- docs/configuration.md: the example files and the WorkerOptions example ---------------


def _blocks(language: str, page: str) -> dict[str, str]:
    """The page's blocks of this language, by their first line (a ``# file`` comment)."""
    import re

    text = (ROOT / "docs" / page).read_text()
    found = re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    return {block.splitlines()[0]: block for block in found}


def test_the_example_config_files_load_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("GRAPHILE_PY_") or name in {"DATABASE_URL", "GRAPHILE_WORKER_SCHEMA"}:
            monkeypatch.delenv(name)
    files = _blocks("toml", "configuration.md")
    (tmp_path / "graphile_py.toml").write_text(files["# graphile_py.toml"])
    settings = load_settings({}, directory=tmp_path)
    assert settings.tasks == "myapp.tasks:registry"
    assert (settings.jobs, settings.shutdown_timeout, settings.task_timeout) == (4, 60, 600)
    assert settings.worker.forbidden_flags == ["gpu"]
    with pytest.raises(ConfigurationError, match="deploy/crontab' does not exist"):
        settings.crontab_items(tmp_path)  # named in the file, not there: an error

    (tmp_path / "graphile_py.toml").unlink()
    (tmp_path / "pyproject.toml").write_text(files["# pyproject.toml"])
    settings = load_settings({}, directory=tmp_path)
    assert (settings.tasks, settings.jobs) == ("myapp.tasks:registry", 2)


def test_the_worker_options_example_builds_the_defaults() -> None:
    (code,) = [
        block
        for block in _blocks("python", "configuration.md").values()
        if "options = WorkerOptions(" in block
    ]
    scope: dict[str, object] = {}
    exec(compile(code, "docs/configuration.md", "exec"), scope)
    from graphile_py import WorkerOptions

    assert scope["options"] == WorkerOptions(forbidden_flags=["gpu"], concurrency=4)
