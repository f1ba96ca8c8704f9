"""The base of every statement set: SQL composed once per worker schema, cached as bytes.

A statement set is a class whose statements are declared as :class:`Statement` class
attributes, each a template with ``{schema}`` where the quoted worker schema goes.
:meth:`StatementSet.for_schema` builds one instance per schema per process; building it
composes every declared statement with :mod:`psycopg.sql` and stores the bytes on the
instance under the attribute's own name, so the hot path reads a plain attribute and
psycopg can prepare the statement. Sets combine by inheritance: a subclass of several sets
has all their statements.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, overload

from psycopg import sql

from graphile_py.db.migrations import check_identifier

__all__ = ["Statement", "StatementSet", "compose"]


def compose(template: str, schema: str, **parts: sql.Composable) -> bytes:
    """``template`` with ``{schema}`` as the quoted identifier, as bytes ready to send.

    A ``%`` in the schema name is doubled, since psycopg reads ``%`` as the start of a
    placeholder: every composed statement must therefore be run with a parameter
    sequence (``()`` when it has none), so that psycopg turns ``%%`` back into ``%``.
    """
    check_identifier(schema)
    identifier = sql.Identifier(schema).as_string(None).replace("%", "%%")
    return sql.SQL(template).format(schema=sql.SQL(identifier), **parts).as_bytes(None)


class Statement:
    """A statement of a :class:`StatementSet`: on an instance, its bytes for that schema."""

    def __init__(self, template: str, **parts: sql.Composable) -> None:
        self.template = template
        self.parts = parts

    def compose(self, schema: str) -> bytes:
        """The statement for ``schema``, as bytes."""
        return compose(self.template, schema, **self.parts)

    # Never reached on an instance: StatementSet.__init__ stores the composed bytes in the
    # instance's __dict__, which takes precedence over this (non-data) descriptor.
    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Statement: ...
    @overload
    def __get__(self, instance: StatementSet, owner: type[Any]) -> bytes: ...
    def __get__(self, instance: StatementSet | None, owner: type[Any]) -> Statement | bytes:
        if instance is None:
            return self
        return self.compose(instance.schema)


class StatementSet:
    """Statements composed for one worker schema; see the module docs."""

    #: Every Statement the class declares or inherits, by attribute name.
    _declared: ClassVar[dict[str, Statement]] = {}
    #: The instances of this very class, by schema.
    _by_schema: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared: dict[str, Statement] = {}
        for klass in reversed(cls.__mro__):
            declared.update(
                (name, value) for name, value in vars(klass).items() if isinstance(value, Statement)
            )
        cls._declared = declared
        cls._by_schema = {}

    def __init__(self, schema: str) -> None:
        check_identifier(schema)
        self.schema = schema
        for name, statement in self._declared.items():
            self.__dict__[name] = statement.compose(schema)

    @classmethod
    def for_schema(cls, schema: str) -> Self:
        """The set for ``schema``, built on first use and shared for the process's life."""
        found: Self | None = cls._by_schema.get(schema)
        if found is None:
            # Two threads may both build one; setdefault keeps the first, so all share it.
            found = cls._by_schema.setdefault(schema, cls(schema))
        return found

    def compose(self, template: str, **parts: sql.Composable) -> bytes:
        """A statement composed for this set's schema (for variants built on demand)."""
        return compose(template, self.schema, **parts)
