"""Does any worker serve this task? What graphile-py can tell, and how sure it is.

A job whose task no worker knows stays ``ready`` forever, and nothing in graphile-worker's
schema says so: ``_private_tasks`` holds every identifier a worker registered *or* a job
was added with. graphile-py answers from the best evidence the database holds:

* **The worker registry** (the side schema's ``pools``), when some Python pool has ever
  registered there. A task is :attr:`Service.SERVED` when a live pool (heartbeat on
  time, not stopped, not lost) lists it, or when a worker outside the registry (Node, an
  older graphile-py) holds one of its jobs; otherwise it is :attr:`Service.UNSERVED`.
  Node workers never register, so "unserved" means *no live graphile-py pool serves it*:
  a Node worker that serves it but is running nothing of it now is not visible.
* **The jobs themselves**, when there is no registry to read (the side schema is missing,
  or no Python pool ever registered, as on a Node-only database). A task none of whose
  jobs has ever been attempted, while its oldest ready job has waited more than
  :data:`UNATTEMPTED_AFTER`, is :attr:`Service.UNATTEMPTED`; one with a job running is
  served; anything else is :attr:`Service.UNKNOWN`.

Jobs of an unserved or unattempted task that still wait to run (ready, scheduled or
retrying) are the ones ``status``, ``jobs list`` and the dashboard mark.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from graphile_py.admin.records import JobRecord, JobState, TaskStatus
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.db.inspection import inspection_statements_for
from graphile_py.db.registry_views import RegistryViewStatements
from graphile_py.db.side_views import NOT_INSTALLED
from graphile_py.errors import DatabaseError

__all__ = [
    "UNATTEMPTED_AFTER",
    "WAITING",
    "Registry",
    "Service",
    "ServiceReport",
    "TaskEvidence",
    "TaskService",
    "add_job_warnings",
    "judge",
    "services_for_jobs",
    "services_for_tasks",
    "task_known",
]

#: Without a registry, a task is "unattempted" once its oldest ready job has waited this
#: long with none of its jobs ever attempted. An idle worker that serves it claims a new
#: job within its poll interval (2 s by default, at once with LISTEN); a minute leaves
#: room for a busy one.
UNATTEMPTED_AFTER = timedelta(minutes=1)

#: The states of jobs that still wait for a worker: these are marked when unserved.
WAITING = frozenset({JobState.READY, JobState.SCHEDULED, JobState.RETRYING})

_NODE_NOT_VISIBLE = "Node workers are not visible to graphile-py"
# The SQLSTATE of a role that may not read the side schema: the registry is then unknown.
_FORBIDDEN = "42501"


class Service(enum.StrEnum):
    """What graphile-py can tell of whether a worker serves a task; see the module docs."""

    SERVED = "served"
    UNSERVED = "unserved"
    UNATTEMPTED = "unattempted"
    UNKNOWN = "unknown"


class Registry(enum.StrEnum):
    """Where the verdicts came from."""

    #: Some Python pool has registered: the registry says which tasks live pools serve.
    IN_USE = "in_use"
    #: The side schema is installed, but no Python pool ever registered in it.
    EMPTY = "empty"
    #: The side schema is not installed (``graphile-py migrate`` installs it).
    NOT_INSTALLED = "not_installed"
    #: The database refused this role access to the side schema.
    FORBIDDEN = "forbidden"


_WITHOUT_REGISTRY = {
    Registry.EMPTY: "no graphile-py pool has registered in this database",
    Registry.NOT_INSTALLED: (
        "the worker registry is not installed (graphile-py migrate installs it)"
    ),
    Registry.FORBIDDEN: "this role may not read the worker registry",
}


@dataclass(frozen=True, slots=True)
class TaskService:
    """One task's verdict: ``pools`` are the live graphile-py pools serving it; ``note``
    says in a sentence what is known, for people."""

    task: str
    service: Service
    note: str
    pools: tuple[str, ...] = ()

    @property
    def unserved(self) -> bool:
        """True for the verdicts that mark the task's waiting jobs."""
        return self.service in (Service.UNSERVED, Service.UNATTEMPTED)


@dataclass(frozen=True, slots=True)
class TaskEvidence:
    """What the jobs say of a task (used only when there is no registry to read)."""

    running: bool
    attempted: bool
    oldest_ready_age: timedelta | None


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """The verdicts of some tasks, and where they came from."""

    #: None when nothing needed judging (no job on the page waits), so nothing was read.
    registry: Registry | None
    tasks: Mapping[str, TaskService]

    def of(self, task: str) -> TaskService | None:
        """The verdict of ``task``, if it was judged."""
        return self.tasks.get(task)

    def marks(self, record: JobRecord) -> TaskService | None:
        """The verdict to show beside this job: its task's, if unserved and it waits."""
        found = self.tasks.get(record.job.task_identifier)
        if found is not None and found.unserved and record.state in WAITING:
            return found
        return None


def judge(
    task: str,
    *,
    registry: Registry,
    live: Mapping[str, Sequence[str]],
    held_outside: bool = False,
    evidence: TaskEvidence | None = None,
) -> TaskService:
    """The verdict for ``task`` from the registry (``live``: task to pool ids) or,
    without one, from ``evidence``; see the module docs for the rules."""
    if registry is Registry.IN_USE:
        pools = tuple(live.get(task, ()))
        if pools:
            many = "s" if len(pools) > 1 else ""
            return TaskService(
                task, Service.SERVED, f"served by {len(pools)} live graphile-py pool{many}", pools
            )
        if held_outside:
            return TaskService(
                task,
                Service.SERVED,
                "a worker outside the registry (Node, or an older graphile-py) is running"
                " one of its jobs",
            )
        return TaskService(
            task, Service.UNSERVED, f"no live graphile-py pool serves it; {_NODE_NOT_VISIBLE}"
        )
    why = _WITHOUT_REGISTRY[registry]
    if evidence is not None and evidence.running:
        return TaskService(task, Service.SERVED, "a worker is running one of its jobs")
    if (
        evidence is not None
        and not evidence.attempted
        and evidence.oldest_ready_age is not None
        and evidence.oldest_ready_age > UNATTEMPTED_AFTER
    ):
        return TaskService(
            task,
            Service.UNATTEMPTED,
            f"none of its jobs has ever been attempted and the oldest ready one has waited"
            f" {_age(evidence.oldest_ready_age)}; whether a worker serves it is unknown ({why})",
        )
    return TaskService(
        task, Service.UNKNOWN, f"graphile-py cannot tell whether a worker serves it ({why})"
    )


def services_for_tasks(utils: WorkerUtils, tasks: Sequence[TaskStatus]) -> ServiceReport:
    """The verdicts of ``status``'s tasks; without a registry, judged by their counts."""
    registry, live = _read_registry(utils)
    if registry is Registry.IN_USE:
        return _judge_by_registry(utils, [t.task for t in tasks], live)
    return ServiceReport(
        registry,
        {
            t.task: judge(
                t.task,
                registry=registry,
                live=live,
                evidence=TaskEvidence(
                    running=t.counts.running > 0,
                    attempted=t.counts.running + t.counts.retrying + t.counts.failed > 0,
                    oldest_ready_age=t.oldest_ready_age,
                ),
            )
            for t in tasks
        },
    )


def services_for_jobs(utils: WorkerUtils, records: Iterable[JobRecord]) -> ServiceReport:
    """The verdicts of the tasks of those ``records`` that wait to run.

    With the registry in use, one cheap read of the live pools (and, only for tasks no
    live pool lists, one scan for jobs held outside the registry); without it, the jobs
    of the tasks that have ready jobs here are read.
    """
    waiting = list(dict.fromkeys(r.job.task_identifier for r in records if r.state in WAITING))
    if not waiting:
        return ServiceReport(None, {})
    registry, live = _read_registry(utils)
    if registry is Registry.IN_USE:
        return _judge_by_registry(utils, waiting, live)
    statements = inspection_statements_for(utils.schema)
    with utils.connection() as conn:
        rows = statements.task_evidence(conn, waiting)
    evidence = {
        row["identifier"]: TaskEvidence(
            running=row["running"],
            attempted=row["attempted"],
            oldest_ready_age=row["oldest_ready_age"],
        )
        for row in rows
    }
    return ServiceReport(
        registry,
        {
            task: judge(task, registry=registry, live=live, evidence=evidence.get(task))
            for task in waiting
        },
    )


def task_known(utils: WorkerUtils, task: str) -> bool:
    """Whether a worker has registered ``task`` or a job was added with it."""
    with utils.connection() as conn:
        return inspection_statements_for(utils.schema).task_known(conn, task)


def add_job_warnings(utils: WorkerUtils, task: str, *, known_before: bool) -> list[str]:
    """What ``graphile-py add-job`` warns about the job it just added for ``task``."""
    warnings = []
    if not known_before:
        warnings.append(
            f"task {task!r} is new to this database: no worker has registered it and no job"
            " was added for it before. Check its spelling; the job waits until a worker"
            " that knows it runs."
        )
    registry, live = _read_registry(utils)
    if registry is Registry.IN_USE:
        verdict = _judge_by_registry(utils, [task], live).tasks[task]
        if verdict.unserved:
            warnings.append(f"task {task!r}: {verdict.note}.")
    return warnings


def _read_registry(utils: WorkerUtils) -> tuple[Registry, dict[str, list[str]]]:
    views = RegistryViewStatements.for_schema(utils.schema, utils.side_schema)
    try:
        with utils.connection() as conn:
            live = views.live_tasks(conn)
    except DatabaseError as exc:
        if exc.sqlstate in NOT_INSTALLED:
            return Registry.NOT_INSTALLED, {}
        if exc.sqlstate == _FORBIDDEN:
            return Registry.FORBIDDEN, {}
        raise
    if live is None:
        return Registry.EMPTY, {}
    return Registry.IN_USE, live


def _judge_by_registry(
    utils: WorkerUtils, tasks: Sequence[str], live: Mapping[str, Sequence[str]]
) -> ServiceReport:
    unlisted = [task for task in tasks if task not in live]
    held: set[str] = set()
    if unlisted:
        views = RegistryViewStatements.for_schema(utils.schema, utils.side_schema)
        with utils.connection() as conn:
            held = views.held_outside(conn, unlisted)
    return ServiceReport(
        Registry.IN_USE,
        {
            task: judge(task, registry=Registry.IN_USE, live=live, held_outside=task in held)
            for task in tasks
        },
    )


def _age(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"
