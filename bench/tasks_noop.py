"""The no-op task map for the graphile-py CLI (start+stop, and the CLI drain rows).

bench.py runs ``graphile-py worker --tasks tasks_noop:tasks`` from this directory. The
task records the job id in memory (no I/O); with ``BENCH_IDS_FILE`` set, the ids are
written there when the process exits, for the exactly-once check (cli_drain.py).
"""

import atexit
import os
from array import array

from graphile_py import TaskRegistry

tasks = TaskRegistry()
_ran = array("q")


@tasks.task
def noop(payload: object, helpers: object) -> None:
    """Record the job's id."""
    _ran.append(helpers.job.id)  # type: ignore[attr-defined]


def _dump() -> None:
    path = os.environ.get("BENCH_IDS_FILE")
    if path:
        with open(path, "w", encoding="ascii") as handle:
            handle.write("\n".join(map(str, _ran)))


atexit.register(_dump)
