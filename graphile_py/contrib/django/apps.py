"""The Django app: its name, and the queue's schema installed with ``manage.py migrate``."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

__all__ = ["GraphileConfig", "install_schemas"]

logger = logging.getLogger("graphile_py.contrib.django")


class GraphileConfig(AppConfig):  # type: ignore[misc]
    """``graphile_py.contrib.django`` in ``INSTALLED_APPS``."""

    name = "graphile_py.contrib.django"
    label = "graphile_py"
    verbose_name = "graphile-py"

    def ready(self) -> None:
        post_migrate.connect(install_schemas, sender=self)


def install_schemas(using: str = "default", verbosity: int = 1, **_: Any) -> None:
    """Install or upgrade the schema of each backend that adds jobs through ``using``.

    Runs after ``manage.py migrate`` (and so when Django's test runner creates a test
    database), for backends whose ``OPTIONS["MIGRATE"]`` is left True.
    """
    from graphile_py.contrib.django.migrate import migrate_backend
    from graphile_py.contrib.django.worker import graphile_backends
    from graphile_py.logs import plural

    done: set[tuple[str, str | None]] = set()
    for backend in graphile_backends().values():
        config = backend.config
        if not config.migrate or config.database != using:
            continue
        if (config.schema, config.side_schema) in done:
            continue
        done.add((config.schema, config.side_schema))
        report = migrate_backend(backend)
        if verbosity >= 1 and (report.applied or report.side_applied):
            logger.info(
                "graphile-py: schema %r migrated (%s, %d in %r)",
                config.schema,
                plural(len(report.applied), "migration"),
                len(report.side_applied),
                report.side_schema,
            )
