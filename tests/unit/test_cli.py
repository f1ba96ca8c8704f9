"""The command line without a database: help, usage errors and their messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from graphile_py.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("DATABASE_URL", "PGDATABASE", "GRAPHILE_PY_TASKS", "GRAPHILE_WORKER_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_help_lists_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "migrate" in result.output and "worker" in result.output
    worker_help = runner.invoke(main, ["worker", "--help"]).output
    for flag in (
        "--connection",
        "--jobs",
        "--once",
        "--schema",
        "--poll-interval",
        "--max-pool-size",
        "--tasks",
        "--embedded",
    ):
        assert flag in worker_help


def test_worker_without_tasks_says_how_to_give_them(runner: CliRunner) -> None:
    result = runner.invoke(main, ["worker", "-c", "postgresql://x/y"])
    assert result.exit_code == 1
    assert "no tasks given" in result.output and "--tasks" in result.output


def test_no_connection_is_an_error_not_a_silent_fallback(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "gpy_cli_tasks.py").write_text("registry = {'t': lambda p, h: None}\n")
    result = runner.invoke(main, ["worker", "--tasks", "gpy_cli_tasks:registry"])
    assert result.exit_code == 1
    assert "no database to connect to" in result.output
    assert "--embedded" in result.output and "DATABASE_URL" in result.output
    result = runner.invoke(main, ["migrate"])
    assert result.exit_code == 1 and "no database to connect to" in result.output


def test_unreachable_database_is_a_one_line_error(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["migrate", "-c", "postgresql://postgres@127.0.0.1:1/db?connect_timeout=2"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: Connecting to the database failed")
    assert "Traceback" not in result.output


def test_malformed_connection_string(runner: CliRunner) -> None:
    result = runner.invoke(main, ["migrate", "-c", "this is = not a = dsn"])
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output


def test_bad_task_spec(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["worker", "-c", "postgresql://x/y", "--tasks", "nope_not_a_module:registry"]
    )
    assert result.exit_code == 1
    assert "could not find the task module 'nope_not_a_module'" in result.output


def test_bad_flag_values_are_usage_errors(runner: CliRunner) -> None:
    result = runner.invoke(main, ["worker", "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs" in result.output


def test_a_named_crontab_that_does_not_exist_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "gpy_cli_tasks2.py").write_text("registry = {'t': lambda p, h: None}\n")
    result = runner.invoke(
        main,
        [
            "worker",
            "-c",
            "postgresql://x/y",
            "--tasks",
            "gpy_cli_tasks2:registry",
            "--crontab",
            "no-such-crontab",
        ],
    )
    assert result.exit_code == 1
    assert "crontab file 'no-such-crontab' does not exist" in result.output
