"""Database access: every SQL statement graphile-py sends, outside the migration scripts.

Statements are grouped in sets by concern (claims, outcomes, enqueue, admin, inspection,
cron, migrations, the dashboard's sampler, the readiness probe), each a
:class:`~graphile_py.db.statement_set.StatementSet`: composed once per worker schema with
:mod:`psycopg.sql` (the schema is an ``Identifier``, every value a bind parameter) and
cached as bytes, so the hot path pays no composition cost and psycopg can prepare them.
Each function takes a connection and runs its statements; psycopg errors are translated
into :mod:`graphile_py.errors` here and nowhere else.

The worker statements reproduce graphile-worker 0.18.0's client-side SQL (spec sections
3.4 to 3.9) so that Node and Python pools can share jobs, queues and locks.
"""

from graphile_py.db.rows import Row
from graphile_py.db.statement_set import Statement, StatementSet, compose
from graphile_py.db.statements import (
    MIGRATION_ROW_INSERTED,
    FailureSpec,
    Statements,
    WorkerStatements,
    statements_for,
)
from graphile_py.db.translate import (
    CONSTRAINT_MESSAGES,
    ConnectionSource,
    borrow,
    map_db_errors,
    translate_error,
)

__all__ = [
    "CONSTRAINT_MESSAGES",
    "MIGRATION_ROW_INSERTED",
    "ConnectionSource",
    "FailureSpec",
    "Row",
    "Statement",
    "StatementSet",
    "Statements",
    "WorkerStatements",
    "borrow",
    "compose",
    "map_db_errors",
    "statements_for",
    "translate_error",
]
