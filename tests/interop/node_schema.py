"""Helpers shared by the interop tests that compare our migrations with Node's.

``apply_upstream`` runs the SQL files shipped in the graphile-worker npm package the
way graphile-worker itself does (bootstrap, then one transaction per migration that
inserts the migrations row first), so a database migrated with it is what Node would
have produced. ``node_schema_only`` runs the real Node CLI.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from graphile_py.db.migrations import render_schema

__all__ = [
    "DEFAULT_SCHEMA",
    "ODD_SCHEMA",
    "UNICODE_SCHEMA",
    "apply_upstream",
    "node_schema_only",
    "upstream_migrations",
]

DEFAULT_SCHEMA = "graphile_worker"
# Quotes and spaces: any missing identifier escaping shows up with these.
ODD_SCHEMA = 'My "odd" schema'
UNICODE_SCHEMA = 'Wörker "schéma" 🐘'
_BREAKING_PREFIX = "--! breaking"


@cache
def upstream_migrations(package: Path) -> tuple[tuple[int, str], ...]:
    """(number, text) of every migration file in the npm package, in order."""
    files = sorted((package / "sql").glob("[0-9][0-9][0-9][0-9][0-9][0-9].sql"))
    found = tuple((int(path.name[:6]), path.read_text("utf-8")) for path in files)
    assert [number for number, _ in found] == list(range(1, len(found) + 1)), found
    return found


def apply_upstream(
    conn: psycopg.Connection[Any], package: Path, schema: str, target: int | None = None
) -> None:
    """Apply Node's migrations 1..target (all by default) to a fresh database."""
    ident = sql.Identifier(schema)
    conn.execute(
        sql.SQL(
            "create schema if not exists {s};"
            " create table if not exists {s}.migrations("
            "id int primary key, ts timestamptz default now() not null);"
            " alter table {s}.migrations add column if not exists breaking boolean not null"
            " default false;"
        ).format(s=ident)
    )
    for number, text in upstream_migrations(package):
        if target is not None and number > target:
            break
        with conn.transaction():
            conn.execute(
                sql.SQL("insert into {}.migrations (id, breaking) values (%s, %s)").format(ident),
                (number, text.startswith(_BREAKING_PREFIX)),
            )
            conn.execute(render_schema(text, schema).encode(), prepare=False)


def database_url(dsn: str) -> str:
    """A postgres:// URL for ``dsn`` (node-postgres does not read key=value strings)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = params.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(params.get("host", "127.0.0.1"))
    port = str(params.get("port", "5432"))
    dbname = quote(str(params["dbname"]), safe="")
    return f"postgresql://{auth}@{host}:{port}/{dbname}"


def node_schema_only(package: Path, dsn: str, schema: str) -> subprocess.CompletedProcess[str]:
    """Run ``graphile-worker --schema-only`` against ``dsn``; returns the finished process.

    It runs in an empty directory so that no stray graphile.config or tasks/ is found.
    """
    command = ["node", str(package / "dist" / "cli.js"), "-c", database_url(dsn), "--schema-only"]
    if schema != DEFAULT_SCHEMA:
        command += ["--schema", schema]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "GRAPHILE_WORKER"))}
    env.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="gpy-node-cli-") as workdir:
        return subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
        )
