"""Record what a scripted sequence of SQL calls observably does, for differential tests.

A :class:`Recorder` runs calls against one database and logs their rows or errors
(SQLSTATE, constraint, message), normalising what may legitimately differ between two
runs: timestamps become offsets from the script's ``now()`` (or just "set" when every
call commits separately) and the random ``r`` of ``jobs:insert`` payloads becomes R.

* one-transaction mode: the whole script runs in one transaction, each call under a
  savepoint, so ``now()`` is fixed and timestamps compare exactly; notifications
  arrive at the commit and are compared in order.
* autocommit mode: every call commits on its own, so each call's notifications are
  logged with it; timestamps are only compared as set or NULL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tests.support import TestDatabase

__all__ = ["Recorder", "compare_runs", "entry", "errors", "recording", "run_script"]

_ADD_JOB_CASTS = {
    "payload": "json",
    "queue_name": "text",
    "run_at": "timestamptz",
    "max_attempts": "int",
    "job_key": "text",
    "priority": "int",
    "flags": "text[]",
    "job_key_mode": "text",
}
_NOTIFY_PAYLOAD = re.compile(r'^\{"r":(?P<r>[^,{}"]+),"count":(?P<count>-?\d+)\}$')


def _shape_notification(channel: str, payload: str) -> str:
    """``channel payload`` with the random ``r`` replaced by R (after checking it)."""
    match = _NOTIFY_PAYLOAD.match(payload)
    if match is None:
        return f"{channel} {payload}"
    assert 0.0 <= float(match["r"]) < 1.0, payload
    return f'{channel} {{"r":R,"count":{match["count"]}}}'


@dataclass
class Recorder:
    """Runs the script's calls on one database and records what is observable."""

    conn: psycopg.Connection[Any]
    schema: str
    one_transaction: bool
    now: dt.datetime | None = None
    #: Columns whose values are only compared as set or NULL.
    loose_columns: frozenset[str] = frozenset()
    log: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn.add_notify_handler(
            lambda n: self.notifications.append(_shape_notification(n.channel, n.payload))
        )
        if self.now is None:
            row = self.conn.execute("select now()").fetchone()
            assert row is not None
            self.now = row[0]

    # -- building blocks -------------------------------------------------------------

    def q(self, text: str) -> sql.Composable:
        """``text`` with ``{s}`` replaced by the quoted worker schema."""
        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    def at(self, **delta: float) -> str:
        """An ISO timestamp relative to the script's reference time."""
        assert self.now is not None
        return (self.now + dt.timedelta(**delta)).isoformat()

    def value(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            if not self.one_transaction:
                return "<timestamp>"
            assert self.now is not None
            offset = value - self.now
            sign = "-" if offset < dt.timedelta(0) else "+"
            return f"now{sign}{abs(offset)}"
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value

    def loosen(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            key: "<set>" if key in self.loose_columns and value is not None else value
            for key, value in row.items()
        }

    def call(self, label: str, query: sql.Composable, params: Sequence[Any] = ()) -> dict[str, Any]:
        entry: dict[str, Any] = {"call": label}
        seen = len(self.notifications)
        try:
            with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                rows = cur.fetchall() if cur.description else []
                entry["rows"] = [self.value(self.loosen(row)) for row in rows]
        except psycopg.Error as exc:
            diag = exc.diag
            entry["error"] = {
                "sqlstate": exc.sqlstate,
                "constraint": diag.constraint_name,
                "table": diag.table_name,
                "column": diag.column_name,
                "message": diag.message_primary,
            }
        if not self.one_transaction:
            entry["notifications"] = self.notifications[seen:]
        self.log.append(entry)
        return entry

    def sql(self, label: str, text: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        return self.call(label, self.q(text), params)

    # -- the functions under test ----------------------------------------------------

    def add_job(self, label: str, identifier: str | None, **options: Any) -> dict[str, Any]:
        """``select * from add_job(identifier, name => value::type, ...)`` as Node calls it."""
        parts = [sql.SQL("%s::text")]
        params: list[Any] = [identifier]
        for name, value in options.items():
            cast = sql.SQL(_ADD_JOB_CASTS[name])
            parts.append(sql.SQL("{} => %s::{}").format(sql.Identifier(name), cast))
            params.append(json.dumps(value) if name == "payload" else value)
        query = sql.SQL("select * from {}.add_job({})").format(
            sql.Identifier(self.schema), sql.SQL(", ").join(parts)
        )
        return self.call(label, query, params)

    def add_jobs(
        self, label: str, specs: list[dict[str, Any]], preserve_run_at: bool | None = None
    ) -> dict[str, Any]:
        """``add_jobs`` fed from JSON through json_populate_recordset, as Node's addJobs."""
        specs_sql = "array(select json_populate_recordset(null::{s}.job_spec, %s::json))"
        if preserve_run_at is None:
            return self.sql(
                label, f"select * from {{s}}.add_jobs({specs_sql})", [json.dumps(specs)]
            )
        return self.sql(
            label,
            f"select * from {{s}}.add_jobs({specs_sql}, %s::boolean)",
            [json.dumps(specs), preserve_run_at],
        )

    def lock(self, key: str, *, by: str = "worker-1", hours_ago: float = 0) -> None:
        """Simulate a worker running the job holding ``key`` (or a stale lock)."""
        self.sql(
            f"lock {key} by {by} {hours_ago}h ago",
            "update {s}._private_jobs set locked_at = %s, locked_by = %s where key = %s",
            [self.at(hours=-hours_ago), by, key],
        )

    def tagged(self, *tags: str) -> str:
        """SQL for the ids of the jobs whose payload has one of ``tags``."""
        quoted = ", ".join("'" + tag.replace("'", "''") + "'" for tag in tags)
        return (
            "array(select id from {s}._private_jobs"
            f" where json_typeof(payload) = 'object' and payload->>'tag' in ({quoted})"
            " order by id)"
        )

    def dump(self, *tables: tuple[str, str]) -> None:
        """Log the full contents of each (table, order by) in the worker schema."""
        for table, order in tables:
            self.call(
                f"dump {table}",
                sql.SQL("select * from {}.{} order by {}").format(
                    sql.Identifier(self.schema), sql.Identifier(table), sql.SQL(order)
                ),
            )

    def dump_sequences(self) -> None:
        """Log every sequence's last value: identity values used up are behaviour too."""
        self.call(
            "dump sequences",
            sql.SQL(
                "select sequencename, last_value from pg_sequences"
                " where schemaname = %s order by sequencename"
            ),
            [self.schema],
        )


@contextmanager
def recording(
    database: TestDatabase,
    *,
    one_transaction: bool,
    now: dt.datetime | None = None,
    loose_columns: frozenset[str] = frozenset(),
) -> Iterator[Recorder]:
    """A Recorder on a new connection to ``database`` (see the module docstring).

    ``now`` overrides the reference time that timestamps are shown relative to, so a
    later look at the same rows (after a migration, say) stays comparable.
    """
    with database.connect() as conn:
        # LISTEN outside the script's transaction, so it is active when that commits.
        conn.execute('listen "jobs:insert"')
        if one_transaction:
            with conn.transaction():
                yield Recorder(conn, database.schema, True, now, loose_columns)
            conn.execute("select 1")  # make sure the commit's notifications are processed
        else:
            yield Recorder(conn, database.schema, False, now, loose_columns)


def run_script(
    database: TestDatabase, script: Callable[[Recorder], None], *, one_transaction: bool
) -> dict[str, Any]:
    """Run ``script`` on ``database``; returns its log, notifications and reference time."""
    with recording(database, one_transaction=one_transaction) as recorder:
        script(recorder)
    return {"calls": recorder.log, "notifications": recorder.notifications, "now": recorder.now}


def compare_runs(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Equal, or fail naming the first call that differs."""
    assert [e["call"] for e in ours["calls"]] == [e["call"] for e in theirs["calls"]]
    for mine, node in zip(ours["calls"], theirs["calls"], strict=True):
        assert mine == node, f"call {node['call']!r} differs:\nours: {mine}\nnode: {node}"
    assert ours["notifications"] == theirs["notifications"]


def errors(run: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """{call label: (SQLSTATE, constraint)} for every call that failed."""
    return {
        item["call"]: (item["error"]["sqlstate"], item["error"]["constraint"])
        for item in run["calls"]
        if "error" in item
    }


def entry(run: dict[str, Any], label: str) -> dict[str, Any]:
    """The logged entry of the call labelled ``label``."""
    return next(item for item in run["calls"] if item["call"] == label)
