"""The registry's Prometheus metrics with a real pool: pools alive, pools lost, jobs rescued.

A silent pool is written into the registry holding two jobs; the real pool, heartbeating
every half second, declares it lost and releases them, and its metrics count that.
"""

from __future__ import annotations

from psycopg import sql

from graphile_py import WorkerUtils
from graphile_py.extras.metrics.collectors import WorkerMetrics
from graphile_py.extras.metrics.server import serve_metrics
from tests.integration.test_metrics import scrape, value
from tests.support import TestDatabase
from tests.support.side_rows import register_pool, side_identifier
from tests.support.workers import Recorder, claim_like_a_worker, running_pool, wait_for

SILENT = "pool-silent"


def test_pools_alive_lost_and_jobs_rescued(db: TestDatabase) -> None:
    ran = Recorder()
    with WorkerUtils(db.dsn, schema=db.schema, run_migrations=False) as utils:
        for n in range(2):
            utils.add_job("held", {"n": n})
            claim_like_a_worker(db, "held", SILENT)
    register_pool(db, SILENT, heartbeat_ago=120)  # its timeout is 20 s: it is overdue
    metrics = WorkerMetrics()
    with (
        running_pool(
            db,
            {"held": lambda payload, helpers: ran.add(payload["n"])},
            events=metrics,
            heartbeat_interval=0.5,
            heartbeat_timeout=2.0,
            poll_interval=0.5,
        ) as pool,
        serve_metrics(pool, port=0, sample_interval=0.2) as server,
    ):
        wait_for(lambda: len(ran) == 2, timeout=30)
        samples = scrape(server.url)
        assert value(samples, "graphile_py_pools_lost_total") == 1
        assert value(samples, "graphile_py_jobs_rescued_total") == 2
        # The sampler sees the real pool alive and, once rescued, nobody overdue.
        wait_for(
            lambda: (
                value(scrape(server.url), "graphile_py_pools_alive") == 1
                and value(scrape(server.url), "graphile_py_pools_overdue") == 0
            ),
            timeout=30,
        )
    assert sorted(ran.items) == [0, 1]


def test_without_the_side_schema_the_pool_gauges_are_absent(db: TestDatabase) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(side_identifier(db)))
    metrics = WorkerMetrics()
    with (
        running_pool(db, {"x": lambda payload, helpers: None}, events=metrics) as pool,
        serve_metrics(pool, port=0, sample_interval=0.2) as server,
    ):
        wait_for(
            lambda: (
                value(scrape(server.url), "graphile_py_queue_jobs", task="x", state="ready") == 0
            )
        )
        samples = scrape(server.url)
        assert value(samples, "graphile_py_pools_alive") is None
        assert value(samples, "graphile_py_queue_sample_errors_total") == 0
        assert value(samples, "graphile_py_pools_lost_total") == 0
