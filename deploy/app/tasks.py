"""The example task map the image runs (GRAPHILE_PY_TASKS=tasks:tasks).

Replace this directory with your application's code: the image copies it to /app, its
working directory, which is on PYTHONPATH.
"""

from typing import Any

from graphile_py import TaskRegistry

tasks = TaskRegistry()


@tasks.task
def hello(payload: dict[str, Any], helpers: Any) -> None:
    """Log a greeting: `graphile-py add-job hello '{"name": "you"}'` to try it."""
    # helpers.logger: the worker's logger, tagged with the job (JSON in the image).
    helpers.logger.info("Hello, %s", payload.get("name", "world"))
