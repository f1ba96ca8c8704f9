"""Django 6 (its built-in ``django.tasks``) on Python 3.12: this directory's tests again.

The main environment is Python 3.11, where Django stops at 5.2 (with the django-tasks
backport). So this test builds a Python 3.12 virtualenv with Django 6, graphile-py's
dependencies and pytest (cached under ``~/.cache/graphile-py/``, keyed by what goes in
it), and runs ``tests/contrib/django`` in it against the same PostgreSQL (and Node). No
Python 3.12 is a skip locally and a failure in CI.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import unavailable

ROOT = Path(__file__).resolve().parents[3]
INNER = "GRAPHILE_PY_DJANGO_INNER"
DJANGO_6 = "django>=6.0,<7"


def _python312() -> str | None:
    """A Python 3.12 or newer: $GRAPHILE_PY_PYTHON312, on PATH, or one pyenv installed."""
    candidates = [
        os.environ.get("GRAPHILE_PY_PYTHON312"),
        shutil.which("python3.12"),
        shutil.which("python3.13"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3"))),
    ]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], DJANGO_6, "pytest>=8"]


def _venv(python: str) -> Path:
    """The cached virtualenv (built once per set of requirements and interpreter)."""
    requirements = _requirements()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256("\n".join([version, *requirements]).encode()).hexdigest()[:12]
    venv = Path.home() / ".cache" / "graphile-py" / f"django6-venv-{key}"
    if (venv / "ready").exists():
        return venv
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(building)], check=True, timeout=120)
    install = subprocess.run(
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if install.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        unavailable(f"installing Django 6 into a Python 3.12 venv failed:\n{install.stderr}")
    (building / "ready").write_text("\n".join(requirements) + "\n")
    try:
        building.rename(venv)
    except OSError:  # another run finished first
        shutil.rmtree(building, ignore_errors=True)
    return venv


@pytest.mark.slow
def test_the_django_tests_pass_on_django_6() -> None:
    if os.environ.get(INNER):
        pytest.skip("this is the Django 6 run itself")
    python = _python312()
    if python is None:
        unavailable("Python 3.12 or newer is needed to test Django 6 (set GRAPHILE_PY_PYTHON312)")
        return
    venv = _venv(python)
    env = {**os.environ, INNER: "1", "GRAPHILE_PY_EXPECT_DJANGO": "6"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(Path(__file__).parent),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the Django 6 run failed:\n{output[-20000:]}"
    assert " passed" in output and " failed" not in output, output[-5000:]
    print(output.strip().splitlines()[-1], file=sys.stderr)
