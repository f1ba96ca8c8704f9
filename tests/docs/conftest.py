"""The example queue the docs show, as a template database for every block's copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docs.scene import build_scene
from tests.support import create_database, drop_database, unique_name


@pytest.fixture(scope="session")
def scene_template(pg_server: None) -> Iterator[str]:
    name = unique_name("gpy_docs_scene")
    try:
        build_scene(create_database(name))
        yield name
    finally:
        drop_database(name)
