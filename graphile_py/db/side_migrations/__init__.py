"""The side schema's numbered migrations: graphile-py's own tables, which Node never sees.

The side schema (see :mod:`graphile_py.db.side_schema`) holds what graphile-worker's
schema has no place for: the registry of live pools with their heartbeats, and the job
history. Its ``NNNNNN.sql`` files follow the worker schema's rules (numbered 1..N, a
file starting with ``--! breaking`` is breaking) and use two placeholders:
``:GRAPHILE_PY_SCHEMA`` for the quoted side schema and ``:GRAPHILE_WORKER_SCHEMA`` for
the quoted worker schema. They never create anything in the worker schema, nor refer to
it from a constraint, so that its catalog stays exactly what Node's migrations expect.
"""

from __future__ import annotations

from graphile_py.db.migrations import Migration, load_numbered

__all__ = ["load_side_migrations"]


def load_side_migrations() -> tuple[Migration, ...]:
    """Every shipped migration of the side schema, in ascending order of number."""
    return load_numbered(__name__)
