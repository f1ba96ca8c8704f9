"""Fixtures shared by every test directory.

``db`` gives each test its own database cloned from a template that graphile-py has
migrated once per session; ``empty_db`` gives a database with nothing in it. The worker
schema defaults to ``graphile_worker``; set ``GRAPHILE_PY_TEST_SCHEMA`` to run the whole
suite under another (CI runs a second pass with an awkward name).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    TestDatabase,
    check_server,
    create_database,
    drop_database,
    ensure_node_worker,
    unique_name,
)

SCHEMA = os.environ.get("GRAPHILE_PY_TEST_SCHEMA", "graphile_worker")


@pytest.fixture(scope="session")
def worker_schema() -> str:
    return SCHEMA


@pytest.fixture(scope="session")
def pg_server() -> None:
    check_server()


@pytest.fixture(scope="session")
def template_db(pg_server: None) -> Iterator[str]:
    """The name of a database that graphile-py has migrated; tests clone it."""
    from graphile_py.db.migrate import migrate

    name = unique_name("gpy_template")
    dsn = create_database(name)
    try:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, schema=SCHEMA)
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def make_db(pg_server: None) -> Iterator[Callable[..., TestDatabase]]:
    """Databases owned by this test: ``make_db()`` is empty, ``make_db(template=...)`` a clone."""
    created: list[str] = []

    def factory(*, template: str | None = None, schema: str = SCHEMA) -> TestDatabase:
        name = unique_name("gpy_test")
        dsn = create_database(name, template=template)
        created.append(name)
        return TestDatabase(name=name, dsn=dsn, schema=schema)

    yield factory
    for name in created:
        drop_database(name)


@pytest.fixture
def db(make_db: Callable[..., TestDatabase], template_db: str) -> TestDatabase:
    """A migrated database of this test's own."""
    return make_db(template=template_db)


@pytest.fixture
def empty_db(make_db: Callable[..., TestDatabase]) -> TestDatabase:
    """A database with no worker schema in it."""
    return make_db()


@pytest.fixture(scope="session")
def node_worker() -> Path:
    """The directory of the installed graphile-worker 0.18.0 npm package."""
    return ensure_node_worker()
