"""Rows as the statements return them, and the jobs made from them.

The claim and ``add_jobs`` select the columns of ``_private_jobs`` in the order of
:data:`JOB_COLUMNS`, so that a tuple row becomes a :class:`~graphile_py.jobs.Job`
without a dict in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphile_py.jobs import Job

__all__ = ["JOB_COLUMNS", "Row", "int_array", "jobs_from_rows", "labelled_jobs"]

#: A row fetched with psycopg's ``dict_row``.
Row = dict[str, Any]

#: The columns of ``_private_jobs`` in the order of Job's fields after ``task_identifier``
#: and ``queue_name`` (``payload`` moved first): a tuple row in this order becomes a Job
#: without a dict (see :func:`jobs_from_rows`).
JOB_COLUMNS = (
    "id",
    "payload",
    "job_queue_id",
    "task_id",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
    "is_available",
)


def jobs_from_rows(
    rows: Sequence[Sequence[Any]],
    tasks: Mapping[int, str] | None,
    queues: Mapping[int, str] | None = None,
    payloads: Sequence[Any] | None = None,
) -> list[Job]:
    """Jobs from rows of :data:`JOB_COLUMNS`, named from ``tasks`` and ``queues`` (by id).

    ``payloads``, when given, are the rows' payloads already decoded (one ``json.loads``
    for a whole bulk insert), used in place of each row's own.
    """
    task_names = tasks or {}
    queue_names = queues or {}
    if payloads is not None:
        return [
            Job(row[0], task_names.get(row[3], ""), payload, queue_names.get(row[2]), *row[2:])
            for row, payload in zip(rows, payloads, strict=True)
        ]
    if not queues:
        return [Job(row[0], task_names.get(row[3], ""), row[1], None, *row[2:]) for row in rows]
    return [
        Job(row[0], task_names.get(row[3], ""), row[1], queue_names.get(row[2]), *row[2:])
        for row in rows
    ]


def labelled_jobs(call: str) -> str:
    """The job rows that the schema function ``call`` returns, with task and queue names.

    Joined in the same statement, so an admin action is one round trip and its jobs carry
    ``task_identifier`` and ``queue_name`` like the claim's. The functions return a row of
    nulls when nothing matched (``remove_job``), which the filter drops.
    """
    return (
        "select jobs.*, tasks.identifier as task_identifier, queues.queue_name from "
        + call
        + " as jobs left join {schema}._private_tasks as tasks on tasks.id = jobs.task_id"
        " left join {schema}._private_job_queues as queues on queues.id = jobs.job_queue_id"
        " where jobs.id is not null"
    )


def int_array(values: Sequence[int]) -> str:
    """An array literal for an ``int[]``/``bigint[]`` parameter.

    psycopg's list dumper walks the list in Python and cost more than everything else
    about a claim's or a batch completion's parameters; the server parses this instead.
    """
    return "{" + ",".join(map(str, map(int, values))) + "}"
