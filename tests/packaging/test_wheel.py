"""The package as a user gets it: build the sdist and wheel, install the wheel, use it.

``python -m build`` makes the sdist from a copy of the checkout, then the wheel from the
sdist (so a file the sdist forgets is missing from the wheel too). The wheel is installed
with its dependencies and the ``metrics`` extra (written ``WHEEL[metrics]``, as the
README's Install section does) into a fresh virtualenv, and the command line is run
from there, in a directory outside the checkout: ``--help``, ``migrate`` on a
throwaway database, ``add-job``, and ``worker --once`` with a small task module, whose
job must run. About 20 s with a warm pip cache (the build and the install use it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support import TestDatabase, unavailable

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"

SMOKE_TASKS = """\
import json
import os
from pathlib import Path

from graphile_py import TaskRegistry

registry = TaskRegistry()


@registry.task
def smoke(payload, helpers):
    Path(os.environ["SMOKE_OUT"]).write_text(json.dumps(payload))
"""


@dataclass(frozen=True)
class Built:
    source: Path
    wheel: Path
    sdist: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result  # type: ignore[no-any-return]


def _source_copy(target: Path) -> Path:
    """The checkout's files as git sees them (tracked, or new and not ignored)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        unavailable("the packaging test copies the checkout with git, which is not here")
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree, not yet committed
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if importlib.util.find_spec("build") is None:
        unavailable("the 'build' package is missing: pip install -e '.[test]'")
    base = tmp_path_factory.mktemp("packaging")
    source = _source_copy(base / "source")
    dist = base / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)])
    (wheel,) = dist.glob("graphile_py-*.whl")
    (sdist,) = dist.glob("graphile_py-*.tar.gz")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    # With dependencies, from the configured index (or pip's cache): the CLI must run.
    # With an extra, written as the README's Install section writes it.
    _run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{wheel}[metrics]",
        ]
    )
    yield Built(source=source, wheel=wheel, sdist=sdist, venv=venv)


def _package_files(source: Path) -> set[str]:
    """What the wheel must hold: every module, SQL file, static file and py.typed.

    Read from the copy the wheel was built from (the checkout may change meanwhile).
    """
    wanted = set()
    for path in (source / "graphile_py").rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        relative = path.relative_to(source).as_posix()
        if path.suffix in {".py", ".sql"} or path.name == "py.typed" or "/static/" in relative:
            wanted.add(relative)
    return wanted


def test_the_wheel_holds_the_sql_static_files_and_py_typed(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"graphile_py-{VERSION}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"graphile_py-{VERSION}.dist-info/entry_points.txt").decode()
    package = {name for name in names if name.startswith("graphile_py/")}
    wanted = _package_files(built.source)
    assert wanted - package == set(), "files missing from the wheel"
    assert any(name.startswith("graphile_py/db/migrations/0") for name in package)
    assert "graphile_py/db/migrations/000020.sql" in package
    assert "graphile_py/db/side_migrations/000001.sql" in package
    assert "graphile_py/extras/dashboard/static/index.html" in package
    assert "graphile_py/py.typed" in package
    assert not any(name.startswith("tests/") for name in names)
    assert f"graphile_py-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "graphile-py = graphile_py.cli:main" in entry_points
    extras = {
        line.removeprefix("Provides-Extra: ")
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra: ")
    }
    assert {"embedded", "dashboard", "metrics", "test"} <= extras
    assert "docker" not in extras  # nothing used it


def test_the_sdist_holds_what_the_wheel_is_built_from(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE"} <= names
    assert _package_files(built.source) - names == set(), "files missing from the sdist"


def _env(**extra: str) -> dict[str, str]:
    # Nothing of the checkout or of this test run may leak into the installed program.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRAPHILE_PY_", "GRAPHILE_WORKER_", "PYTHON", "VIRTUAL_ENV"))
        and key != "DATABASE_URL"
    }
    return {**env, **extra}


def test_the_installed_command_runs_a_job(
    built: Built, empty_db: TestDatabase, tmp_path: Path
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    (work / "smoke_tasks.py").write_text(SMOKE_TASKS)
    out = tmp_path / "ran.json"
    env = _env(SMOKE_OUT=str(out), HOME=str(tmp_path))
    graphile_py = str(built.bin / "graphile-py")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([graphile_py, *args], cwd=work, env=env)

    where = _run(
        [str(built.bin / "python"), "-c", "import graphile_py; print(graphile_py.__file__)"],
        cwd=work,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(built.venv)), f"imported from {where}, not the installed wheel"

    _run([str(built.bin / "python"), "-c", "import prometheus_client"], cwd=work, env=env)

    helped = run("--help").stdout
    for command in ("worker", "migrate", "add-job", "status", "jobs", "dashboard"):
        assert command in helped
    assert VERSION in run("--version").stdout

    migrated = run("migrate", "-c", empty_db.dsn).stdout
    assert "Schema 'graphile_worker' is up to date (migrations applied: 1, 2," in migrated

    added = json.loads(run("add-job", "smoke", "-p", '{"answer": 42}', "-c", empty_db.dsn).stdout)
    assert added["task_identifier"] == "smoke"

    worked = run("worker", "--once", "--tasks", "smoke_tasks:registry", "-c", empty_db.dsn)
    assert f"Completed task {added['id']} (smoke" in worked.stderr
    assert json.loads(out.read_text()) == {"answer": 42}
    with psycopg.connect(empty_db.dsn) as conn:
        left = conn.execute("select count(*) from graphile_worker.jobs").fetchone()
    assert left == (0,)


def test_an_extra_that_is_not_installed_says_how_to_install_it(
    built: Built, empty_db: TestDatabase, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(built.bin / "graphile-py"), "dashboard", "-c", empty_db.dsn],
        cwd=tmp_path,
        env=_env(HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "'dashboard' extra" in result.stderr
