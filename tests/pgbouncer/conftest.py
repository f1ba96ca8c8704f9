"""One PgBouncer per test session, in transaction mode, in front of the shared server.

``pooled`` is the test's own database (the ``db`` fixture's) reached through it; ``db``
itself stays the direct route, for set-up, checks and the listen URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pgbouncer.server import PgBouncer
from tests.support import TestDatabase, admin_dsn


@pytest.fixture(scope="session")
def pgbouncer(pg_server: None) -> Iterator[PgBouncer]:
    from psycopg.conninfo import conninfo_to_dict

    server = conninfo_to_dict(admin_dsn())
    bouncer = PgBouncer(
        server_port=int(str(server.get("port") or 5432)),
        server_password=str(server["password"]) if server.get("password") else None,
    ).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pooled(db: TestDatabase, pgbouncer: PgBouncer) -> TestDatabase:
    """The test's database, through PgBouncer."""
    return TestDatabase(name=db.name, dsn=pgbouncer.dsn(db.name), schema=db.schema)
