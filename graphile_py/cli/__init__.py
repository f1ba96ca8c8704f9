"""The ``graphile-py`` command line: a thin shell over the library.

``group.py`` holds the top-level command; ``run.py`` the commands that run things
(``migrate``, ``worker``); ``admin.py`` those that inspect and change jobs;
``dashboard.py`` the web dashboard.
"""

from graphile_py.cli import admin, dashboard, run  # noqa: F401 - importing registers the commands
from graphile_py.cli.group import main

__all__ = ["main"]
