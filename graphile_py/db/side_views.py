"""The base of the operators' read statements on the side schema, and its "not installed" error.

The side schema (``graphile_py`` beside ``graphile_worker``) holds the pool registry and
the job history. The operators' views read it together with the worker schema (how many
jobs each pool holds), so their statements name both: ``{schema}`` is the worker schema
and ``{side}`` the side schema, each composed once as a quoted identifier.

A database may lack the side schema (a worker schema installed by Node, or by a
graphile-py before it): reading it then fails with :class:`SideSchemaMissing`'s message,
which says to run ``graphile-py migrate``, rather than PostgreSQL's "relation does not
exist".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from psycopg import sql

from graphile_py.db.migrations import check_identifier
from graphile_py.db.side_schema import side_schema_for
from graphile_py.db.statement_set import StatementSet, compose
from graphile_py.db.translate import map_db_errors
from graphile_py.errors import DatabaseError

__all__ = ["NOT_INSTALLED", "SideViewStatements", "not_installed_message", "reading_side_schema"]

#: The SQLSTATEs of reading a schema or table that does not exist.
NOT_INSTALLED = frozenset({"3F000", "42P01"})


def not_installed_message(side_schema: str) -> str:
    """What an operator is told when the side schema is missing."""
    return (
        f"the {side_schema} schema is not installed (it holds the worker registry and the"
        " job history); run graphile-py migrate"
    )


@contextmanager
def reading_side_schema(action: str, side_schema: str) -> Iterator[None]:
    """:func:`map_db_errors`, with a missing side schema told as such (same SQLSTATE kept)."""
    try:
        with map_db_errors(action):
            yield
    except DatabaseError as exc:
        if exc.sqlstate not in NOT_INSTALLED:
            raise
        raise DatabaseError(not_installed_message(side_schema), sqlstate=exc.sqlstate) from exc


class SideViewStatements(StatementSet):
    """Statements composed for one (worker schema, side schema) pair; see the module docs."""

    _by_pair: ClassVar[dict[tuple[str, str], Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._by_pair = {}

    def __init__(self, schema: str, side_schema: str | None = None) -> None:
        side = side_schema_for(schema, side_schema)
        check_identifier(schema)
        check_identifier(side)
        self.schema = schema
        self.side_schema = side
        # As compose() does for {schema}: a % in the name must reach psycopg doubled.
        quoted = sql.SQL(sql.Identifier(side).as_string(None).replace("%", "%%"))
        for name, statement in self._declared.items():
            self.__dict__[name] = compose(
                statement.template, schema, side=quoted, **statement.parts
            )

    @classmethod
    def for_schema(cls, schema: str, side_schema: str | None = None) -> Self:
        """The set for the worker schema and its side schema (derived when None)."""
        pair = (schema, side_schema_for(schema, side_schema))
        found: Self | None = cls._by_pair.get(pair)
        if found is None:
            found = cls._by_pair.setdefault(pair, cls(*pair))
        return found
