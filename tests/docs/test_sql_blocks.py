"""Every ``sql`` block in README.md and docs/*.md runs, or is marked illustrative.

Each block runs as one script in a transaction that is rolled back, on its own copy of
the database with the example queue (tests/docs/scene.py), with the default schemas
``graphile_worker`` and ``graphile_py`` the docs name. A role the block grants to
(``app_user``, say) is created inside that transaction, so nothing outlives it. Mark a
block that cannot run this way with ``<!-- doc-test: illustrative REASON -->`` on the
line above it (see test_shell_commands.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest

from tests.docs.blocks import Block, all_checked_blocks
from tests.support import create_database, drop_database, unique_name

BLOCKS, _ = all_checked_blocks()
SQL = [b for b in BLOCKS if b.language == "sql" and "illustrative" not in b.directives]
GRANTEE = re.compile(r"\bgrant\b[^;]*?\bto\s+(\w+)", re.IGNORECASE | re.DOTALL)


@pytest.fixture
def scene_copy(scene_template: str) -> Iterator[str]:
    name = unique_name("gpy_docs_sql")
    dsn = create_database(name, template=scene_template)
    try:
        yield dsn
    finally:
        drop_database(name)


def test_the_docs_have_sql_blocks() -> None:
    assert len(SQL) >= 4


@pytest.mark.parametrize("block", SQL, ids=[block.where for block in SQL])
def test_sql_block_runs(block: Block, scene_copy: str) -> None:
    with psycopg.connect(scene_copy) as conn:  # one transaction, rolled back on exit
        for role in sorted(set(GRANTEE.findall(block.body)) - {"public"}):
            conn.execute(
                f"do $$ begin create role {role}; exception when duplicate_object then null; end $$"
            )
        try:
            # A script of several statements: the simple query protocol, no parameters.
            conn.execute(block.body.encode())
        except psycopg.Error as exc:
            pytest.fail(f"{block.where}: {exc}\n(mark it illustrative if it cannot run here)")
        conn.rollback()
