"""``graphile-py dashboard``: serve the web dashboard and its JSON API with uvicorn.

FastAPI and uvicorn come with the optional ``dashboard`` extra; they are imported when
the command runs, so the rest of the command line works without them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from graphile_py.admin.inspector import Inspector
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.cli.common import connection_options, database, fail, failures, settings_from
from graphile_py.cli.group import main

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "dashboard"]

logger = logging.getLogger("graphile_py.dashboard")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787

MISSING_EXTRA = (
    "the dashboard needs the optional 'dashboard' extra (FastAPI and uvicorn); install it"
    " from a checkout with: pip install -e '.[dashboard]' (once released: pip install"
    " 'graphile-py[dashboard]')"
)


@main.command()
@connection_options
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    metavar="ADDRESS",
    help="Address to listen on (0.0.0.0: every interface, read-only unless --allow-actions).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    metavar="PORT",
    help="Port to listen on.",
)
@click.option(
    "--allow-actions/--read-only",
    default=None,
    help="Allow retry, reschedule, remove and enqueue [default: allowed only on loopback].",
)
@click.option(
    "--token",
    envvar="GRAPHILE_PY_DASHBOARD_TOKEN",
    metavar="TOKEN",
    help="Require 'Authorization: Bearer TOKEN' for the API [env: GRAPHILE_PY_DASHBOARD_TOKEN].",
)
@click.option(
    "--basic-auth",
    envvar="GRAPHILE_PY_DASHBOARD_BASIC_AUTH",
    metavar="USER:PASSWORD",
    help="Require HTTP basic auth for everything [env: GRAPHILE_PY_DASHBOARD_BASIC_AUTH].",
)
@click.option(
    "--crontab",
    "crontab_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A crontab, to show when each cron item next runs.",
)
@click.option(
    "--tasks",
    "tasks_spec",
    metavar="MODULE:ATTR",
    default=None,
    help="The task registry (as for worker), to show the JSON schema of typed payloads.",
)
@click.option(
    "--sample-interval",
    type=click.FloatRange(0.5, 300),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the throughput chart's sampler reads the job counts.",
)
@click.pass_context
def dashboard(
    ctx: click.Context,
    /,
    *,
    config_file: Path | None,
    host: str,
    port: int,
    allow_actions: bool | None,
    token: str | None,
    basic_auth: str | None,
    crontab_file: Path | None,
    tasks_spec: str | None,
    sample_interval: float,
    **connection: Any,
) -> None:
    """Serve the web dashboard and its JSON API (default http://127.0.0.1:8787).

    Bound to a loopback address, it may retry, reschedule, remove and add jobs; bound to
    any other address it is read-only unless --allow-actions is given. Protect it with
    --token or --basic-auth (better passed in the environment than on the command line).
    Stop it with Ctrl-C.
    """
    try:
        import uvicorn

        from graphile_py.extras.dashboard import LOOPBACK_HOSTS, create_app, is_loopback
    except ImportError as exc:
        fail(f"{MISSING_EXTRA} ({exc})")
    settings = settings_from(ctx, config_file, connection)
    loopback = is_loopback(host)
    actions = loopback if allow_actions is None else allow_actions
    if actions and not loopback and not (token or basic_auth):
        logger.warning(
            "actions are enabled on %s without --token or --basic-auth:"
            " anyone who can reach this port can change and delete jobs",
            host,
        )
    crontab = crontab_file.read_text() if crontab_file is not None else None
    schemas = _payload_schemas(tasks_spec) if tasks_spec else None
    # No migration: a dashboard must not upgrade a shared schema (its actions are the
    # operators' own); a missing or old one is reported as the read-only commands do.
    with (
        failures(),
        database(settings) as conninfo,
        WorkerUtils(
            conninfo,
            schema=settings.worker.schema,
            side_schema=settings.worker.side_schema,
            max_pool_size=8,
            run_migrations=False,
            prepared_statements=settings.worker.prepared_statements,
        ) as utils,
    ):
        inspector = Inspector(utils)
        inspector.check_schema()
        app = create_app(
            inspector,
            allow_actions=actions,
            token=token,
            basic_auth=basic_auth,
            allowed_hosts=LOOPBACK_HOSTS if loopback else None,
            crontab=crontab,
            sample_interval=sample_interval,
            payload_schemas=schemas,
        )
        # Fail now, with the database's words, if the sampler cannot read the counts.
        app.state.dashboard.sampler.sample_once()
        shown = f"[{host}]" if ":" in host else host
        mode = "actions allowed" if actions else "read-only"
        logger.info("graphile-py dashboard on http://%s:%d/ (%s)", shown, port, mode)
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=settings.log_level,
            # With JSON logs, uvicorn's lines go to the same JSON handler as ours.
            log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
            server_header=False,
        )


def _payload_schemas(spec: str) -> dict[str, dict[str, Any]]:
    """The typed tasks' payload schemas of the registry ``spec`` names (exits if it fails)."""
    from graphile_py.errors import TaskLoadError
    from graphile_py.tasks import TaskRegistry, load_task_map

    try:
        tasks = load_task_map(spec)
    except TaskLoadError as exc:
        fail(str(exc))
    if not isinstance(tasks, TaskRegistry):
        return {}  # a plain dict of functions has no typed tasks
    return tasks.payload_schemas()
