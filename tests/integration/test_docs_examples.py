"""The examples in docs/ and examples/ run, so they cannot rot.

A fenced ```python block whose first line is ``# test: run`` is executed against a
fresh database given as DATABASE_URL (the examples install the schema themselves).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql

from tests.support import TestDatabase
from tests.support.workers import jobs_rows

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(# test: run\n.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"]):
        for number, match in enumerate(BLOCK.finditer(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(1)))
    return found


EXAMPLES = _examples()


def test_the_docs_have_runnable_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_doc_example_runs(where: str, code: str, empty_db: TestDatabase, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "DATABASE_URL": empty_db.dsn}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"


def test_examples_enqueue_then_worker_once(empty_db: TestDatabase) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRAPHILE_WORKER_SCHEMA"}
    env["DATABASE_URL"] = empty_db.dsn
    enqueue = subprocess.run(
        [sys.executable, "examples/enqueue.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert enqueue.returncode == 0, enqueue.stderr
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphile_py",
            "worker",
            "--tasks",
            "examples.tasks:registry",
            "--once",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert "Completed task" in worker.stderr
    assert "Failed task" not in worker.stderr
    default_schema = TestDatabase(empty_db.name, empty_db.dsn, "graphile_worker")
    assert jobs_rows(default_schema) == []


# -- docs/events.md: the entry point "With the command line's settings" ------------------

ENTRY_POINT = re.compile(r"```python\n(# run_worker\.py\n.*?)```", re.DOTALL)

METRICS_MODULE = """\
import os

from graphile_py import WorkerEvents


class Metrics(WorkerEvents):
    def job_complete(self, worker_id, job, error):
        with open(os.environ["DOC_EVENTS_OUT"], "a") as out:
            out.write(f"{job.task_identifier} {'failed' if error else 'ok'}\\n")
"""

TASKS_MODULE = """\
from graphile_py import TaskRegistry

registry = TaskRegistry()


@registry.task
def doc_entry_point(payload, helpers):
    pass
"""


def _entry_point_project(tmp_path: Path) -> Path:
    found = ENTRY_POINT.search((ROOT / "docs" / "events.md").read_text())
    assert found, "docs/events.md no longer has its run_worker.py entry point"
    (tmp_path / "run_worker.py").write_text(found.group(1))
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "metrics.py").write_text(METRICS_MODULE)
    (tmp_path / "myapp" / "tasks.py").write_text(TASKS_MODULE)
    return tmp_path / "run_worker.py"


@pytest.mark.parametrize("crontab", ["none", "default", "missing"])
def test_the_events_entry_point_runs_with_the_command_lines_settings(
    crontab: str, db: TestDatabase, tmp_path: Path
) -> None:
    import signal
    import time

    from graphile_py import WorkerUtils

    script = _entry_point_project(tmp_path)
    out = tmp_path / "events.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHILE_PY_")}
    env.update(DATABASE_URL=db.dsn, GRAPHILE_WORKER_SCHEMA=db.schema, DOC_EVENTS_OUT=str(out))
    if crontab == "default":  # ./crontab, as the command reads it
        (tmp_path / "crontab").write_text("0 4 * * * doc_entry_point\n")
    if crontab == "missing":
        env["GRAPHILE_PY_CRONTAB"] = "no-such-crontab"
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        utils.add_job("doc_entry_point")
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if crontab == "missing":
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 1
            assert "crontab file 'no-such-crontab' does not exist" in stderr
            return
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_text()) and process.poll() is None:
            assert time.monotonic() < deadline, "the entry point never ran the job"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert out.read_text() == "doc_entry_point ok\n"
    with db.connect() as conn:
        known = conn.execute(
            sql.SQL("select identifier from {}._private_known_crontabs").format(
                sql.Identifier(db.schema)
            )
        ).fetchall()
    assert known == ([("doc_entry_point",)] if crontab == "default" else [])


# -- every python block, run or not, is valid and imports what exists ---------------------

ANY_PYTHON = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _python_blocks() -> list[tuple[str, str]]:
    found = []
    for page in sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"]):
        text = page.read_text()
        for match in ANY_PYTHON.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _python_blocks(), ids=lambda value: value[:40])
def test_every_python_block_parses_and_imports_names_that_exist(where: str, code: str) -> None:
    import ast
    import importlib

    tree = ast.parse(code, filename=where)  # a SyntaxError names the page and line
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("graphile_py")):
            continue
        module = importlib.import_module(node.module or "")
        for alias in node.names:
            if not hasattr(module, alias.name):
                importlib.import_module(f"{node.module}.{alias.name}")  # a submodule, or fail
