"""Installing the queue's schema for a backend, on its own connection."""

from __future__ import annotations

from typing import Any

import psycopg

from graphile_py.contrib.django.config import conninfo_for
from graphile_py.db import map_db_errors
from graphile_py.db.migrate import MigrationReport, migrate

__all__ = ["migrate_backend"]


def migrate_backend(backend: Any) -> MigrationReport:
    """Install or upgrade ``backend``'s worker schema and side schema.

    A connection of its own, in autocommit: migrations take their own locks and
    transactions, which must not be the caller's.
    """
    config = backend.config
    with map_db_errors("Connecting to the database"):
        conn = psycopg.connect(conninfo_for(config.database), autocommit=True)
    with conn:
        return migrate(conn, schema=config.schema, side_schema=config.side_schema)
