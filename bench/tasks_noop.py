"""The no-op task map for the start+stop measurement of the graphile-py CLI.

bench.py runs ``graphile-py worker --once --tasks tasks_noop:tasks`` from this directory.
"""

from graphile_py import TaskRegistry

tasks = TaskRegistry()


@tasks.task
def noop(payload: object, helpers: object) -> None:
    """Do nothing."""
