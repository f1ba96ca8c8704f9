"""Migration files: numbering, breaking flags and placeholder rendering."""

from __future__ import annotations

import pytest

from graphile_py.db.migrations import load_migrations, quote_identifier, render_schema


def test_numbered_one_to_twenty_with_the_upstream_breaking_flags() -> None:
    migrations = load_migrations()
    assert [m.number for m in migrations] == list(range(1, 21))
    assert {m.number for m in migrations if m.breaking} == {1, 3, 11, 13, 14, 16, 19}


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("graphile_worker", '"graphile_worker"'),
        ('My "odd" schema', '"My ""odd"" schema"'),
        ("back\\slash", '"back\\slash"'),
        ("ünï", '"ünï"'),
    ],
)
def test_quote_identifier(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


def test_quote_identifier_refuses_empty_and_nul() -> None:
    with pytest.raises(ValueError, match="empty"):
        quote_identifier("")
    with pytest.raises(ValueError, match="NUL"):
        quote_identifier("a\x00b")


def test_render_replaces_every_placeholder_including_after_a_cast() -> None:
    text = "select (x):::GRAPHILE_WORKER_SCHEMA.job_spec from :GRAPHILE_WORKER_SCHEMA.jobs"
    assert render_schema(text, 'a"b') == 'select (x)::"a""b".job_spec from "a""b".jobs'


def test_render_only_replaces_whole_placeholder_words() -> None:
    assert render_schema(":GRAPHILE_WORKER_SCHEMAX :GRAPHILE_WORKER_SCHEMA", "s") == (
        ':GRAPHILE_WORKER_SCHEMAX "s"'
    )


def test_every_migration_renders_with_an_awkward_schema_name() -> None:
    for migration in load_migrations():
        rendered = migration.render('My "odd" schema')
        assert ":GRAPHILE_WORKER_SCHEMA" not in rendered
