"""Tests that must fail: the outer test checks that each fails with a helpful message."""

from __future__ import annotations

from graphile_py import add_job


def test_expect_wrong_payload(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "send_welcome", {"email": "real@example.com"}, queue_name="mail")
        add_job(conn, "send_tips", {"email": "real@example.com"})
    graphile_jobs.assert_job_enqueued(
        "send_welcome", payload_contains={"email": "other@example.com"}
    )


def test_expect_no_jobs(graphile_db, graphile_jobs):
    with graphile_db.connect() as conn:
        add_job(conn, "send_tips", {"email": "left@example.com"})
    graphile_jobs.assert_no_jobs()


def test_expect_inline_failure_fails_the_test(graphile_db, graphile_inline):
    with graphile_db.connect() as conn:
        add_job(conn, "always_fails", {"email": "nobody@example.com"})
