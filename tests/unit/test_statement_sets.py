"""Statement sets compose once per schema; the enqueue plans decide without a database."""

from __future__ import annotations

from typing import Any

import pytest

from graphile_py.db import Statement, StatementSet, statements_for
from graphile_py.db.admin import AdminStatements
from graphile_py.db.claims import ClaimStatements
from graphile_py.db.enqueue import EnqueueStatements, Step
from graphile_py.errors import ConfigurationError, DatabaseError


class _Probe(StatementSet):
    one_sql = Statement("select 1 from {schema}.t where x = %s")


class _Wider(_Probe):
    two_sql = Statement("select 2 from {schema}.u")


def test_a_set_is_composed_once_per_schema_and_class() -> None:
    probe = _Probe.for_schema("gw")
    assert _Probe.for_schema("gw") is probe
    assert _Probe.for_schema("other") is not probe
    assert _Wider.for_schema("gw") is not probe
    assert probe.one_sql == b'select 1 from "gw".t where x = %s'
    assert isinstance(_Probe.one_sql, Statement)  # on the class, the declaration


def test_a_subclass_has_its_parents_statements() -> None:
    wider = _Wider.for_schema("gw")
    assert wider.one_sql == _Probe.for_schema("gw").one_sql
    assert wider.two_sql == b'select 2 from "gw".u'


def test_a_percent_in_the_schema_is_escaped_for_psycopg() -> None:
    assert _Probe.for_schema('a%b"c').one_sql == b'select 1 from "a%%b""c".t where x = %s'


def test_a_bad_schema_is_refused_when_the_set_is_built() -> None:
    with pytest.raises(ConfigurationError):
        _Probe.for_schema("")
    with pytest.raises(ConfigurationError):
        _Probe.for_schema("x" * 64)


def test_statements_for_shares_the_bytes_of_the_concern_sets() -> None:
    statements = statements_for("gw_shared")
    assert statements is statements_for("gw_shared")
    assert statements.lock_holders_sql == AdminStatements.for_schema("gw_shared").lock_holders_sql
    claim = statements.claim_statement(batch=True, flags=True, node_time=False)
    assert claim == ClaimStatements.for_schema("gw_shared").claim_statement(
        batch=True, flags=True, node_time=False
    )
    assert claim is statements.claim_statement(batch=True, flags=True, node_time=False)


_KEYED = ("t", "{}", None, None, None, "k", None, None, None)
_UNKEYED = ("t", "{}", None, None, None, None, None, None, None)


def _drive(plan: Any, answers: list[Any]) -> tuple[list[Step], Any]:
    """Run a plan against canned answers; the steps it asked for and its result."""
    steps: list[Step] = []
    answer: Any = None
    try:
        while True:
            steps.append(plan.send(answer))
            answer = answers.pop(0)
    except StopIteration as done:
        return steps, done.value


def test_add_job_retries_a_key_race_and_gives_up_after_three() -> None:
    statements = EnqueueStatements.for_schema("gw")
    null_row = {"id": None, "revision": None}
    steps, row = _drive(statements.add_job_plan(_KEYED), [null_row, {"id": 7, "revision": 0}])
    assert row["id"] == 7
    assert [step.query for step in steps] == [statements.add_job_sql] * 2

    with pytest.raises(DatabaseError, match=r"no row for job key 'k'.*kept being locked"):
        _drive(statements.add_job_plan(_KEYED), [null_row] * 3)


def test_add_job_without_a_key_falls_back_to_the_function() -> None:
    statements = EnqueueStatements.for_schema("gw")
    steps, row = _drive(statements.add_job_plan(_UNKEYED), [None, {"id": 3, "revision": 0}])
    assert [step.query for step in steps] == [
        statements.add_job_unkeyed_sql,
        statements.add_job_sql,
    ]
    assert steps[0].params == {
        "identifier": "t",
        "payload": "{}",
        "queue": None,
        "run_at": None,
        "max_attempts": None,
        "priority": None,
        "flags": None,
    }
    assert row["id"] == 3


def test_an_unsafe_dedupe_match_is_named_from_the_database() -> None:
    statements = EnqueueStatements.for_schema("gw")
    params = ("t", "{}", None, None, None, "k", None, None, "unsafe_dedupe")
    existing = {"id": 5, "revision": 2, "task_id": 9, "job_queue_id": 4}
    steps, row = _drive(statements.add_job_plan(params), [existing, ({"9": "other"}, {"4": "q"})])
    assert steps[-1].query == statements.names_for_ids_sql
    assert steps[-1].params == ([9], [4])
    assert (row["task_identifier"], row["queue_name"]) == ("other", "q")
