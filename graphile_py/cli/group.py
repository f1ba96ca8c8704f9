"""The ``graphile-py`` command: a thin shell over settings, migrate and the runner.

Exit statuses: 0 success; 1 a configuration, task-loading or database error (the
message says what to change); 2 a malformed command line (click's usage errors); 57 the
database schema is newer than this worker supports.
"""

from __future__ import annotations

import atexit
import gc

import click

from graphile_py.cli.common import GROUP_SETTINGS, setting_options

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
