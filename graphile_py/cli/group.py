"""The ``graphile-py`` command: a thin shell over settings, migrate and the runner.

Exit statuses: 0 success; 1 a configuration, task-loading or database error (the
message says what to change); 2 a malformed command line (click's usage errors); 57 the
database schema is newer than this worker supports.
"""

from __future__ import annotations

import atexit
import gc
import importlib

import click

from graphile_py.cli.common import GROUP_SETTINGS, setting_options

__all__ = ["COMMAND_MODULES", "main"]

#: The modules that register each command (with ``@main.command``), imported when the
#: command runs: `worker --once` starts in well under half the time without the
#: inspector, the dashboard and pydantic that the admin commands load. ``jobs`` is
#: defined in ops.py, and history.py adds its ``history`` and ``replay``.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "add-job": ("graphile_py.cli.admin",),
    "cleanup": ("graphile_py.cli.admin",),
    "cron": ("graphile_py.cli.ops",),
    "dashboard": ("graphile_py.cli.dashboard",),
    "jobs": ("graphile_py.cli.ops", "graphile_py.cli.history"),
    "migrate": ("graphile_py.cli.run",),
    "queues": ("graphile_py.cli.ops",),
    "status": ("graphile_py.cli.ops",),
    "task-index": ("graphile_py.cli.indexes",),
    "unlock": ("graphile_py.cli.admin",),
    "worker": ("graphile_py.cli.run",),
    "workers": ("graphile_py.cli.workers",),
}


class _LazyGroup(click.Group):
    """A group whose commands load from :data:`COMMAND_MODULES` when first looked up.

    ``--help`` and "did you mean" list every command, so they load them all, as does
    reading :attr:`commands` (for code that walks the command tree).
    """

    _registered: dict[str, click.Command]
    _all_loaded = False

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        """Every command, loaded."""
        if not self._all_loaded:
            self._all_loaded = True  # first: loading registers commands, which reads this
            for modules in COMMAND_MODULES.values():
                _import(modules)
        return self._registered

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._registered = value

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # click registers through self.commands, which must not load every module here.
        all_loaded, self._all_loaded = self._all_loaded, True
        try:
            super().add_command(cmd, name)
        finally:
            self._all_loaded = all_loaded

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # Every time: `jobs` may be registered by ops.py before history.py completes it.
        _import(COMMAND_MODULES.get(cmd_name, ()))
        return self._registered.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self._registered})


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="graphile-py")
@setting_options(*GROUP_SETTINGS)
@click.pass_context
def main(ctx: click.Context, /, **given: str | None) -> None:
    """graphile-py: PostgreSQL job queue, compatible with Node graphile-worker 0.18.

    \b
    Getting started (each command takes -c URL, or reads DATABASE_URL):
      graphile-py migrate -c postgresql://localhost/app
      graphile-py add-job send_email -p '{"to": "ada@example.com"}'
      graphile-py worker --tasks myapp.tasks:registry --jobs 4
      graphile-py status

    Workers also migrate when they start. Every flag can also be set in the
    environment or in graphile_py.toml: see COMMAND --help, and docs/cli.md.
    """
    ctx.obj = given  # read by settings_from, under the commands' own flags
    _skip_final_collection()


def _skip_final_collection() -> None:
    # The interpreter's last garbage collection walks every object (psycopg, pydantic,
    # ...) and took ~100 ms at exit, longer than a `worker --once` on an empty queue;
    # it frees nothing the operating system would not. atexit handlers run last-in
    # first-out, so this one, registered first, runs after any that tasks register.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
