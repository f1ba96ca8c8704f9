"""Every statement set of a worker schema in one object, for callers that use several.

Each concern has its own set (:mod:`~graphile_py.db.claims`, :mod:`~graphile_py.db.outcomes`,
:mod:`~graphile_py.db.admin`, :mod:`~graphile_py.db.migrations_table`); :class:`Statements`
inherits them all, so ``statements_for(schema).claim_jobs(...)`` and
``statements_for(schema).admin_remove_job(...)`` are the same methods on the same
composed bytes as in the sets themselves.
"""

from __future__ import annotations

from graphile_py.db.admin import AdminStatements
from graphile_py.db.claims import ClaimStatements
from graphile_py.db.migrations_table import MIGRATION_ROW_INSERTED, MigrationStatements
from graphile_py.db.outcomes import FailureSpec, OutcomeStatements
from graphile_py.db.rows import JOB_COLUMNS, Row, jobs_from_rows
from graphile_py.db.statement_set import compose

__all__ = [
    "JOB_COLUMNS",
    "MIGRATION_ROW_INSERTED",
    "FailureSpec",
    "Row",
    "Statements",
    "WorkerStatements",
    "compose",
    "jobs_from_rows",
    "statements_for",
]


class WorkerStatements(ClaimStatements, OutcomeStatements):
    """What a worker pool runs: claims, outcomes, and the stale-lock sweep."""


class Statements(WorkerStatements, AdminStatements, MigrationStatements):
    """Every statement set of one worker schema."""


def statements_for(schema: str) -> Statements:
    """The statements for one worker schema (built once per schema per process)."""
    return Statements.for_schema(schema)
