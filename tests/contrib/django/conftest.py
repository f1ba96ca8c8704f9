"""The Django test project, configured once per process, and a database of its own per test.

Each test gets a clone of a template that graphile-py and Django's migrations have both
installed (``manage.py migrate`` on a graphile-migrated database), with Django's default
connection pointed at it. Without Django the directory is skipped locally and fails in CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import IN_CI, TestDatabase, create_database, drop_database, unique_name

try:
    import django
except ImportError:
    if IN_CI:
        raise
    collect_ignore_glob = ["test_*.py"]
else:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.contrib.django.project.settings")
    django.setup()


def _close_connections() -> None:
    """Close Django's connections in this thread, and in asgiref's shared sync thread.

    ``aenqueue``/``aget_result`` called outside of a request run on asgiref's one
    long-lived thread (``sync_to_async`` with no ``async_to_sync`` around it), whose
    connection would otherwise outlive the test's database.
    """
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    def close_all() -> None:
        for conn in connections.all():
            conn.close()

    close_all()
    asyncio.run(sync_to_async(close_all, thread_sensitive=True)())


def _point_django_at(name: str) -> None:
    from django.db import connections

    _close_connections()
    # The settings dict is shared by every thread's connection: workers' threads too.
    connections["default"].settings_dict["NAME"] = name


@pytest.fixture(scope="session")
def django_template(template_db: str) -> Iterator[str]:
    """A database with graphile-py's schema and the project's tables, to clone."""
    from django.core.management import call_command

    name = unique_name("gpy_django_template")
    create_database(name, template=template_db)
    try:
        _point_django_at(name)
        call_command("migrate", verbosity=0)
        _close_connections()
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def django_db(make_db: Callable[..., TestDatabase], django_template: str) -> Iterator[TestDatabase]:
    """This test's database, Django's default connection pointed at it."""

    db = make_db(template=django_template)
    _point_django_at(db.name)
    yield db
    _close_connections()


@pytest.fixture
def project_env(django_db: TestDatabase) -> dict[str, Any]:
    """The environment a ``manage.py`` subprocess needs to use this test's database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.contrib.django.project.settings",
        "GRAPHILE_PY_DJANGO_DSN": django_db.dsn,
    }
