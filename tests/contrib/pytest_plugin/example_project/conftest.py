"""The project's own fixtures: its tables go into the plugin's template database once."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest


@pytest.fixture(scope="session")
def graphile_prepare_template() -> Callable[[str], None]:
    def create_tables(dsn: str) -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("create table users (email text primary key)")
            conn.execute("create table sent_emails (id serial primary key, kind text, email text)")

    return create_tables
