"""Load: 4 worker processes x concurrency 8 drain N jobs, each attempt run exactly once.

The same code as ``scripts/load_test.py`` (which runs the full 100,000), with N from
``GRAPHILE_PY_LOAD_N`` (default 3,000): jobs over no queue and 50 named queues, 5 task
kinds, 5% failing on their first attempt and 0.2% failing for good.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.load_test import LoadConfig, run_load
from tests.support import TestDatabase

LOAD_N = int(os.environ.get("GRAPHILE_PY_LOAD_N", "3000"))


@pytest.mark.slow
def test_load_drains_every_job_exactly_once_per_attempt(db: TestDatabase, tmp_path: Path) -> None:
    config = LoadConfig(jobs=LOAD_N, processes=4, concurrency=8, poll_interval=0.5, timeout=600)
    report = run_load(db.dsn, schema=db.schema, workdir=tmp_path, config=config, log=print)
    print(report.summary())
    assert report.problems() == [], report.summary()
    assert report.jobs_processed == LOAD_N
    assert report.faults_injected > 0 and report.named_queue_executions > 0
    assert report.permanent_failures_left == report.permanent_failures_expected > 0


def test_the_load_checks_catch_lost_doubled_and_overlapping_runs(db: TestDatabase) -> None:
    """The checks above are only worth something if they can fail."""
    import psycopg

    from scripts.load_test import EXECUTIONS_DDL, LoadReport, _analyse

    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(EXECUTIONS_DDL)
        conn.execute(
            "insert into public.load_executions"
            " (job_id, n, attempt, pool_id, job_queue_id, task, os_pid, started_at,"
            " finished_at, outcome) values"
            # job 1 (n=0): its only attempt ran twice
            " (1, 0, 1, 'pool-a', null, 'k', 1, now(), now(), 'success'),"
            " (1, 0, 1, 'pool-b', null, 'k', 2, now(), now(), 'success'),"
            # jobs 2 and 3 of one named queue overlap
            " (2, 1, 1, 'pool-a', 7, 'k', 1, now(), now() + interval '2 s', 'success'),"
            " (3, 5, 1, 'pool-b', 7, 'k', 2, now() + interval '1 s', now() + interval '3 s',"
            " 'success'),"
            # job 4 (n=23) fails once and its retry never ran: lost
            " (4, 23, 1, 'pool-a', null, 'k', 1, now(), now(), 'failure')"
        )
    report = LoadReport(jobs=4, processes=2, concurrency=1, exit_codes=[0, 0])
    _analyse(db.dsn, db.schema, {1: 0, 2: 1, 3: 5, 4: 23}, report)
    assert report.double_executions == [(1, 1, 2)]
    assert report.queue_overlaps == 1
    assert report.jobs_lost == [4]
    assert len(report.problems()) == 3, report.problems()
