"""Add a few example jobs, then run them with the worker.

Usage::

    python examples/enqueue.py --embedded         # the embedded PostgreSQL (extra 'embedded')
    python examples/enqueue.py postgresql://...   # a database of your own
    DATABASE_URL=postgresql://... python examples/enqueue.py

then ``graphile-py worker --tasks examples.tasks:registry`` (with the same ``--embedded``
or ``-c URL``) runs them. ``GRAPHILE_WORKER_SCHEMA`` is honoured, as by the worker.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

import psycopg

from graphile_py import WorkerUtils, add_job


def enqueue(conninfo: str, schema: str) -> None:
    # WorkerUtils owns a small connection pool and installs or upgrades the schema on
    # opening; each call commits at once. Handy in scripts and admin code.
    with WorkerUtils(conninfo, schema=schema) as utils:
        job = utils.add_job("hello", {"name": "graphile-py"})
        print(f"added job {job.id} ({job.task_identifier})")

    # In application code, add the job on the connection that does the work, inside the
    # same transaction: the job exists if and only if the transaction commits.
    with psycopg.connect(conninfo) as conn, conn.transaction():
        # ... your own writes here, e.g. INSERT INTO users ... RETURNING id
        job = add_job(
            conn, "user_signed_up", {"user_id": 42, "email": "ada@example.com"}, schema=schema
        )
        print(f"added job {job.id} ({job.task_identifier})")


def main(argv: list[str]) -> int:
    schema = os.environ.get("GRAPHILE_WORKER_SCHEMA") or "graphile_worker"
    with ExitStack() as stack:
        if argv == ["--embedded"]:
            from graphile_py.extras.embedded.server import EmbeddedPostgres

            # Starts (or reuses) the local server; it stops again when this block ends.
            conninfo = stack.enter_context(EmbeddedPostgres()).dsn
        elif len(argv) == 1 and not argv[0].startswith("-"):
            conninfo = argv[0]
        elif not argv and os.environ.get("DATABASE_URL"):
            conninfo = os.environ["DATABASE_URL"]
        else:
            print(__doc__, file=sys.stderr)
            return 2
        enqueue(conninfo, schema)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
