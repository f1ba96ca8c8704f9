"""Property-based fuzzing of the dashboard API from its own OpenAPI document.

Schemathesis reads ``/api/v1/openapi.json`` from a real dashboard server backed by this
test's database (seeded with jobs in every state, so small generated ids hit real jobs),
generates valid and invalid requests for each operation, and sends them over HTTP. The
properties checked: no 5xx answer for any input (the API's promise), and every answer
has a status code and a body shape that the document declares. Bounded and derandomized,
so a run is short and repeatable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from graphile_py import WorkerUtils
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase
from tests.support.workers import run_once

#: Examples per operation and mode: about a minute for the whole API on two shared cores.
MAX_EXAMPLES = 40

#: No 5xx for any input; and every answer is one the document declares, in its shape.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

#: Every operation, and whether it takes input (only those get invalid-input examples).
OPERATIONS = {
    "GET /api/v1/info": False,
    "GET /api/v1/stats": False,
    "GET /api/v1/jobs": True,
    "GET /api/v1/jobs/{job_id}": True,
    "GET /api/v1/jobs/{job_id}/attempts": True,
    "GET /api/v1/history": True,
    "GET /api/v1/workers": True,
    "GET /api/v1/queues": False,
    "GET /api/v1/tasks": False,
    "GET /api/v1/cron": False,
    "GET /api/v1/payload-schemas": False,
    # Any text is an identifier: there are no invalid requests to generate.
    "GET /api/v1/payload-schemas/{identifier}": False,
    "GET /api/v1/metrics/history": True,
    "POST /api/v1/jobs": True,
    "POST /api/v1/jobs/retry": True,
    "POST /api/v1/jobs/{job_id}/retry": True,
    "POST /api/v1/jobs/{job_id}/reschedule": True,
    "DELETE /api/v1/jobs/{job_id}": True,
    "POST /api/v1/jobs/{job_id}/replay": True,
}
RUNS = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label, has_input in OPERATIONS.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if has_input or mode is GenerationMode.POSITIVE
]


def _seed(db: TestDatabase, utils: WorkerUtils) -> None:
    def boom(payload: Any, helpers: Any) -> None:
        raise RuntimeError("boom")

    utils.add_job("boom", {"n": 1}, max_attempts=1, queue_name="q")
    utils.add_job("boom", {"n": 2}, max_attempts=4)
    run_once(db, {"boom": boom})
    for n in range(6):
        utils.add_job("task", {"n": n}, job_key=f"k{n}" if n % 2 else None)
    utils.add_job("later", run_at=datetime.now(UTC) + timedelta(days=1), queue_name="q")


@pytest.fixture
def api(db: TestDatabase) -> Iterator[Any]:
    """The OpenAPI schema, as schemathesis loads it from a live, seeded dashboard."""
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        _seed(db, utils)
        app = create_app(utils, allow_actions=True, crontab="0 4 * * * nightly\n")
        with BackgroundServer(app) as server:
            yield schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")


def test_every_operation_is_fuzzed(api: Any) -> None:
    labels = {operation.ok().label for operation in api.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_no_request_gets_a_server_error(api: Any, label: str, mode: GenerationMode) -> None:
    [operation] = [op.ok() for op in api.get_all_operations() if op.ok().label == label]
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case) -> None:
        # The header a cross-site form cannot send: without it every bodyless POST would
        # stop at the CSRF guard and the handler behind it would never be fuzzed.
        response = case.call(headers={"X-Requested-With": "schemathesis"})
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    check()
    print(f"{label} {mode.value}: {sorted(statuses.items())}")
    if mode is GenerationMode.POSITIVE:
        # Valid requests must reach the handlers: the guard refuses none of them, and
        # most succeed (or find no such job).
        assert 403 not in statuses and 422 not in statuses, statuses
        assert statuses[200] + statuses[201] + statuses[404] + statuses[409] > 0, statuses
