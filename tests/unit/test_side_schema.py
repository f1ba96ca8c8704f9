"""The side schema's name, its migration files and the settings that go with it."""

from __future__ import annotations

import hashlib

import pytest

from graphile_py import ConfigurationError, WorkerOptions
from graphile_py.db.migrations import MAX_IDENTIFIER_BYTES, load_migrations
from graphile_py.db.side_migrations import load_side_migrations
from graphile_py.db.side_schema import (
    DEFAULT_SIDE_SCHEMA,
    latest_known_side_migration,
    side_schema_for,
)


def size(name: str) -> int:
    return len(name.encode("utf-8"))


def test_the_default_worker_schema_gets_graphile_py() -> None:
    assert side_schema_for("graphile_worker") == DEFAULT_SIDE_SCHEMA == "graphile_py"
    assert WorkerOptions().resolved_side_schema == "graphile_py"


@pytest.mark.parametrize(
    ("worker", "side"),
    [
        ("app", "app_py"),
        ("graphile_py", "graphile_py_py"),
        ('My "odd" schema', 'My "odd" schema_py'),
        ("100% jobs", "100% jobs_py"),
        ("back\\slash", "back\\slash_py"),
        ("ünïcödé wörker", "ünïcödé wörker_py"),
        ("x" * 60, "x" * 60 + "_py"),  # exactly 63 bytes: still fits
    ],
)
def test_other_names_get_a_py_suffix(worker: str, side: str) -> None:
    assert side_schema_for(worker) == side
    assert WorkerOptions(schema=worker).resolved_side_schema == side


def test_a_name_too_long_for_the_suffix_is_cut_and_hashed() -> None:
    worker = "x" * 61
    side = side_schema_for(worker)
    digest = hashlib.sha256(worker.encode()).hexdigest()[:8]
    assert side == "x" * 51 + f"_{digest}_py"
    assert size(side) == MAX_IDENTIFIER_BYTES


def test_the_cut_never_splits_a_character() -> None:
    # 2-byte characters: 51 bytes of room hold 25 of them, not 25.5.
    worker = "é" * 31  # 62 bytes
    side = side_schema_for(worker)
    assert side.startswith("é" * 25 + "_")
    assert side.endswith("_py") and size(side) == 50 + 12
    # 4-byte characters: 51 bytes hold 12 of them.
    emoji = "\N{SNAKE}" * 15  # 60 bytes: 63 with the suffix would fit, 15 * 4 + 3
    assert side_schema_for(emoji) == emoji + "_py"
    emoji = "\N{SNAKE}" * 16  # 64 bytes: too long for PostgreSQL already
    with pytest.raises(ConfigurationError, match="64 bytes"):
        side_schema_for(emoji)
    mixed = "a" + "\N{SNAKE}" * 15  # 61 bytes: cut inside the 13th snake
    side = side_schema_for(mixed)
    assert side.startswith("a" + "\N{SNAKE}" * 12 + "_")
    assert size(side) <= MAX_IDENTIFIER_BYTES
    side.encode("utf-8").decode("utf-8")  # valid UTF-8 throughout


def test_long_names_sharing_a_prefix_get_different_side_schemas() -> None:
    first, second = "p" * 55 + "first", "p" * 55 + "other"
    assert side_schema_for(first) != side_schema_for(second)


def test_graphile_does_not_take_the_default_queues_side_schema() -> None:
    digest = hashlib.sha256(b"graphile").hexdigest()[:8]
    assert side_schema_for("graphile") == f"graphile_{digest}_py" != DEFAULT_SIDE_SCHEMA


def test_an_explicit_name_wins_and_is_checked() -> None:
    assert side_schema_for("graphile_worker", "ours") == "ours"
    assert side_schema_for("app", "graphile_worker") == "graphile_worker"
    with pytest.raises(ConfigurationError, match="bytes long"):
        side_schema_for("app", "s" * 64)
    with pytest.raises(ConfigurationError, match="non-empty"):
        side_schema_for("app", "")


@pytest.mark.parametrize("name", ["graphile_worker", "app", 'My "odd" schema'])
def test_the_worker_schema_itself_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="must not be the worker schema"):
        side_schema_for(name, name)
    with pytest.raises(ConfigurationError, match="must not be the worker schema"):
        WorkerOptions(schema=name, side_schema=name)


def test_heartbeat_timeout_must_be_at_least_twice_the_interval() -> None:
    options = WorkerOptions(heartbeat_interval=2.0, heartbeat_timeout=4.0)
    assert (options.heartbeat_interval, options.heartbeat_timeout) == (2.0, 4.0)
    with pytest.raises(ConfigurationError, match="at least twice heartbeat_interval"):
        WorkerOptions(heartbeat_interval=2.0, heartbeat_timeout=3.9)
    with pytest.raises(ConfigurationError, match="at least twice heartbeat_interval"):
        WorkerOptions(heartbeat_interval=15.0)  # the default timeout, 20, is too short


def test_the_new_settings_defaults() -> None:
    options = WorkerOptions()
    assert options.side_schema is None
    assert (options.heartbeat_interval, options.heartbeat_timeout) == (5.0, 20.0)
    assert options.history is False
    assert options.history_retention == 7 * 24 * 3600
    assert options.history_payload_limit == 8192
    WorkerOptions(history_payload_limit=0)  # never store payloads
    with pytest.raises(ConfigurationError, match="history_payload_limit"):
        WorkerOptions(history_payload_limit=-1)


def test_side_migrations_are_numbered_and_render_both_schemas() -> None:
    migrations = load_side_migrations()
    assert [m.number for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_known_side_migration() == migrations[-1].number >= 1
    assert not migrations[0].breaking
    for migration in migrations:
        rendered = migration.render('W "x"', side_schema='S "%"')
        assert ":GRAPHILE_PY_SCHEMA" not in rendered
        assert ":GRAPHILE_WORKER_SCHEMA" not in rendered
    assert 'create table "S ""%""".pools (' in migrations[0].render("w", side_schema='S "%"')


def test_a_side_migration_cannot_be_rendered_without_the_side_schema() -> None:
    with pytest.raises(ConfigurationError, match="needs the side schema"):
        load_side_migrations()[0].render("graphile_worker")


def test_the_worker_migrations_and_the_side_ones_are_loaded_apart() -> None:
    worker_texts = {m.text for m in load_migrations()}
    assert not worker_texts & {m.text for m in load_side_migrations()}
    assert not any(":GRAPHILE_PY_SCHEMA" in text for text in worker_texts)
