"""One PgBouncer per test session, in transaction mode, in front of the shared server.

``pooled`` is the test's own database (the ``db`` fixture's) reached through it; ``db``
itself stays the direct route, for set-up, checks and the listen URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pgbouncer.server import PgBouncer, in_front_of_the_test_server
from tests.support import TestDatabase


@pytest.fixture(scope="session")
def pgbouncer(pg_server: None) -> Iterator[PgBouncer]:
    bouncer = in_front_of_the_test_server()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pooled(db: TestDatabase, pgbouncer: PgBouncer) -> TestDatabase:
    """The test's database, through PgBouncer."""
    return TestDatabase(name=db.name, dsn=pgbouncer.dsn(db.name), schema=db.schema)
