"""The task registry and loading task maps from 'module:attr'."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from graphile_py import TaskLoadError, TaskRegistry, load_task_map


def test_decorator_registers_by_name_or_explicit_identifier() -> None:
    tasks = TaskRegistry()

    @tasks.task
    def plain(payload: object, helpers: object) -> None: ...

    @tasks.task("users/verify")
    def verify(payload: object, helpers: object) -> None: ...

    assert list(tasks) == ["plain", "users/verify"]
    assert tasks["plain"] is plain and tasks["users/verify"] is verify
    assert len(tasks) == 2


def test_registry_refuses_duplicates_bad_names_and_non_callables() -> None:
    tasks = TaskRegistry({"a": lambda p, h: None})
    with pytest.raises(TaskLoadError, match="twice"):
        tasks.add("a", lambda p, h: None)
    with pytest.raises(TaskLoadError, match="longer than 128"):
        tasks.add("x" * 129, lambda p, h: None)
    with pytest.raises(TaskLoadError, match="non-empty"):
        tasks.add("", lambda p, h: None)
    with pytest.raises(TaskLoadError, match="not callable"):
        tasks.add("b", "not a function")  # type: ignore[arg-type]


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("gpy_tasks_")]:
        del sys.modules[name]


def test_load_registry_or_dict_from_the_working_directory(task_dir: Path) -> None:
    (task_dir / "gpy_tasks_ok.py").write_text(
        "from graphile_py import TaskRegistry\n"
        "registry = TaskRegistry()\n"
        "@registry.task\n"
        "def hello(payload, helpers):\n    return None\n"
        "plain = {'x': hello}\n"
    )
    assert list(load_task_map("gpy_tasks_ok:registry")) == ["hello"]
    assert list(load_task_map("gpy_tasks_ok:plain")) == ["x"]


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        ("", "gpy_tasks_missing", "module:attribute"),
        ("", "gpy_tasks_nowhere:registry", "could not find the task module"),
        ("raise RuntimeError('boom at import')\n", "gpy_tasks_boom:registry", "boom at import"),
        ("import gpy_dependency_that_is_absent\n", "gpy_tasks_dep:registry", "gpy_dependency"),
        ("registry = 1\n", "gpy_tasks_int:registry", "not int"),
        ("registry = {}\n", "gpy_tasks_empty:registry", "no tasks"),
        ("registry = {'a': 3}\n", "gpy_tasks_bad:registry", "not callable"),
        ("x = 1\n", "gpy_tasks_attr:registry", "no attribute 'registry'"),
    ],
)
def test_load_errors_name_the_problem(task_dir: Path, source: str, spec: str, message: str) -> None:
    module = spec.partition(":")[0]
    if source:
        (task_dir / f"{module}.py").write_text(source)
    with pytest.raises(TaskLoadError, match=message):
        load_task_map(spec)


def test_loading_a_registry_keeps_its_time_limits(task_dir: Path) -> None:
    (task_dir / "gpy_tasks_limits.py").write_text(
        "from graphile_py import TaskRegistry\n"
        "registry = TaskRegistry()\n"
        "@registry.task(timeout=2.5)\n"
        "def slow(payload, helpers):\n    return None\n"
    )
    loaded = load_task_map("gpy_tasks_limits:registry")
    assert isinstance(loaded, TaskRegistry)
    assert loaded.timeouts == {"slow": 2.5}
