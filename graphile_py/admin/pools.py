"""Which worker pools are alive, on which host, doing what: the registry as operators see it.

Python pools register themselves in the side schema's ``pools`` table and refresh a
heartbeat there; a live pool declares a silent one lost and releases its jobs. A pool is
in exactly one :class:`PoolState`:

``alive``     registered, not stopped, heartbeat within its own ``heartbeat_timeout``;
``overdue``   not stopped and not declared lost, but its heartbeat is late: it is frozen
              or dead, and no live pool has rescued its jobs yet;
``lost``      declared lost by another pool (``lost_by``), its jobs released;
``stopped``   stopped cleanly.

Pools that hold locks without being registered (Node workers, older graphile-py) are
listed apart: the registry knows nothing of them, and their locks expire after 4 hours.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from graphile_py.admin.worker_utils import LockHolder, WorkerUtils
from graphile_py.db import statements_for
from graphile_py.db.registry_views import RegistryViewStatements

__all__ = [
    "LOST_WINDOW",
    "MAX_POOLS",
    "PoolRecord",
    "PoolState",
    "WorkersReport",
    "count_pools",
    "read_workers",
]

#: Lost pools stay in the default listing this long after they were declared lost.
LOST_WINDOW = timedelta(hours=24)
#: At most this many pools are listed.
MAX_POOLS = 1000


class PoolState(enum.StrEnum):
    """Where a registered pool is in its life; see the module docstring."""

    ALIVE = "alive"
    OVERDUE = "overdue"
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A registered pool; ``running_jobs`` and ``locked_queues`` are what it holds now."""

    id: str
    state: PoolState
    hostname: str
    pid: int
    version: str
    concurrency: int
    tasks: tuple[str, ...]
    heartbeat_timeout: timedelta
    started_at: datetime
    heartbeat_at: datetime
    #: How long ago its last heartbeat was, by the database's clock.
    heartbeat_age: timedelta
    stopped_at: datetime | None
    lost_at: datetime | None
    lost_by: str | None
    jobs_rescued: int | None
    jobs_succeeded: int
    jobs_failed: int
    running_jobs: int
    locked_queues: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PoolRecord:
        """A record from a row of :meth:`RegistryViewStatements.list_pools`."""
        age = row["now"] - row["heartbeat_at"]
        if row["lost_at"] is not None:
            state = PoolState.LOST
        elif row["stopped_at"] is not None:
            state = PoolState.STOPPED
        elif age > row["heartbeat_timeout"]:
            state = PoolState.OVERDUE
        else:
            state = PoolState.ALIVE
        return cls(
            id=row["id"],
            state=state,
            hostname=row["hostname"],
            pid=row["pid"],
            version=row["version"],
            concurrency=row["concurrency"],
            tasks=tuple(row["task_identifiers"]),
            heartbeat_timeout=row["heartbeat_timeout"],
            started_at=row["started_at"],
            heartbeat_at=row["heartbeat_at"],
            heartbeat_age=age,
            stopped_at=row["stopped_at"],
            lost_at=row["lost_at"],
            lost_by=row["lost_by"],
            jobs_rescued=row["jobs_rescued"],
            jobs_succeeded=row["jobs_succeeded"],
            jobs_failed=row["jobs_failed"],
            running_jobs=row["running_jobs"],
            locked_queues=row["locked_queues"],
        )


@dataclass(frozen=True, slots=True)
class WorkersReport:
    """What ``graphile-py workers`` shows: registered pools, and unregistered lock holders."""

    taken_at: datetime
    pools: Sequence[PoolRecord]
    #: Pools holding locks that never registered (Node, older graphile-py).
    unregistered: Sequence[LockHolder]

    def count(self, state: PoolState) -> int:
        """How many of the listed pools are in ``state``."""
        return sum(1 for pool in self.pools if pool.state is state)


def read_workers(
    utils: WorkerUtils, *, include_stopped: bool = False, lost_within: timedelta = LOST_WINDOW
) -> WorkersReport:
    """Live pools and those lost within ``lost_within``; with ``include_stopped``, all.

    Raises :class:`~graphile_py.DatabaseError` saying to run ``graphile-py migrate``
    when the side schema is not installed.
    """
    views = RegistryViewStatements.for_schema(utils.schema, utils.side_schema)
    with utils.connection() as conn:
        rows = views.list_pools(
            conn, include_ended=include_stopped, lost_within=lost_within, limit=MAX_POOLS
        )
        # On the same connection: a WorkerUtils may have only one.
        holders = [LockHolder(**row) for row in statements_for(utils.schema).lock_holders(conn)]
        known = views.registered(conn, [holder.pool_id for holder in holders]) if holders else set()
    pools = [PoolRecord.of(row) for row in rows]
    return WorkersReport(
        taken_at=rows[0]["now"] if rows else datetime.now(UTC),
        pools=pools,
        unregistered=[holder for holder in holders if holder.pool_id not in known],
    )


def count_pools(utils: WorkerUtils) -> tuple[int, int]:
    """``(alive, overdue)``: registered pools not ended, by whether their heartbeat is on time."""
    views = RegistryViewStatements.for_schema(utils.schema, utils.side_schema)
    with utils.connection() as conn:
        return views.count_pools(conn)
