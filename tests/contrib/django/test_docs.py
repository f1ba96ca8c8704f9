"""docs/django.md's Python examples run, in a Django project made of them.

Each Python block of the page starts with a comment that says what it is:

- ``# mysite/settings.py``, ``# myapp/tasks.py`` ...: a file of the project. Settings
  blocks are added to the end of a base settings file (the database, the apps a new
  project has, mail written to files); the others are the whole file;
- ``# python manage.py shell``: code typed in one ``manage.py shell`` session: the blocks
  run in order, in one namespace, as the page reads;
- ``# python manage.py shell (after python manage.py graphile_worker --once --history)``:
  the same, after that command has run (as a real process).

A block that says none of these fails the test. On Django 5.2, ``django.tasks`` is read as
``django_tasks`` (the backport), as the page says to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import django

from tests.contrib.django.helpers import queue_jobs
from tests.support import TestDatabase

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "django.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
FILE = re.compile(r"# ((?:mysite|myapp)/\w+\.py)\n")
SHELL = "# python manage.py shell\n"
WORKER = ["graphile_worker", "--once", "--history"]
AFTER_WORKER = f"# python manage.py shell (after python manage.py {' '.join(WORKER)})\n"

BASE_SETTINGS = """
import os

import django
from psycopg.conninfo import conninfo_to_dict

_DB = conninfo_to_dict(os.environ["DATABASE_URL"])
SECRET_KEY = "docs example"
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
    "myapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _DB["dbname"],
        "USER": _DB.get("user", "postgres"),
        "HOST": _DB.get("host", "127.0.0.1"),
        "PORT": _DB.get("port", "5432"),
    }
}
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ["MAIL_DIR"]
"""

URLS = """
from django.urls import path

from myapp.views import signup

urlpatterns = [path("signup/", signup)]
"""

# Runs the shell blocks in one namespace (the worker in between where a block says so),
# then signs up through the page's view, as a request would.
RUNNER = """
import json, subprocess, sys
import django
django.setup()
namespace = {}
for block in json.load(open(sys.argv[1])):
    if block["after_worker"]:
        subprocess.run([sys.executable, "manage.py", *block["worker"]], check=True)
    exec(compile(block["code"], block["where"], "exec"), namespace)
from django.test import Client
response = Client().post("/signup/", {"username": "grace", "email": "grace@example.com"})
assert response.status_code == 200, response.content
print("SIGNED UP", response.json()["email_task"])
"""


def _blocks() -> list[str]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def _for_this_django(code: str) -> str:
    return code if django.VERSION >= (6, 0) else code.replace("django.tasks", "django_tasks")


def test_every_python_block_says_what_it_is() -> None:
    blocks = _blocks()
    assert len(blocks) >= 5
    for code in blocks:
        assert FILE.match(code) or code.startswith((SHELL, AFTER_WORKER)), code[:80]


def test_the_page_runs_as_a_project(make_db: Callable[..., TestDatabase], tmp_path: Path) -> None:
    db = make_db()
    project = tmp_path / "project"
    for package in ("mysite", "myapp"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
    (project / "mysite" / "settings.py").write_text(BASE_SETTINGS)
    (project / "mysite" / "urls.py").write_text(URLS)
    (project / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    session = []
    for number, block in enumerate(_blocks(), start=1):
        code = _for_this_django(block)
        where = f"docs/django.md python block {number}"
        if match := FILE.match(code):
            path = project / match.group(1)
            with path.open("a" if path.name == "settings.py" else "w") as file:
                file.write("\n" + code)
        else:
            after = code.startswith(AFTER_WORKER)
            session.append({"code": code, "where": where, "after_worker": after, "worker": WORKER})
    (tmp_path / "session.json").write_text(json.dumps(session))
    (tmp_path / "runner.py").write_text(RUNNER)
    mail = tmp_path / "mail"
    env = {
        **os.environ,
        "DATABASE_URL": db.dsn,
        "MAIL_DIR": str(mail),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        # graphile_py from this checkout (the Django 6 run's venv does not install it).
        "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
    }

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("manage.py", "migrate", "--verbosity", "0")
    output = run(str(tmp_path / "runner.py"), str(tmp_path / "session.json"))
    assert " READY" in output and "no job 987654321 in the queue" in output
    assert "charging order 7: 1999 cents (attempt 1)" in output
    # The welcome email went out, from the worker process.
    sent = "".join(path.read_text() for path in mail.iterdir())
    assert "To: ada@example.com" in sent
    # Left in the queue: the email due in an hour, the one added by SQL (the page did not
    # run a worker after it), and the signup's.
    waiting = sorted(job["payload"]["args"][0] for job in queue_jobs(db))
    assert waiting == ["bob@example.com", "eve@example.com", "grace@example.com"]
