"""What a ``TASKS`` entry for :class:`GraphileBackend` says, checked once, and where it connects.

.. code-block:: python

    TASKS = {
        "default": {
            "BACKEND": "graphile_py.contrib.django.GraphileBackend",
            "QUEUES": ["default", "emails", "payments"],
            "OPTIONS": {
                "DATABASE": "default",              # the DATABASES alias jobs go through
                "SCHEMA": "graphile_worker",        # the queue's schema (shared with Node)
                "SERIAL_QUEUES": {"payments": "payments"},  # Django queue -> serial queue
                "MAX_ATTEMPTS": 25,                 # graphile's default when left out
                "TASK_MODULES": ["myapp.jobs"],     # besides each installed app's tasks
                "MIGRATE": True,                    # install the schema on manage.py migrate
            },
        }
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from graphile_py.contrib.django.errors import BackendMisconfigured
from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.db.side_schema import side_schema_for
from graphile_py.errors import ConfigurationError

__all__ = ["BackendConfig", "conninfo_for", "psycopg_connection"]

_QUEUE_NAME_LIMIT = 128  # graphile-worker's check on _private_job_queues.queue_name


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """The ``OPTIONS`` of one :class:`GraphileBackend`, checked."""

    alias: str
    #: The ``DATABASES`` alias that jobs are added through and results read from.
    database: str = "default"
    schema: str = DEFAULT_SCHEMA
    side_schema: str | None = None
    #: Django queue name -> graphile-worker queue name, for queues run one job at a time.
    serial_queues: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int | None = None
    task_modules: tuple[str, ...] = ()
    migrate: bool = True

    @classmethod
    def from_params(cls, alias: str, params: Mapping[str, Any], queues: set[str]) -> BackendConfig:
        """Check ``OPTIONS`` (and that ``SERIAL_QUEUES`` names queues of ``QUEUES``)."""
        options = params.get("OPTIONS", {})
        where = f"TASKS[{alias!r}]['OPTIONS']"
        if not isinstance(options, Mapping):
            raise BackendMisconfigured(f"{where} must be a dict, not {type(options).__name__}")
        known = {"DATABASE", "SCHEMA", "SIDE_SCHEMA", "SERIAL_QUEUES", "MAX_ATTEMPTS"}
        known |= {"TASK_MODULES", "MIGRATE"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BackendMisconfigured(
                f"{where} has unknown keys {unknown}; the keys are {sorted(known)}"
            )
        database = options.get("DATABASE", "default")
        schema = options.get("SCHEMA", DEFAULT_SCHEMA)
        side_schema = options.get("SIDE_SCHEMA")
        for key, value in (("DATABASE", database), ("SCHEMA", schema)):
            if not isinstance(value, str) or not value:
                raise BackendMisconfigured(f"{where}[{key!r}] must be a non-empty string")
        try:
            side_schema_for(schema, side_schema)  # checks both names
        except ConfigurationError as exc:
            raise BackendMisconfigured(f"{where}: {exc}") from exc
        max_attempts = options.get("MAX_ATTEMPTS")
        if max_attempts is not None and (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= 32767
        ):
            raise BackendMisconfigured(
                f"{where}['MAX_ATTEMPTS'] must be a whole number from 1 to 32767,"
                f" not {max_attempts!r}"
            )
        modules = options.get("TASK_MODULES", ())
        if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules):
            raise BackendMisconfigured(
                f"{where}['TASK_MODULES'] must be a list of module names, not {modules!r}"
            )
        migrate = options.get("MIGRATE", True)
        if not isinstance(migrate, bool):
            raise BackendMisconfigured(f"{where}['MIGRATE'] must be True or False")
        return cls(
            alias=alias,
            database=database,
            schema=schema,
            side_schema=side_schema,
            serial_queues=_serial_queues(where, options.get("SERIAL_QUEUES", {}), queues),
            max_attempts=max_attempts,
            task_modules=tuple(modules),
            migrate=migrate,
        )


def _serial_queues(where: str, given: object, queues: set[str]) -> dict[str, str]:
    """``SERIAL_QUEUES`` as a dict; a list means "each under its own name"."""
    if isinstance(given, list | tuple | set | frozenset):
        given = {name: name for name in given}
    if not isinstance(given, Mapping):
        raise BackendMisconfigured(
            f"{where}['SERIAL_QUEUES'] must map Django queue names to graphile-worker queue"
            f" names (or list Django queue names), not {type(given).__name__}"
        )
    checked: dict[str, str] = {}
    for django_queue, serial in given.items():
        if queues and django_queue not in queues:
            raise BackendMisconfigured(
                f"{where}['SERIAL_QUEUES'] names the queue {django_queue!r}, which is not in"
                f" this backend's QUEUES {sorted(queues)}: add it there"
            )
        if not isinstance(serial, str) or not 0 < len(serial) <= _QUEUE_NAME_LIMIT:
            raise BackendMisconfigured(
                f"{where}['SERIAL_QUEUES'][{django_queue!r}] must be a queue name of 1 to"
                f" {_QUEUE_NAME_LIMIT} characters, not {serial!r}"
            )
        checked[django_queue] = serial
    return checked


def psycopg_connection(alias: str) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under Django's connection ``alias``, connected.

    Statements sent on it are in whatever transaction Django has open there: inside
    ``transaction.atomic()``, the caller's.
    """
    from django.db import connections

    wrapper = connections[alias]
    _check_postgresql(alias, wrapper)
    wrapper.ensure_connection()
    # As Django's own cursors do: a transaction already doomed by an error refuses more.
    wrapper.validate_no_broken_transaction()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise BackendMisconfigured(
            f"DATABASES[{alias!r}] runs on psycopg2; GraphileBackend adds jobs in Django's"
            " own transaction and so needs psycopg 3: pip install 'psycopg[binary]' (Django"
            " then prefers it)"
        )
    return raw


def conninfo_for(alias: str) -> str:
    """A libpq connection string for the database Django knows as ``alias``.

    Made from what Django itself would connect with (``NAME``, ``USER``, ``HOST``,
    ``OPTIONS`` such as ``sslmode`` or ``service``...), less what only Django's driver
    layer understands; a test run's database name is the test database's.
    """
    from django.db import connections

    wrapper = connections[alias]
    _check_postgresql(alias, wrapper)
    params = wrapper.get_connection_params()
    keywords = {item.keyword.decode() for item in psycopg.pq.Conninfo.get_defaults()}
    libpq = {
        key: value
        for key, value in params.items()
        if key in keywords and value is not None and value != ""
    }
    return make_conninfo(**libpq)


def _check_postgresql(alias: str, wrapper: Any) -> None:
    if wrapper.vendor != "postgresql":
        raise BackendMisconfigured(
            f"DATABASES[{alias!r}] is a {wrapper.vendor} database; graphile-py's queue lives in"
            " PostgreSQL: point the backend's OPTIONS['DATABASE'] at a PostgreSQL alias"
        )
