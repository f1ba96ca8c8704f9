"""``manage.py graphile_migrate``: install or upgrade the queue's schema."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from graphile_py.errors import GraphileError

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Install or upgrade graphile-worker's schema and graphile-py's side schema in the"
        " database of each graphile-py task backend (or of --backend), then exit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--backend",
            metavar="ALIAS",
            help="Only the TASKS backend with this alias (default: every GraphileBackend).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from graphile_py.contrib.django.migrate import migrate_backend
        from graphile_py.contrib.django.worker import graphile_backends

        backends = graphile_backends()
        if not backends:
            raise CommandError(
                "no TASKS backend is a graphile_py.contrib.django.GraphileBackend: add one"
                " to settings.TASKS"
            )
        alias = options.get("backend")
        if alias is not None:
            if alias not in backends:
                raise CommandError(
                    f"TASKS has no GraphileBackend {alias!r}; they are {sorted(backends)}"
                )
            backends = {alias: backends[alias]}
        done: set[tuple[str, str, str | None]] = set()
        for backend in backends.values():
            config = backend.config
            where = (config.database, config.schema, config.side_schema)
            if where in done:
                continue
            done.add(where)
            try:
                report = migrate_backend(backend)
            except GraphileError as exc:
                raise CommandError(str(exc)) from exc
            applied = ", ".join(map(str, report.applied)) or "none needed"
            side_applied = ", ".join(map(str, report.side_applied)) or "none needed"
            self.stdout.write(
                f"Schema {config.schema!r} in DATABASES[{config.database!r}] is up to date"
                f" (migrations applied: {applied}); side schema {report.side_schema!r}"
                f" (migrations applied: {side_applied})."
            )
