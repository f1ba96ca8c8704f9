"""The dashboard page in a real headless Chromium, with a real worker on the same database.

A job whose task fails until a file exists, with one attempt, fails permanently; the
page shows it; we fix the cause, press Retry, and watch the worker run it and the page
update. Screenshots go to $GRAPHILE_PY_TEST_ARTIFACTS (default: artifacts/ at the
repository root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from graphile_py import TaskRegistry, WorkerUtils
from graphile_py.admin.inspector import Inspector
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase, unavailable
from tests.support.workers import running_pool, wait_for

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]

sync_api = pytest.importorskip("playwright.sync_api")
# The page refreshes every 5 s: give expectations a few refreshes to come true.
sync_api.expect.set_options(timeout=20_000)


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("GRAPHILE_PY_TEST_ARTIFACTS") or REPO_ROOT / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"Chromium is not installed at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records script errors (a CSP violation is one) and failed loads.

    API answers such as 404 for a job that has just completed are part of the page's
    normal life, so only failures to load the page's own files are recorded.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    page.console_errors = []

    def console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            page.console_errors.append(message.text)

    def response(answer: Any) -> None:
        if answer.status >= 400 and "/api/" not in answer.url:
            page.console_errors.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


def test_a_failed_job_is_retried_from_the_page(
    db: TestDatabase, utils: WorkerUtils, page: Any, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    runs: list[str] = []

    def flaky_export(payload: Any, helpers: Any) -> None:
        runs.append("run")
        if not fixed.exists():
            raise RuntimeError(f"export to {payload['bucket']} failed: bucket is read-only")

    def ok(payload: Any, helpers: Any) -> None:
        pass

    app = create_app(utils, allow_actions=True, sample_interval=0.5)
    with (
        BackgroundServer(app) as server,
        running_pool(
            db, {"flaky_export": flaky_export, "ok": ok}, concurrency=2, poll_interval=0.5
        ),
    ):
        # The sampler's first sample is the baseline: jobs added before it are not "created".
        wait_for(app.state.dashboard.sampler.samples, timeout=10)
        for n in range(3):
            utils.add_job("ok", {"n": n})
        job = utils.add_job("flaky_export", {"bucket": "s3://reports"}, max_attempts=1)
        wait_for(lambda: len(runs) == 1, timeout=20)

        page.goto(server.url + "/")
        row = page.locator(f'tr.job-row[data-job-id="{job.id}"]')
        sync_api.expect(row).to_have_attribute("data-state", "failed")
        sync_api.expect(page.locator('[data-state="failed"] .card-value')).to_have_text("1")
        sync_api.expect(page.locator("#mode")).to_have_text("actions allowed")
        row.click()
        sync_api.expect(page.locator("#detail-error")).to_contain_text("bucket is read-only")
        sync_api.expect(page.locator("#detail-payload")).to_contain_text("s3://reports")
        sync_api.expect(page.locator("#chart-legend")).to_contain_text("1 failed")
        sync_api.expect(page.locator("#chart-legend")).to_contain_text("3 completed")
        page.screenshot(path=str(artifacts_dir() / "dashboard-failed-job.png"), full_page=True)

        fixed.touch()
        page.locator("#retry").click()
        sync_api.expect(page.locator("#banner")).to_contain_text(f"Job {job.id} will run now")
        wait_for(lambda: len(runs) == 2, timeout=20)
        # The auto-refresh (every 5 s) catches up with the worker.
        sync_api.expect(row).to_have_count(0, timeout=20_000)
        sync_api.expect(page.locator('[data-state="failed"] .card-value')).to_have_text("0")
        sync_api.expect(page.locator('[data-state="total"] .card-value')).to_have_text("0")
        sync_api.expect(page.locator("#chart-legend")).to_contain_text("4 completed")
        sync_api.expect(page.locator("#detail")).to_be_hidden()
        page.screenshot(path=str(artifacts_dir() / "dashboard-after-retry.png"), full_page=True)
    assert page.console_errors == []


def test_read_only_page_hides_the_buttons(utils: WorkerUtils, page: Any) -> None:
    job = utils.add_job("report", {"month": "2026-11"})
    with BackgroundServer(create_app(utils, allow_actions=False)) as server:
        page.goto(server.url + "/")
        sync_api.expect(page.locator("#mode")).to_have_text("read-only")
        page.locator(f'tr.job-row[data-job-id="{job.id}"]').click()
        sync_api.expect(page.locator("#detail-payload")).to_contain_text("2026-11")
        sync_api.expect(page.locator("#detail-actions")).to_be_hidden()
        sync_api.expect(page.locator("#retry-failed")).to_be_hidden()
        sync_api.expect(page.locator("#add-job")).to_be_hidden()
    assert page.console_errors == []


def test_token_from_the_url_is_kept_for_the_session_and_removed_from_the_url(
    utils: WorkerUtils, page: Any
) -> None:
    utils.add_job("report")
    with BackgroundServer(create_app(utils, allow_actions=True, token="tök3n")) as server:
        page.goto(server.url + "/")
        sync_api.expect(page.locator("#login")).to_be_visible()  # no token yet: asks for one
        page.goto(server.url + "/?token=t%C3%B6k3n")
        sync_api.expect(page.locator(".job-row")).to_have_count(1)
        assert "token" not in page.url
        page.reload()  # sessionStorage keeps it
        sync_api.expect(page.locator(".job-row")).to_have_count(1)
        sync_api.expect(page.locator("#login")).to_be_hidden()
    assert page.console_errors == []


def test_filters_and_enqueue_from_the_page(utils: WorkerUtils, page: Any) -> None:
    for n in range(3):
        utils.add_job("alpha", {"n": n})
    utils.add_job("beta", queue_name="serial")
    with BackgroundServer(create_app(utils, allow_actions=True)) as server:
        page.goto(server.url + "/")
        sync_api.expect(page.locator(".job-row")).to_have_count(4)
        page.locator("#tasks-table a", has_text="alpha").click()
        sync_api.expect(page.locator(".job-row")).to_have_count(3)
        page.locator("#filters button[type=reset]").click()
        sync_api.expect(page.locator(".job-row")).to_have_count(4)

        page.locator("#add-job summary").click()
        form = page.locator("#add-form")
        form.locator("[name=task]").fill("gamma")
        form.locator("[name=queue]").fill("serial")
        form.locator("[name=payload]").fill('{"hello": "world"}')
        form.locator("button[type=submit]").click()
        sync_api.expect(page.locator(".job-row")).to_have_count(5)
        sync_api.expect(page.locator("#detail-payload")).to_contain_text('"hello": "world"')
        sync_api.expect(page.locator("#queues-table")).to_contain_text("serial")
    [added] = [r for r in utils_jobs(utils) if r["task_identifier"] == "gamma"]
    assert added["queue_name"] == "serial"
    assert page.console_errors == []


def utils_jobs(utils: WorkerUtils) -> list[dict[str, Any]]:
    return [
        {"task_identifier": r.job.task_identifier, "queue_name": r.job.queue_name}
        for r in Inspector(utils).list_jobs()
    ]


def test_reschedule_and_remove_from_the_page(utils: WorkerUtils, page: Any) -> None:
    keep = utils.add_job("report", {"month": "2026-10"})
    drop = utils.add_job("report", {"month": "2026-11"})
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    with BackgroundServer(create_app(utils, allow_actions=True)) as server:
        page.goto(server.url + "/")
        page.locator(f'tr.job-row[data-job-id="{keep.id}"]').click()
        page.locator("#reschedule-at").fill("2031-02-03T04:05:06")
        page.locator("#reschedule").click()
        sync_api.expect(page.locator("#banner")).to_contain_text(f"Job {keep.id} rescheduled")
        row = page.locator(f'tr.job-row[data-job-id="{keep.id}"]')
        sync_api.expect(row).to_have_attribute("data-state", "scheduled")

        page.locator(f'tr.job-row[data-job-id="{drop.id}"]').click()
        sync_api.expect(page.locator("#detail-payload")).to_contain_text("2026-11")
        page.locator("#remove").click()
        sync_api.expect(page.locator("#banner")).to_contain_text(f"Job {drop.id} removed")
        sync_api.expect(page.locator(f'tr.job-row[data-job-id="{drop.id}"]')).to_have_count(0)
    assert dialogs == [f"Remove job {drop.id}? This cannot be undone."]
    record = Inspector(utils).get_job(keep.id)
    assert record is not None and record.job.run_at is not None
    assert record.job.run_at.year == 2031
    assert Inspector(utils).get_job(drop.id) is None
    assert page.console_errors == []


def test_rescheduling_a_permanently_failed_job_says_it_stays_failed(
    utils: WorkerUtils, page: Any
) -> None:
    """Reschedule keeps attempts: the page says the job is still failed, and how to retry."""
    failed = utils.add_job("report", {"month": "2026-09"}, max_attempts=1)
    utils.permanently_fail_jobs([failed.id], "the report server is down")
    with BackgroundServer(create_app(utils, allow_actions=True)) as server:
        page.goto(f"{server.url}/#/jobs/{failed.id}")
        sync_api.expect(page.locator("#detail-error")).to_contain_text("report server")
        page.locator("#reschedule-at").fill("2031-02-03T04:05:06")
        page.locator("#reschedule").click()
        banner = page.locator("#banner")
        sync_api.expect(banner).to_contain_text("stays permanently failed (attempt 1 of 1)")
        sync_api.expect(banner).to_contain_text("use Retry")
    assert page.console_errors == []


def test_workers_page_history_view_and_a_gone_jobs_attempts(
    db: TestDatabase, utils: WorkerUtils, page: Any
) -> None:
    from tests.support.side_rows import ALIVE, record_sample_history, register_pool

    register_pool(db, ALIVE, succeeded=41)
    register_pool(db, "pool-lost", heartbeat_ago=900, lost_ago=30)
    record_sample_history(db)
    with BackgroundServer(create_app(utils, allow_actions=True)) as server:
        page.goto(server.url + "/#history")
        sync_api.expect(page.locator("#history-note")).to_be_hidden()
        sync_api.expect(page.locator("#history-table tr.attempt-row")).to_have_count(5)
        page.locator("#history-filters [name=outcome]").select_option("failure")
        page.locator("#history-filters button[type=submit]").click()
        failures = page.locator("#history-table tr.attempt-row")
        sync_api.expect(failures).to_have_count(2)
        sync_api.expect(failures.first).to_contain_text("refused")
        failures.first.click()
        sync_api.expect(page.locator("#detail-title")).to_contain_text("Job 7 · email (gone)")
        attempts = page.locator("#detail-attempts tr.attempt-row")
        sync_api.expect(attempts).to_have_count(3)
        sync_api.expect(attempts.nth(2)).to_have_attribute("data-outcome", "success")
        sync_api.expect(page.locator("#retry")).to_be_hidden()
        page.screenshot(path=str(artifacts_dir() / "dashboard-history.png"), full_page=True)
        page.locator("#replay").click()
        sync_api.expect(page.locator("#banner")).to_contain_text("Job 7 replayed as job")
        (replayed,) = utils_jobs(utils)
        assert replayed["task_identifier"] == "email"

        page.locator("#tabs a[data-view=workers]").click()
        sync_api.expect(page.locator("#view-history")).to_be_hidden()
        alive = page.locator(f'tr.pool-row[data-pool-id="{ALIVE}"]')
        sync_api.expect(alive).to_have_attribute("data-state", "alive")
        sync_api.expect(alive).to_contain_text("41")
        lost = page.locator('tr.pool-row[data-pool-id="pool-lost"]')
        sync_api.expect(lost).to_contain_text(f"{ALIVE}")
        sync_api.expect(page.locator("#workers-summary")).to_have_text("1 alive")
        page.screenshot(path=str(artifacts_dir() / "dashboard-workers.png"), full_page=True)
        page.locator("#tabs a[data-view=queue]").click()
        sync_api.expect(page.locator(".job-row")).to_have_count(1)
    assert page.console_errors == []


def test_history_view_says_when_history_is_off(utils: WorkerUtils, page: Any) -> None:
    with BackgroundServer(create_app(utils)) as server:
        page.goto(server.url + "/#history")
        sync_api.expect(page.locator("#history-note")).to_contain_text("--history")
        sync_api.expect(page.locator("#history-table tr.empty")).to_have_count(1)
    assert page.console_errors == []


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app/tasks.py", line 12, in export\n'
    "    upload(payload['bucket'])\n"
    "PermissionError: bucket is read-only"
)


def test_a_job_has_its_own_address_and_opens_where_you_look(utils: WorkerUtils, page: Any) -> None:
    """#/jobs/ID opens the job on load; back and forward move between jobs; a job
    clicked at the bottom of a long page opens in view; the traceback keeps its lines."""
    for n in range(60):
        utils.add_job("filler", {"n": n})
    first = utils.add_job("filler", {"n": "first"})
    failed = utils.add_job("export", {"bucket": "s3://reports"}, max_attempts=1)
    utils.permanently_fail_jobs([failed.id], TRACEBACK)
    with BackgroundServer(create_app(utils, allow_actions=True)) as server:
        page.goto(f"{server.url}/#/jobs/{failed.id}")
        detail = page.locator("#detail")
        sync_api.expect(page.locator("#detail-title")).to_have_text(f"Job {failed.id} · export")
        sync_api.expect(detail).to_be_in_viewport()
        error = page.locator("#detail-error")
        sync_api.expect(error).to_contain_text("PermissionError")
        # innerText is what is drawn: each line of the traceback on a line of its own.
        assert error.inner_text().splitlines() == TRACEBACK.splitlines()
        assert error.evaluate("e => e.tagName") == "PRE"
        page.screenshot(path=str(artifacts_dir() / "dashboard-job-traceback.png"))

        page.locator(f'tr.job-row[data-job-id="{first.id}"]').click()
        sync_api.expect(page).to_have_url(f"{server.url}/#/jobs/{first.id}")
        sync_api.expect(page.locator("#detail-payload")).to_contain_text('"first"')
        page.go_back()
        sync_api.expect(page).to_have_url(f"{server.url}/#/jobs/{failed.id}")
        sync_api.expect(page.locator("#detail-title")).to_have_text(f"Job {failed.id} · export")
        page.go_forward()
        sync_api.expect(page.locator("#detail-payload")).to_contain_text('"first"')
        page.locator("#detail-close").click()
        sync_api.expect(detail).to_be_hidden()
        sync_api.expect(page).to_have_url(f"{server.url}/#/queue")

        # The oldest job is at the bottom of a long page: scrolled there, it opens in view.
        oldest = page.locator("tr.job-row").last
        oldest.scroll_into_view_if_needed()
        assert page.evaluate("window.scrollY") > 500
        oldest_id = oldest.get_attribute("data-job-id")
        oldest.click()
        sync_api.expect(page.locator("#detail-title")).to_have_text(f"Job {oldest_id} · filler")
        sync_api.expect(detail).to_be_in_viewport()
        sync_api.expect(page.locator("#detail-title")).to_be_focused()
        # The list moved aside for the panel but did not jump: the row is still in view.
        sync_api.expect(oldest).to_be_in_viewport()
        assert page.evaluate("window.scrollY") > 500
        # Closing returns to the tab it was opened from, in one step of history.
        page.keyboard.press("Escape")
        sync_api.expect(detail).to_be_hidden()
        sync_api.expect(page).to_have_url(f"{server.url}/#/queue")
        page.goto(f"{server.url}/#/jobs/987654")
        sync_api.expect(page.locator("#detail-status")).to_contain_text("There is no job 987654")
    assert page.console_errors == []


def test_loading_and_failure_states(db: TestDatabase, utils: WorkerUtils, page: Any) -> None:
    """While the database keeps the API waiting the tables say so; when it fails, they
    and the banner say why, and the page recovers by itself once it answers again."""
    import psycopg
    from psycopg import sql

    job = utils.add_job("report", {"month": "2026-12"})
    jobs_table = sql.SQL("{}._private_jobs").format(sql.Identifier(db.schema))
    with BackgroundServer(create_app(utils, sample_interval=0.5)) as server:
        # A transaction holding the jobs table keeps every read of it waiting.
        with psycopg.connect(db.dsn) as blocker:
            blocker.execute(sql.SQL("lock table {} in access exclusive mode").format(jobs_table))
            page.goto(f"{server.url}/#/jobs/{job.id}")
            sync_api.expect(page.locator("#jobs-table tr.loading")).to_have_text("Loading…")
            sync_api.expect(page.locator("#totals .loading")).to_be_visible()
            sync_api.expect(page.locator("#detail-status")).to_have_text(f"Loading job {job.id}…")
            sync_api.expect(page.locator("#main")).to_have_attribute("aria-busy", "true")
            page.screenshot(path=str(artifacts_dir() / "dashboard-loading.png"))
            page.wait_for_timeout(1000)  # still waiting a second later
            sync_api.expect(page.locator("#jobs-table tr.loading")).to_be_visible()
        sync_api.expect(page.locator(f'tr.job-row[data-job-id="{job.id}"]')).to_be_visible()
        sync_api.expect(page.locator("#jobs-table tr.loading")).to_have_count(0)
        sync_api.expect(page.locator("#detail-payload")).to_contain_text("2026-12")
        sync_api.expect(page.locator("#detail-status")).to_be_hidden()

        # The table gone (a failing database): a fresh page says why, then recovers.
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("alter table {} rename to _private_jobs_away").format(jobs_table))
            try:
                page.reload()  # a fresh page: nothing loaded yet
                failed = page.locator("#jobs-table tr.failed")
                sync_api.expect(failed).to_contain_text("Could not load:")
                sync_api.expect(page.locator("#banner")).to_be_visible()
                sync_api.expect(page.locator("#banner")).to_contain_text("Trying again every 5 s")
                page.screenshot(path=str(artifacts_dir() / "dashboard-failed.png"))
            finally:
                away = sql.SQL("{}._private_jobs_away").format(sql.Identifier(db.schema))
                conn.execute(sql.SQL("alter table {} rename to _private_jobs").format(away))
        sync_api.expect(page.locator(f'tr.job-row[data-job-id="{job.id}"]')).to_be_visible()
        sync_api.expect(page.locator("#banner")).to_be_hidden()
    # The failed loads were answers of the API (503), not errors of the page's own.
    assert page.console_errors == []


def test_unserved_tasks_are_marked_on_the_page(
    db: TestDatabase, utils: WorkerUtils, page: Any
) -> None:
    from psycopg import sql

    from tests.support.side_rows import side_identifier

    def ok(payload: Any, helpers: Any) -> None:
        pass

    with (
        running_pool(db, {"other": ok}, poll_interval=0.5),
        BackgroundServer(create_app(utils, allow_actions=True)) as server,
    ):
        stuck = utils.add_job("nobody_knows", {"typo": True})
        waiting = utils.add_job("other", run_at=datetime.now(UTC) + timedelta(hours=1))
        page.goto(server.url + "/")
        row = page.locator(f'tr.job-row[data-job-id="{stuck.id}"]')
        sync_api.expect(row).to_have_attribute("data-unserved", "true")
        sync_api.expect(row.locator(".unserved-mark")).to_have_text("⚠ no worker")
        other = page.locator(f'tr.job-row[data-job-id="{waiting.id}"]')
        sync_api.expect(other.locator(".unserved-mark")).to_have_count(0)
        notice = page.locator('#unserved li[data-task="nobody_knows"]')
        sync_api.expect(notice).to_contain_text("no live graphile-py pool serves it")
        sync_api.expect(page.locator('#unserved li[data-task="other"]')).to_have_count(0)
        task_row = page.locator('#tasks-table tr[data-task="nobody_knows"]')
        sync_api.expect(task_row).to_have_class("unserved")
        sync_api.expect(task_row.locator("td").last).to_have_text("⚠ no live pool")
        served = page.locator('#tasks-table tr[data-task="other"] td').last
        sync_api.expect(served).to_have_text("1 pool")
        row.click()
        sync_api.expect(page.locator("#detail-fields")).to_contain_text(
            "Node workers are not visible"
        )
        page.screenshot(path=str(artifacts_dir() / "dashboard-unserved.png"), full_page=True)
        # Adding a job for a task nobody serves says so at once.
        page.locator("#add-job summary").click()
        page.locator("#add-form [name=task]").fill("other_typo")
        page.locator("#add-form button[type=submit]").click()
        sync_api.expect(page.locator("#banner")).to_contain_text(
            "added, but it may wait forever: no live graphile-py pool serves it"
        )

    # Without the registry, the jobs tell: none attempted, and waiting for minutes.
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(side_identifier(db)))
        conn.execute(
            sql.SQL("update {}._private_jobs set run_at = now() - interval '5 minutes'").format(
                sql.Identifier(db.schema)
            )
        )
    with BackgroundServer(create_app(utils)) as server:
        page.goto(server.url + "/")
        row = page.locator(f'tr.job-row[data-job-id="{stuck.id}"]')
        sync_api.expect(row.locator(".unserved-mark")).to_be_visible()
        task_row = page.locator('#tasks-table tr[data-task="nobody_knows"]')
        sync_api.expect(task_row.locator("td").last).to_have_text("⚠ never attempted")
        sync_api.expect(page.locator('#unserved li[data-task="nobody_knows"]')).to_contain_text(
            "the worker registry is not installed"
        )
    assert page.console_errors == []


@dataclass
class SendEmail:
    to: str
    subject: str = "hello"


TYPED_REGISTRY = TaskRegistry()


@TYPED_REGISTRY.task
def send_email(payload: SendEmail, helpers: Any) -> None: ...


def test_a_typed_tasks_payload_schema_is_shown_with_its_jobs(
    utils: WorkerUtils, page: Any
) -> None:
    """With the registry (dashboard --tasks), a typed task's job shows its payload's JSON
    schema; an untyped task's job has no such section."""
    assert set(TYPED_REGISTRY.payload_schemas()) == {"send_email"}
    typed = utils.add_job("send_email", {"to": "ada@example.com"})
    untyped = utils.add_job("filler", {"n": 1})
    app = create_app(utils, payload_schemas=TYPED_REGISTRY.payload_schemas())
    with BackgroundServer(app) as server:
        page.goto(f"{server.url}/#/jobs/{typed.id}")
        schema = page.locator("#detail-payload-schema")
        sync_api.expect(schema).to_contain_text('"subject"')
        sync_api.expect(schema).to_contain_text('"required"')
        page.goto(f"{server.url}/#/jobs/{untyped.id}")
        sync_api.expect(page.locator("#detail-payload")).to_contain_text('"n"')
        sync_api.expect(page.locator("#detail-payload-schema")).to_have_count(0)
    assert page.console_errors == []
