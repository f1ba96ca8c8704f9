"""Each setting is declared once; its flag, variable, file key, docs and limits follow.

These tests walk :data:`graphile_py.settings.SETTINGS`, so a setting added to
``WorkerOptions`` (or ``Settings``) is covered without touching them: it must reach
``WorkerOptions`` from a flag, the environment and a file, be rejected out of its
limits in all three places alike, and appear in docs/configuration.md and docs/cli.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import graphile_py.cli.run
from graphile_py import ConfigurationError, WorkerOptions
from graphile_py.cli import main
from graphile_py.cli.common import CONNECTION_SETTINGS, GROUP_SETTINGS
from graphile_py.settings import SETTINGS, KnownSetting, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
WORKER_SETTINGS = [known for known in SETTINGS.values() if known.of_worker]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for known in SETTINGS.values():
        for name in known.env_names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PGDATABASE", raising=False)
    monkeypatch.chdir(tmp_path)


def other_value(known: KnownSetting) -> Any:
    """A valid value that is not the default."""
    base, spec, default = known.declared.base_type, known.declared.spec, known.declared.default
    if base is bool:
        return not default
    if typing.get_origin(base) is list:
        return ["gpu", "big"]
    if typing.get_origin(base) is typing.Literal:
        return next(value for value in typing.get_args(base) if value != default)
    if base is int:
        return (default if default is not None else (spec.minimum or 0)) + 2
    if base is float:
        return (default if default is not None else 0.0) + 1.5
    return f"other_{known.key}"


def as_text(value: Any) -> str:
    """How the environment spells a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return str(value)


def as_toml(value: Any) -> str:
    return as_text(value) if not isinstance(value, str) else f'"{value}"'


def read_back(settings: Settings, known: KnownSetting) -> Any:
    owner = settings.worker if known.of_worker else settings
    return getattr(owner, known.attribute)


def test_names_are_unique_and_worker_options_has_each_worker_setting() -> None:
    keys = [known.key for known in SETTINGS.values()]
    env = [name for known in SETTINGS.values() for name in known.env_names]
    flags = [flag for known in SETTINGS.values() for flag in known.flags]
    assert len(set(keys)) == len(keys)
    assert len(set(env)) == len(env)
    assert len(set(flags)) == len(flags)
    fields = {field.name for field in dataclasses.fields(WorkerOptions)}
    assert {known.attribute for known in WORKER_SETTINGS} == fields - {"worker_id", "events"}


@pytest.mark.parametrize("known", SETTINGS.values(), ids=list(SETTINGS))
def test_each_source_sets_the_setting(known: KnownSetting, tmp_path: Path) -> None:
    value = other_value(known)
    assert read_back(load_settings(directory=tmp_path), known) == known.declared.default
    assert read_back(load_settings({known.name: value}, directory=tmp_path), known) == value

    config = tmp_path / "graphile_py.toml"
    config.write_text(f"{known.key} = {as_toml(value)}\n")
    assert read_back(load_settings(directory=tmp_path), known) == value
    config.unlink()

    with pytest.MonkeyPatch.context() as env:
        for name in known.env_names:
            env.setenv(name, as_text(value))
            assert read_back(load_settings(directory=tmp_path), known) == value
            env.delenv(name)


def invalid_values(known: KnownSetting) -> list[Any]:
    spec, base = known.declared.spec, known.declared.base_type
    values: list[Any] = []
    if base in (int, float):
        if spec.minimum is not None:
            values.append(spec.minimum - 1)
        if spec.above is not None:
            values.append(spec.above)
        if spec.maximum is not None:
            values.append(spec.maximum + 1)
    if base is float and spec.finite:
        values.append(float("inf"))
    if base is str and spec.nonempty:
        values.append("")
    return values


LIMITED = [(known, bad) for known in SETTINGS.values() for bad in invalid_values(known)]


@pytest.mark.parametrize(
    ("known", "bad"), LIMITED, ids=[f"{known.name}={bad!r}" for known, bad in LIMITED]
)
def test_limits_hold_alike_everywhere(known: KnownSetting, bad: Any, tmp_path: Path) -> None:
    # In Python: the dataclass's own check, naming the attribute.
    with pytest.raises(ConfigurationError, match=known.attribute):
        if known.of_worker:
            WorkerOptions(**{known.attribute: bad})
        else:
            Settings(**{known.attribute: bad})
    # From the environment or a file: the reader's check, naming the setting.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(known.env_names[-1], as_text(bad))
        with pytest.raises(ConfigurationError, match=known.name):
            load_settings(directory=tmp_path)
    # On the command line: a usage error naming the flag, or the reader's message.
    command = [] if known.name in GROUP_SETTINGS else ["worker"]
    flag = [*command, known.flags[-1], as_text(bad)]
    if known.name in GROUP_SETTINGS:
        flag += ["worker"]
    result = CliRunner().invoke(main, flag)
    if isinstance(bad, (int, float)) and math.isfinite(bad):  # click's range refuses it
        assert result.exit_code == 2 and known.flags[-1] in result.output, result.output
    else:  # what click has no type for (finite, non-empty): the settings refuse it
        assert result.exit_code == 1 and known.name in result.output, result.output


def test_every_flag_reaches_the_worker_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gpy_decl_tasks.py").write_text("registry = {'t': lambda p, h: None}\n")
    (tmp_path / "my-crontab").write_text("")
    seen: dict[str, Any] = {}

    def fake_run_worker(tasks: Any, **kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(graphile_py.cli.run, "run_worker", fake_run_worker)
    monkeypatch.setattr(graphile_py.cli.run, "load_task_map", lambda spec: {})
    args: list[str] = []
    expected: dict[str, Any] = {}
    for known in SETTINGS.values():
        if known.name in (*GROUP_SETTINGS, "embedded", "database_url", "crontab"):
            continue
        value = other_value(known)
        expected[known.name] = value
        if isinstance(value, bool):
            args.append(known.flags[-1])
        elif isinstance(value, list):
            for item in value:
                args += [known.flags[-1], item]
        else:
            args += [known.flags[-1], str(value)]
    args += ["--crontab", "my-crontab", "-c", "postgresql://flag/db"]
    result = CliRunner().invoke(main, ["worker", *args])
    assert result.exit_code == 0, result.output
    options: WorkerOptions = seen["options"]
    for known in WORKER_SETTINGS:
        assert getattr(options, known.attribute) == expected[known.name], known.name
    assert seen["metrics_port"] == expected["metrics_port"]
    assert seen["metrics_host"] == expected["metrics_host"]
    assert seen["metrics_interval"] == expected["metrics_interval"]


def test_every_setting_has_a_flag_in_help() -> None:
    runner = CliRunner()
    group_help = runner.invoke(main, ["--help"]).output
    worker_help = runner.invoke(main, ["worker", "--help"]).output
    migrate_help = runner.invoke(main, ["migrate", "--help"]).output
    for known in SETTINGS.values():
        where = group_help if known.name in GROUP_SETTINGS else worker_help
        for flag in known.flags:
            assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", where), flag
        if known.name in CONNECTION_SETTINGS:
            assert known.flags[-1] in migrate_help
        assert known.env_names[-1] in " ".join(where.split()), known.name


def table_rows(path: Path, first_header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose first header cell is ``first_header``."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            in_table = True
        elif in_table and line.startswith("|"):
            if not set(cells[0]) <= {"-", " "}:
                rows[cells[0]] = cells
        elif in_table:
            break
    return rows


def test_the_configuration_table_lists_every_setting_as_declared() -> None:
    rows = table_rows(ROOT / "docs" / "configuration.md", "setting (TOML key)")
    assert set(rows) == {f"`{known.key}`" for known in SETTINGS.values()}, (
        "docs/configuration.md's settings table and the declarations differ"
    )
    for known in SETTINGS.values():
        _, flags, env, default = rows[f"`{known.key}`"]
        for flag in known.flags:
            assert f"`{flag}" in flags, (known.key, flag)
        for name in known.env_names:
            assert f"`{name}`" in env, (known.key, name)
        if known.default_text:
            assert default.replace("`", "").startswith(known.default_text), known.key
    # ... and the list below it says what each one does.
    page = (ROOT / "docs" / "configuration.md").read_text()
    explained = " ".join(re.findall(r"^- \*\*(.+?)\*\*:", page, flags=re.MULTILINE))
    for known in SETTINGS.values():
        assert f"`{known.key}`" in explained, f"docs/configuration.md does not explain {known.key}"


def test_the_cli_page_lists_every_worker_flag() -> None:
    rows = table_rows(ROOT / "docs" / "cli.md", "flag")
    documented = " ".join(rows)
    for known in SETTINGS.values():
        if known.name not in GROUP_SETTINGS:
            assert f"`{known.flags[-1]}" in documented, known.flags[-1]
