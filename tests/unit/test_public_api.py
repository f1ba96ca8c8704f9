"""The public surface is what __all__ says, and everything in it is importable and typed."""

from __future__ import annotations

from pathlib import Path

import graphile_py
from graphile_py import errors


def test_all_is_sorted_complete_and_importable() -> None:
    assert graphile_py.__all__ == sorted(graphile_py.__all__, key=lambda n: (not n.isupper(), n))
    for name in graphile_py.__all__:
        assert getattr(graphile_py, name) is not None
    public = {n for n in vars(graphile_py) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(graphile_py, n)).__name__ == "module"}
    assert public - modules == set(graphile_py.__all__)


def test_every_exception_is_a_graphile_error() -> None:
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, errors.GraphileError)


def test_docstring_is_the_default_message() -> None:
    assert (
        errors.ConnectError().message
        == "Could not connect to PostgreSQL, or the connection was lost."
    )
    assert str(errors.PayloadError("custom")) == "custom"


def test_package_ships_py_typed_and_migrations() -> None:
    root = Path(graphile_py.__file__).parent
    assert (root / "py.typed").exists()
    assert sorted(p.name for p in (root / "db" / "migrations").glob("*.sql")) == [
        f"{n:06d}.sql" for n in range(1, 21)
    ]


def test_inspection_names_are_exported() -> None:
    from graphile_py.admin import inspector as inspection

    for name in (
        "CronStatus",
        "Inspector",
        "JobFilter",
        "JobRecord",
        "JobState",
        "QueueStatus",
        "QueueStatusReport",
        "StateCounts",
        "TaskStatus",
    ):
        assert name in graphile_py.__all__
        assert getattr(graphile_py, name) is getattr(inspection, name)
