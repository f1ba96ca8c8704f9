"""``manage.py graphile_worker``: run the project's Django tasks on a graphile-py worker.

The options are those of ``graphile-py worker`` (built from the same declarations, see
:mod:`graphile_py.contrib.django.arguments`), less the connection and schema, which come
from ``DATABASES`` and the backend's ``OPTIONS``; and three of its own: ``--backend``,
``--queue`` and ``--once``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from graphile_py.errors import EXIT_INCOMPATIBLE_SCHEMA, GraphileError, IncompatibleSchema

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run jobs until stopped with Ctrl-C or SIGTERM (twice to force): the Django tasks"
        " of the installed apps (and --tasks), on the database of a graphile-py backend."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from graphile_py.contrib.django.arguments import add_setting_arguments

        parser.add_argument(
            "--backend",
            metavar="ALIAS",
            help="The TASKS backend whose database and schema to serve (default: 'default'"
            " if it is a GraphileBackend, else the only GraphileBackend).",
        )
        parser.add_argument(
            "--queue",
            action="append",
            dest="django_queues",
            metavar="NAME",
            help="Run only tasks enqueued on this Django queue (repeat for several; the"
            " backend's QUEUES must list its queues). Default: every queue.",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run every job that is ready now, then exit."
        )
        add_setting_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = self._run(options)
        except IncompatibleSchema as exc:
            self.stderr.write(f"Error: {exc}")
            sys.exit(EXIT_INCOMPATIBLE_SCHEMA)
        except GraphileError as exc:
            raise CommandError(str(exc)) from exc
        if status:
            sys.exit(status)

    def _run(self, options: dict[str, Any]) -> int:
        from graphile_py.contrib.django.arguments import given_settings
        from graphile_py.contrib.django.config import conninfo_for
        from graphile_py.contrib.django.worker import django_task_map
        from graphile_py.logs import configure_logging
        from graphile_py.runner import run_worker
        from graphile_py.settings import load_settings
        from graphile_py.tasks import load_task_map

        backend = _choose_backend(options.get("backend"))
        config = backend.config
        settings = load_settings(given_settings(options))
        configure_logging(getattr(logging, settings.log_level.upper()), settings.log_format)
        tasks: dict[str, Any] = dict(django_task_map())
        if settings.tasks:
            for identifier, function in load_task_map(settings.tasks).items():
                if identifier in tasks:
                    raise CommandError(
                        f"the task {identifier!r} is both a Django task and in --tasks"
                        f" {settings.tasks!r}: rename one of them"
                    )
                tasks[identifier] = function
        if not tasks:
            raise CommandError(
                "no tasks to run: no installed app's tasks module (nor the backends'"
                " OPTIONS['TASK_MODULES']) defines a Django task for a GraphileBackend,"
                " and no --tasks was given"
            )
        worker_options = dataclasses.replace(
            settings.worker,
            schema=config.schema,
            side_schema=config.side_schema,
            forbidden_flags=_forbidden_flags(
                backend, options.get("django_queues"), settings.worker.forbidden_flags
            ),
        )
        once = bool(options.get("once"))
        crontab = []
        if not once:
            from graphile_py.cron.scheduler import load_crontab_file

            if settings.crontab is not None and not Path(settings.crontab).is_file():
                raise CommandError(f"crontab file {settings.crontab!r} does not exist")
            crontab = load_crontab_file(settings.crontab or "crontab")
        return run_worker(
            tasks,
            conninfo=conninfo_for(config.database),
            options=worker_options,
            once=once,
            crontab=crontab,
            metrics_port=settings.metrics_port,
            metrics_host=settings.metrics_host,
            metrics_interval=settings.metrics_interval,
        )


def _choose_backend(alias: str | None) -> Any:
    from graphile_py.contrib.django.worker import graphile_backends

    backends = graphile_backends()
    if not backends:
        raise CommandError(
            "no TASKS backend is a graphile_py.contrib.django.GraphileBackend: add one to"
            " settings.TASKS"
        )
    if alias is None:
        if "default" in backends:
            return backends["default"]
        if len(backends) == 1:
            return next(iter(backends.values()))
        raise CommandError(
            f"several GraphileBackends ({sorted(backends)}) and none is 'default': choose"
            " one with --backend"
        )
    if alias not in backends:
        raise CommandError(f"TASKS has no GraphileBackend {alias!r}; they are {sorted(backends)}")
    return backends[alias]


def _forbidden_flags(backend: Any, queues: list[str] | None, given: Any) -> Any:
    """The flags of every other Django queue, added to ``--forbidden-flag``'s."""
    from graphile_py.contrib.django.backend import queue_flag

    if not queues:
        return given
    if not backend.queues:
        raise CommandError(
            f"--queue needs TASKS[{backend.alias!r}]['QUEUES'] to list the backend's queues"
            " (a worker runs one queue by skipping the others' jobs)"
        )
    unknown = sorted(set(queues) - backend.queues)
    if unknown:
        raise CommandError(
            f"--queue {', '.join(unknown)}: not in TASKS[{backend.alias!r}]['QUEUES']"
            f" {sorted(backend.queues)}"
        )
    if callable(given):
        raise CommandError("--queue cannot be combined with a callable forbidden_flags")
    others = sorted(queue_flag(name) for name in backend.queues - set(queues))
    return [*(given or []), *others]
