"""Our migrations leave exactly the schema that graphile-worker 0.18.0's do, at every step.

For each k, database A gets our migrations 1..k (through ``graphile_py.db.migrate``) and
database B gets the SQL files of the npm package 1..k, applied the way Node applies
them; their catalog snapshots must be equal. The real Node CLI then finishes A, which
must end up identical to a database that Node migrated on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from graphile_py.db.migrate import migrate
from graphile_py.db.migrations import load_migrations
from graphile_py.db.side_schema import (
    latest_known_side_migration,
    side_schema_for,
    side_schema_ready,
)
from graphile_py.db.task_index import (
    TASK_INDEX_COLUMNS,
    TASK_INDEX_NAME,
    drop_task_index,
    install_task_index,
)
from tests.interop.node_schema import (
    DEFAULT_SCHEMA,
    ODD_SCHEMA,
    UNICODE_SCHEMA,
    apply_upstream,
    node_schema_only,
    upstream_migrations,
)
from tests.support import TestDatabase, create_database, drop_database, unique_name
from tests.support.catalog import SCHEMA_TOKEN, diff_snapshots, snapshot

pytestmark = pytest.mark.node

MakeDb = Callable[..., TestDatabase]
STEPS = range(1, 21)


def _snapshot_of(database: TestDatabase) -> dict[str, Any]:
    with database.connect() as conn:
        return snapshot(conn, database.schema)


def _assert_same(expected: dict[str, Any], actual: dict[str, Any], labels: tuple[str, str]) -> None:
    if expected != actual:
        pytest.fail("catalogs differ:\n" + diff_snapshots(expected, actual, labels=labels))


def _run_node(package: Path, database: TestDatabase) -> str:
    result = node_schema_only(package, database.dsn, database.schema)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"graphile-worker --schema-only failed:\n{output}"
    assert "Schema updated" in result.stdout, output
    return output


@pytest.fixture(scope="module")
def node_reference(node_worker: Path, pg_server: None) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Snapshot of a database migrated by the Node CLI alone, per schema name (cached)."""
    cache: dict[str, dict[str, Any]] = {}
    created: list[str] = []

    def reference(schema: str) -> dict[str, Any]:
        if schema not in cache:
            name = unique_name("gpy_node_ref")
            created.append(name)
            database = TestDatabase(name=name, dsn=create_database(name), schema=schema)
            _run_node(node_worker, database)
            cache[schema] = _snapshot_of(database)
        return cache[schema]

    yield reference
    for name in created:
        drop_database(name)


def test_breaking_flags_match_upstream(node_worker: Path) -> None:
    ours = [(m.number, m.breaking) for m in load_migrations()]
    theirs = [(n, text.startswith("--! breaking")) for n, text in upstream_migrations(node_worker)]
    assert ours == theirs
    assert [n for n, breaking in ours if breaking] == [1, 3, 11, 13, 14, 16, 19]


def _check_step(
    make_db: MakeDb,
    node_worker: Path,
    node_reference: Callable[[str], dict[str, Any]],
    schema: str,
    step: int,
) -> None:
    ours = make_db(schema=schema)
    theirs = make_db(schema=schema)
    with ours.connect() as conn:
        report = migrate(conn, schema=schema, target=step)
    assert report.applied == tuple(range(1, step + 1))
    # Our side schema is there too: the comparisons below look at the worker schema only.
    assert report.side_applied == tuple(range(1, latest_known_side_migration() + 1))
    with theirs.connect() as conn:
        apply_upstream(conn, node_worker, schema, target=step)

    _assert_same(_snapshot_of(theirs), _snapshot_of(ours), (f"node 1..{step}", f"ours 1..{step}"))

    # Node takes over from wherever we stopped and must reach its own end state.
    _run_node(node_worker, ours)
    _assert_same(
        node_reference(schema), _snapshot_of(ours), ("node only", f"ours 1..{step} + node")
    )


@pytest.mark.parametrize("step", STEPS)
def test_step_matches_node_default_schema(
    make_db: MakeDb, node_worker: Path, node_reference: Callable[[str], dict[str, Any]], step: int
) -> None:
    _check_step(make_db, node_worker, node_reference, DEFAULT_SCHEMA, step)


@pytest.mark.parametrize("step", [1, 10, 11, 16, 20])
def test_step_matches_node_odd_schema(
    make_db: MakeDb, node_worker: Path, node_reference: Callable[[str], dict[str, Any]], step: int
) -> None:
    _check_step(make_db, node_worker, node_reference, ODD_SCHEMA, step)


def test_full_run_matches_node_unicode_schema(
    make_db: MakeDb, node_worker: Path, node_reference: Callable[[str], dict[str, Any]]
) -> None:
    _check_step(make_db, node_worker, node_reference, UNICODE_SCHEMA, 20)


@pytest.mark.parametrize("schema", [DEFAULT_SCHEMA, ODD_SCHEMA])
def test_node_migrated_database_is_up_to_date_for_us(
    make_db: MakeDb, node_worker: Path, schema: str
) -> None:
    database = make_db(schema=schema)
    _run_node(node_worker, database)
    before = _snapshot_of(database)
    with database.connect() as conn:
        report = migrate(conn, schema=schema)
    assert report.previous == 20
    assert report.applied == ()
    assert report.warnings == ()
    assert report.side_applied == tuple(
        range(1, latest_known_side_migration() + 1)
    )  # only our side schema was installed
    _assert_same(before, _snapshot_of(database), ("node", "node + ours"))


@pytest.mark.parametrize("schema", [DEFAULT_SCHEMA, ODD_SCHEMA])
def test_our_database_is_up_to_date_for_node(
    make_db: MakeDb, node_worker: Path, node_reference: Callable[[str], dict[str, Any]], schema: str
) -> None:
    database = make_db(schema=schema)
    side = side_schema_for(schema)
    with database.connect() as conn:
        migrate(conn, schema=schema)
        stamps_before = _migration_stamps(conn, schema)
        side_before = snapshot(conn, side)
    output = _run_node(node_worker, database)
    assert "Running" not in output and "revision" not in output, output
    with database.connect() as conn:
        assert _migration_stamps(conn, schema) == stamps_before
        # Node's migrator neither sees nor touches our side schema.
        assert side_schema_ready(conn, side)
        _assert_same(side_before, snapshot(conn, side), ("side before node", "side after"))
    _assert_same(node_reference(schema), _snapshot_of(database), ("node only", "ours + node"))


def _migration_stamps(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("select id, ts, breaking from {}.migrations order by id").format(
        sql.Identifier(schema)
    )
    return conn.execute(query).fetchall()


def test_snapshot_notices_a_difference(make_db: MakeDb) -> None:
    """The instrument itself: a one-character change in a default must show up."""
    first, second = make_db(), make_db()
    for database in (first, second):
        with database.connect() as conn:
            migrate(conn, schema=database.schema)
    with second.connect() as conn:
        conn.execute(
            sql.SQL("alter table {}._private_jobs alter column priority set default 1").format(
                sql.Identifier(second.schema)
            )
        )
    assert _snapshot_of(first) != _snapshot_of(second)
    assert '"default_or_generation": "1"' in diff_snapshots(
        _snapshot_of(first), _snapshot_of(second)
    )


@pytest.mark.parametrize("schema", [DEFAULT_SCHEMA, ODD_SCHEMA])
def test_the_side_schema_leaves_the_worker_catalog_unchanged(make_db: MakeDb, schema: str) -> None:
    """Installing or dropping the side schema changes nothing the comparisons above see."""
    without, with_side = make_db(schema=schema), make_db(schema=schema)
    side = side_schema_for(schema)
    for database in (without, with_side):
        with database.connect() as conn:
            assert migrate(conn, schema=schema).side_applied == tuple(
                range(1, latest_known_side_migration() + 1)
            )
    with without.connect() as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(side)))
        assert snapshot(conn, side) == {"schema": None}
    with_snapshot = _snapshot_of(with_side)
    _assert_same(_snapshot_of(without), with_snapshot, ("no side schema", "side schema"))
    # The snapshot is of the worker schema alone: the side schema's tables are not in it.
    names = {table["name"] for table in with_snapshot["tables"]}
    assert "_private_jobs" in names and not names & {"pools", "job_attempts"}
    with with_side.connect() as conn:
        side_tables = {table["name"] for table in snapshot(conn, side)["tables"]}
    assert side_tables == {"migrations", "pools", "job_attempts"}
    # ... and the same holds when installing it: snapshot, install, snapshot.
    with without.connect() as conn:
        before = snapshot(conn, schema)
        assert migrate(conn, schema=schema).side_applied == tuple(
            range(1, latest_known_side_migration() + 1)
        )
        _assert_same(before, snapshot(conn, schema), ("before side schema", "after"))


def _without_task_index(catalog: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The snapshot without graphile_py_jobs_task_index, and what was taken out."""
    removed: list[dict[str, Any]] = []
    rest = dict(catalog)
    for key in ("index_relations", "indexes"):
        rest[key] = [entry for entry in catalog[key] if entry["name"] != TASK_INDEX_NAME]
        removed += [entry for entry in catalog[key] if entry["name"] == TASK_INDEX_NAME]
    return rest, removed


@pytest.mark.parametrize(("schema", "step"), [(DEFAULT_SCHEMA, 16), (ODD_SCHEMA, 20)])
def test_the_task_index_is_the_only_difference_and_node_still_migrates(
    make_db: MakeDb,
    node_worker: Path,
    node_reference: Callable[[str], dict[str, Any]],
    schema: str,
    step: int,
) -> None:
    """graphile-py's opt-in per-task index (``graphile-py task-index install``) is allowed,
    and nothing else: the catalog equals Node's but for exactly that one index, before
    and after Node's migrations run on top of it (from 17 when installed at step 16, the
    first with ``_private_jobs``)."""
    database = make_db(schema=schema)
    with database.connect() as conn:
        migrate(conn, schema=schema, target=step)
        status, built = install_task_index(conn, schema)
        assert built and status.usable
    if step < 20:
        theirs = make_db(schema=schema)
        with theirs.connect() as conn:
            apply_upstream(conn, node_worker, schema, target=step)
        rest, removed = _without_task_index(_snapshot_of(database))
        _assert_same(_snapshot_of(theirs), rest, (f"node 1..{step}", f"ours 1..{step} + index"))
        assert len(removed) == 2
    _run_node(node_worker, database)
    rest, removed = _without_task_index(_snapshot_of(database))
    _assert_same(node_reference(schema), rest, ("node only", "ours + index + node"))
    index_relation, index = sorted(removed, key=lambda entry: "definition" in entry)
    assert index_relation["kind"] == "i" and index_relation["name"] == TASK_INDEX_NAME
    assert index["relation"] == "_private_jobs" and index["is_valid"]
    assert index["definition"] == (
        f"CREATE INDEX {TASK_INDEX_NAME} ON {SCHEMA_TOKEN}._private_jobs {TASK_INDEX_COLUMNS}"
    )
    # Dropped, the catalog is Node's exactly.
    with database.connect() as conn:
        assert drop_task_index(conn, schema)
    _assert_same(node_reference(schema), _snapshot_of(database), ("node only", "index dropped"))
