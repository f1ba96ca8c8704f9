"""Test support: real PostgreSQL databases per test and the Node reference worker.

Nothing here is mocked. A test database is a clone of a migrated template, so each test
sees only its own rows; the Node graphile-worker 0.18.0 package is installed with npm
into a cache directory the first time it is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
NODE_GW_VERSION = "0.18.0"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip locally; fail loudly in CI, where every dependency must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is an error rather than a skip)")
    pytest.skip(reason)


def admin_dsn() -> str:
    """A connection string for a role that may create databases."""
    return (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_ADMIN_DSN
    )


def dsn_for(database: str, base: str | None = None) -> str:
    """``base`` (default: the admin DSN) pointed at another database."""
    return make_conninfo(base or admin_dsn(), dbname=database)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def admin_connection() -> Iterator[psycopg.Connection]:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        yield conn


def create_database(name: str, template: str | None = None) -> str:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with admin_connection() as conn:
        conn.execute(query)
    return dsn_for(name)


def drop_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def check_server() -> None:
    try:
        with psycopg.connect(admin_dsn(), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        unavailable(f"no PostgreSQL server at {_redacted(admin_dsn())}: {exc}")


def _redacted(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


@dataclass(frozen=True)
class TestDatabase:
    """A database that belongs to one test."""

    __test__ = False  # not a pytest test class

    name: str
    dsn: str
    schema: str

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]


def node_cache_dir() -> Path:
    base = os.environ.get("GRAPHILE_PY_NODE_CACHE")
    if base:
        return Path(base)
    return Path.home() / ".cache" / "graphile-py" / f"node-graphile-worker-{NODE_GW_VERSION}"


def ensure_node_worker() -> Path:
    """Install graphile-worker@0.18.0 with npm (once) and return its package directory."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("Node.js and npm are needed for the interop tests")
    root = node_cache_dir()
    package = root / "node_modules" / "graphile-worker"
    marker = package / "package.json"
    if not marker.exists() or f'"version": "{NODE_GW_VERSION}"' not in marker.read_text():
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "package.json").exists():
            (root / "package.json").write_text('{"name": "graphile-py-interop", "private": true}\n')
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"graphile-worker@{NODE_GW_VERSION}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            unavailable(f"npm install graphile-worker@{NODE_GW_VERSION} failed:\n{result.stderr}")
    return package
