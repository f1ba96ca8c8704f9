"""SQLAlchemy engines on a test's own database, for every driver the tests need."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict

from tests.support import TestDatabase


def sa_url(db: TestDatabase, driver: str = "psycopg") -> Any:
    """The SQLAlchemy URL of ``db`` with ``driver`` (psycopg, psycopg2, asyncpg)."""
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(db.dsn)
    port = params.get("port")
    return URL.create(
        f"postgresql+{driver}",
        username=str(params.get("user") or "postgres"),
        password=str(params["password"]) if params.get("password") else None,
        host=str(params.get("host") or "127.0.0.1"),
        port=int(str(port)) if port else None,
        database=str(params["dbname"]),
    )
