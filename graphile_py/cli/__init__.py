"""The ``graphile-py`` command line: a thin shell over the library.

``group.py`` holds the top-level command; ``run.py`` the commands that run things
(``migrate``, ``worker``); ``admin.py`` ``add-job``, ``cleanup`` and ``unlock``;
``ops.py`` (with ``tables.py``) ``status``, ``jobs``, ``queues`` and ``cron``;
``history.py`` ``jobs history`` and ``jobs replay``; ``workers.py`` ``workers``;
``indexes.py`` ``task-index``;
``dashboard.py`` the web dashboard. Each command's
module is imported when that command runs (``group.COMMAND_MODULES``), so that a short
``worker --once`` loads only what it uses.
"""

from graphile_py.cli.group import main

__all__ = ["main"]
