"""docs/deployment.md's SQL examples run on a real database (each in a rolled-back
transaction, with the test's schema for graphile_worker)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests.support import TestDatabase

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
BLOCKS = re.findall(r"^ *```sql\n(.*?)^ *```", DOC.read_text(), flags=re.S | re.M)


def test_the_page_has_its_sql_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[f"sql{i}" for i in range(len(BLOCKS))])
def test_sql_example_runs(block: str, db: TestDatabase) -> None:
    quoted = '"' + db.schema.replace('"', '""') + '"'
    statement = block.replace("graphile_worker.", quoted + ".").replace(
        "'graphile_worker._private_jobs'", "'" + quoted.replace("'", "''") + "._private_jobs'"
    )
    with psycopg.connect(db.dsn) as conn:
        conn.execute(statement)
        conn.rollback()
