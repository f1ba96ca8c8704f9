"""The graphile-py pytest plugin: throwaway databases, running queued jobs, assertions.

Installed with the package and registered through the ``pytest11`` entry point
``graphile_py``, so a project that has graphile-py installed gets these fixtures without
configuration (``-p no:graphile_py`` turns it off). Nothing connects to a database until
a test asks for one of the fixtures; see docs/testing.md.

Fixtures (all named ``graphile_*`` so they clash with no project's own):

- ``graphile_db``: a fresh, migrated database for this test (cloned from a template
  migrated once per session), dropped afterwards. ``.dsn``, ``.connect()``,
  ``.sqlalchemy_url()``.
- ``graphile_tasks``: the task registry ``run_jobs`` uses; set ``graphile_tasks =
  "module:attribute"`` in the ini file, or override the fixture.
- ``graphile_jobs``: ``run_jobs()`` / ``run_jobs_async()``, ``queued_jobs(task)``,
  ``assert_job_enqueued(task, payload_contains=...)``, ``assert_no_jobs()``.
- ``graphile_inline``: for this test, ``add_job`` runs the task when the transaction
  that added the job commits.
- ``graphile_prepare_template`` (session): override it to return a function that gets
  the template's connection string once per session, to create your own tables there.

Settings (ini file, or the environment variable, which wins):
``graphile_database_url`` / ``GRAPHILE_TEST_DATABASE_URL``: a server and a role that
may create databases (default: libpq's defaults, the ``PG*`` variables);
``graphile_schema`` / ``GRAPHILE_TEST_SCHEMA``: the worker schema (``graphile_worker``).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pytest

if TYPE_CHECKING:
    import psycopg

    from graphile_py.admin.worker_utils import WorkerUtils
    from graphile_py.contrib.pytest.drain import (
        JobError,
        JobsRun,
        RunawayJobs,
        run_jobs,
        run_jobs_async,
    )
    from graphile_py.contrib.pytest.inline import InlineMode
    from graphile_py.jobs import Job
    from graphile_py.tasks import TaskFunction

__all__ = [
    "GraphileDatabase",
    "GraphileJobs",
    "InlineMode",
    "JobError",
    "JobsRun",
    "RunawayJobs",
    "run_jobs",
    "run_jobs_async",
]

# Loaded on first use: pytest imports this plugin in every run of a project that has
# graphile-py installed, and most runs never touch the queue.
_LAZY = {
    "InlineMode": "graphile_py.contrib.pytest.inline",
    "JobError": "graphile_py.contrib.pytest.drain",
    "JobsRun": "graphile_py.contrib.pytest.drain",
    "RunawayJobs": "graphile_py.contrib.pytest.drain",
    "run_jobs": "graphile_py.contrib.pytest.drain",
    "run_jobs_async": "graphile_py.contrib.pytest.drain",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


_URL_OPTION = "graphile_database_url"
_URL_ENV = "GRAPHILE_TEST_DATABASE_URL"
_SCHEMA_OPTION = "graphile_schema"
_SCHEMA_ENV = "GRAPHILE_TEST_SCHEMA"
_TASKS_OPTION = "graphile_tasks"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _URL_OPTION,
        f"graphile-py: the PostgreSQL server for throwaway test databases, as a role that"
        f" may create databases (env {_URL_ENV} wins; default: libpq's PG* variables)",
        default="",
    )
    parser.addini(
        _SCHEMA_OPTION,
        f"graphile-py: the worker schema of test databases (env {_SCHEMA_ENV} wins)",
        default="graphile_worker",
    )
    parser.addini(
        _TASKS_OPTION,
        "graphile-py: 'module:attribute' of the task registry that run_jobs runs",
        default="",
    )


@dataclass(frozen=True)
class GraphileDatabase:
    """A migrated database that belongs to one test."""

    name: str
    #: A ``postgresql://`` URL for psycopg, graphile-py and most tools.
    dsn: str
    schema: str
    _params: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new psycopg connection to this database (``autocommit`` etc. as keywords)."""
        import psycopg

        return psycopg.connect(self.dsn, **kwargs)

    def sqlalchemy_url(self, driver: str = "psycopg") -> str:
        """This database as a SQLAlchemy URL (``postgresql+psycopg://...``)."""
        return _url(dict(self._params), f"postgresql+{driver}")


def _url(params: Mapping[str, str], scheme: str) -> str:
    """A connection URL from libpq keywords (a socket directory goes in ``?host=``)."""
    params = dict(params)
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = userinfo + "@" if userinfo else ""
    if host and not host.startswith("/") and "," not in host:
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    else:
        if host:
            params["host"] = host
        if port:
            params["port"] = port
    query = urlencode(params)
    return f"{scheme}://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def _setting(config: pytest.Config, option: str, env: str) -> str:
    return os.environ.get(env) or str(config.getini(option) or "")


class _Server:
    """The server test databases are made on; created on first use in a session."""

    def __init__(self, admin_dsn: str, schema: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        self.admin_dsn = admin_dsn
        self.schema = schema
        self.params = {k: str(v) for k, v in conninfo_to_dict(admin_dsn).items() if v is not None}
        self._drops: list[threading.Thread] = []

    def database(self, name: str) -> GraphileDatabase:
        params = {**self.params, "dbname": name}
        return GraphileDatabase(
            name=name,
            dsn=_url(params, "postgresql"),
            schema=self.schema,
            _params=tuple(sorted(params.items())),
        )

    def create(self, prefix: str, template: str | None = None) -> GraphileDatabase:
        import psycopg

        from graphile_py.db.throwaway import create_database

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as admin:
                create_database(admin, name, template=template)
        except psycopg.OperationalError as exc:
            raise pytest.UsageError(
                f"graphile-py's pytest plugin could not reach the test server: {exc}\nSet"
                f" {_URL_ENV}, or '{_URL_OPTION}' in your pytest ini, to a PostgreSQL server"
                " and a role that may create databases."
            ) from exc
        return self.database(name)

    def drop(self, name: str) -> None:
        import psycopg

        from graphile_py.db.throwaway import drop_database

        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as admin:
            drop_database(admin, name)

    def drop_later(self, name: str) -> None:
        """Drop ``name`` in the background: a DROP DATABASE takes a checkpoint's time, which
        the next test need not wait for. :meth:`wait` joins them all."""
        thread = threading.Thread(target=self.drop, args=(name,), name=f"drop-{name}")
        thread.start()
        self._drops.append(thread)

    def wait(self) -> None:
        """Wait for the background drops."""
        for thread in self._drops:
            thread.join()
        self._drops.clear()


@pytest.fixture(scope="session")
def graphile_prepare_template() -> Callable[[str], None] | None:
    """Override to return ``setup(dsn)``, run once on the template after migrating it.

    ``setup`` must close the connections it opens: PostgreSQL clones only a template
    that nobody is connected to.
    """
    return None


@pytest.fixture(scope="session")
def _graphile_template(
    pytestconfig: pytest.Config,
    graphile_prepare_template: Callable[[str], None] | None,
) -> Iterator[tuple[_Server, GraphileDatabase]]:
    import psycopg

    from graphile_py.db.migrate import migrate

    server = _Server(
        _setting(pytestconfig, _URL_OPTION, _URL_ENV),
        _setting(pytestconfig, _SCHEMA_OPTION, _SCHEMA_ENV) or "graphile_worker",
    )
    template = server.create("graphile_template")
    try:
        with psycopg.connect(template.dsn, autocommit=True) as conn:
            migrate(conn, schema=server.schema)
        if graphile_prepare_template is not None:
            graphile_prepare_template(template.dsn)
        yield server, template
    finally:
        server.wait()
        server.drop(template.name)


@pytest.fixture
def graphile_db(_graphile_template: tuple[_Server, GraphileDatabase]) -> Iterator[GraphileDatabase]:
    """A migrated database of this test's own, dropped when the test ends."""
    server, template = _graphile_template
    database = server.create("graphile_test", template=template.name)
    try:
        yield database
    finally:
        server.drop_later(database.name)


@pytest.fixture
def graphile_tasks(pytestconfig: pytest.Config) -> Mapping[str, TaskFunction]:
    """The task registry that run_jobs and inline mode run (from the ini's graphile_tasks).

    Override this fixture to give another one.
    """
    from graphile_py.tasks import load_task_map

    spec = str(pytestconfig.getini(_TASKS_OPTION) or "")
    if not spec:
        raise pytest.UsageError(
            "graphile-py: run_jobs needs your task registry: set graphile_tasks ="
            " 'module:attribute' in your pytest ini, or define a 'graphile_tasks' fixture"
            " that returns it"
        )
    return load_task_map(spec, search_path=str(pytestconfig.rootpath))


class GraphileJobs:
    """What a test does with the queue of its ``graphile_db``: run it, look at it."""

    def __init__(self, database: GraphileDatabase, tasks: Mapping[str, TaskFunction]) -> None:
        self.database = database
        self.tasks = tasks
        self._utils: WorkerUtils | None = None

    def run_jobs(self, **kwargs: Any) -> JobsRun:
        """Run what is queued until nothing is due; see :func:`drain.run_jobs` for options
        (``retries``, ``include_future``, ``max_rounds``, ``raise_errors``, ``options``)."""
        from graphile_py.contrib.pytest.drain import run_jobs

        return run_jobs(self.database.dsn, self.tasks, **self._run_kwargs(kwargs))

    async def run_jobs_async(self, **kwargs: Any) -> JobsRun:
        """:meth:`run_jobs` for async tests (runs in a thread; the event loop stays free)."""
        from graphile_py.contrib.pytest.drain import run_jobs_async

        return await run_jobs_async(self.database.dsn, self.tasks, **self._run_kwargs(kwargs))

    def _run_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # The database's schema wins, also over the default of the caller's own options.
        options = kwargs.get("options")
        if options is not None:
            import dataclasses

            kwargs["options"] = dataclasses.replace(options, schema=self.database.schema)
        return {**kwargs, "schema": self.database.schema}

    def queued_jobs(self, task: str | None = None, *, include_failed: bool = False) -> list[Job]:
        """Jobs waiting to run (of ``task``), oldest first; failed ones if asked."""
        from graphile_py.contrib.pytest.queue import queued_jobs

        return queued_jobs(self._inspector(), task, include_failed=include_failed)

    def assert_job_enqueued(self, task: str, **conditions: Any) -> list[Job]:
        """Assert a queued job of ``task`` matches ``payload``, ``payload_contains``,
        ``queue_name``, ``job_key`` (those given); ``count=n`` for exactly n. Returns them."""
        from graphile_py.contrib.pytest.queue import assert_job_enqueued

        __tracebackhide__ = True
        return assert_job_enqueued(self._inspector(), task, **conditions)

    def assert_no_jobs(self, task: str | None = None) -> None:
        """Assert nothing is queued (of ``task``, when given)."""
        __tracebackhide__ = True
        from graphile_py.contrib.pytest.queue import describe_queue, queued_records

        records = queued_records(self._inspector())
        mine = [r for r in records if task is None or r.job.task_identifier == task]
        if mine:
            what = "jobs" if task is None else f"jobs for task {task!r}"
            raise AssertionError(f"expected no {what}.\n{describe_queue(records)}")

    def _inspector(self) -> Any:
        from graphile_py.admin.inspector import Inspector
        from graphile_py.admin.worker_utils import WorkerUtils

        if self._utils is None:
            self._utils = WorkerUtils(
                self.database.dsn,
                schema=self.database.schema,
                run_migrations=False,
                max_pool_size=1,
            )
        return Inspector(self._utils)

    def close(self) -> None:
        """Close the connection kept for looking at the queue."""
        if self._utils is not None:
            self._utils.close()
            self._utils = None


@pytest.fixture
def graphile_jobs(
    graphile_db: GraphileDatabase, request: pytest.FixtureRequest
) -> Iterator[GraphileJobs]:
    """Run and inspect the jobs of ``graphile_db`` (tasks from ``graphile_tasks``, loaded
    only when run_jobs is first called, so assertions need no registry)."""
    jobs = _LazyTasksJobs(graphile_db, request)
    try:
        yield jobs
    finally:
        jobs.close()


class _LazyTasksJobs(GraphileJobs):
    def __init__(self, database: GraphileDatabase, request: pytest.FixtureRequest) -> None:
        super().__init__(database, {})
        self._request = request
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self.tasks = self._request.getfixturevalue("graphile_tasks")
            self._loaded = True

    def run_jobs(self, **kwargs: Any) -> JobsRun:
        self._load()
        return super().run_jobs(**kwargs)

    async def run_jobs_async(self, **kwargs: Any) -> JobsRun:
        self._load()
        return await super().run_jobs_async(**kwargs)


@pytest.fixture
def graphile_inline(
    graphile_db: GraphileDatabase, graphile_tasks: Mapping[str, TaskFunction]
) -> Iterator[InlineMode]:
    """For this test, ``add_job`` runs its task when its transaction commits."""
    from graphile_py.contrib.pytest.inline import InlineMode
    from graphile_py.enqueue import set_inline_hook
    from graphile_py.logs import plural

    inline = InlineMode(graphile_db.dsn, graphile_tasks, schema=graphile_db.schema)
    previous = set_inline_hook(inline)
    try:
        yield inline
    finally:
        inline.active = False
        set_inline_hook(previous)
    if inline.raise_errors and inline.errors:
        lines = "\n".join(
            f"  job {e.job.id} ({e.job.task_identifier}): {type(e.error).__name__}: {e.error}"
            for e in inline.errors
        )
        pytest.fail(
            f"{plural(len(inline.errors), 'inline job')} failed (clear graphile_inline.errors,"
            " or set"
            f" graphile_inline.raise_errors = False, if that was expected):\n{lines}",
            pytrace=False,
        )
