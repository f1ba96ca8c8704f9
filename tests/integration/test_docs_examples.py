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
