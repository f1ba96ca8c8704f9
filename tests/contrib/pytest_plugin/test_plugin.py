"""The pytest plugin, as a user meets it: an example project's own test suite, run by
pytester in a subprocess with the plugin loaded from its entry point.

The example project (example_project/) has passing tests for every helper, and tests
that must fail, so that we see each assertion fire with its message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.support import admin_dsn, check_server

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent / "example_project"
# Other installed plugins that the example project does not need: importing them is most
# of a subprocess's start-up time (ours stays, loaded from its entry point).
QUIET = ("-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:anyio")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    check_server()
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    monkeypatch.setenv("GRAPHILE_TEST_DATABASE_URL", admin_dsn())
    return pytester


def graphile_databases() -> set[str]:
    """The plugin's databases on the server (templates and per-test clones)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "select datname from pg_database"
            " where datname like 'graphile\\_test\\_%' or datname like 'graphile\\_template\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_the_example_projects_suite(project: pytest.Pytester) -> None:
    before = graphile_databases()
    result = project.runpytest_subprocess(*QUIET, "-v")
    result.assert_outcomes(passed=16, failed=2, errors=1)
    # Every database the run made (a template, one per test) is gone.
    assert graphile_databases() - before == set()
    result.stdout.fnmatch_lines(
        [
            "*test_signup.py::test_inline_mode_with_a_sqlalchemy_session PASSED*",
            "E       AssertionError: expected a job for task 'send_welcome' with"
            " payload_contains={'email': 'other@example.com'}, found none.",
            "E       Queued jobs (2):",
            'E         #1 send_welcome {"email": "real@example.com"} (ready, queue \'mail\')',
            'E         #2 send_tips {"email": "real@example.com"} (ready)',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: expected no jobs.",
            'E         #1 send_tips {"email": "left@example.com"} (ready)',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_expect_inline_failure_fails_the_test*",
            "1 inline job failed (clear graphile_inline.errors, or set"
            " graphile_inline.raise_errors = False, if that was expected):",
            "  job 1 (always_fails): ValueError: no such mailbox: nobody@example.com",
        ]
    )
    # The assertion's own frames are hidden: the failure points at the user's line.
    assert "queue.py" not in result.stdout.str().split("test_expect_wrong_payload")[2]


def test_the_plugin_connects_only_when_a_fixture_asks(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_plain="def test_nothing_to_do_with_jobs():\n    assert True\n")
    project.makepyfile(test_wants_db="def test_wants_a_database(graphile_db):\n    pass\n")
    # A server that is not there: the plain test passes, the one that asks says what to set.
    monkeypatch.delenv("GRAPHILE_TEST_DATABASE_URL")
    result = project.runpytest_subprocess(
        *QUIET,
        "test_plain.py",
        "test_wants_db.py",
        "-o",
        "graphile_database_url=postgresql://nobody@127.0.0.1:1/postgres",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*graphile-py's pytest plugin could not reach the test server*",
            "*Set GRAPHILE_TEST_DATABASE_URL, or 'graphile_database_url' in your pytest ini*",
        ]
    )


def test_without_a_task_registry_run_jobs_says_how_to_give_one(project: pytest.Pytester) -> None:
    project.makefile(".ini", pytest="[pytest]\naddopts = -p no:cacheprovider\n")
    project.makepyfile(
        test_no_registry=(
            "def test_assertions_need_no_registry(graphile_jobs):\n"
            "    graphile_jobs.assert_no_jobs()\n"
            "def test_run_jobs_needs_one(graphile_jobs):\n"
            "    graphile_jobs.run_jobs()\n"
        )
    )
    result = project.runpytest_subprocess(*QUIET, "test_no_registry.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*run_jobs needs your task registry: set graphile_tasks = 'module:attribute'*"]
    )


def test_fixtures_are_listed_and_named_apart_from_ours(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*QUIET, "--fixtures")
    out = result.stdout.str()
    for name in ("graphile_db", "graphile_jobs", "graphile_inline", "graphile_tasks"):
        assert f"{name} -- " in out or f"{name} [" in out or f"\n{name}" in out, name
    assert "\ndb " not in out and "\ndb\n" not in out
