"""The command line loads each command's module only when that command runs.

`graphile-py worker --once` on an empty queue is measured against Node's CLI (bench/):
these tests keep the admin commands, the inspector and cron off the worker command's
path, pydantic (loaded only when settings are read) off its help, and the table of
command modules true to what the modules register.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return done.stdout


def test_the_table_names_every_command_and_its_module() -> None:
    code = (
        "import importlib, json, pkgutil\n"
        "import graphile_py.cli as cli\n"
        "from graphile_py.cli.group import COMMAND_MODULES, main\n"
        "for info in pkgutil.iter_modules(cli.__path__):\n"
        "    importlib.import_module('graphile_py.cli.' + info.name)\n"
        "print(json.dumps({name: [c.callback.__module__, list(COMMAND_MODULES.get(name, ()))]"
        " for name, c in main.commands.items()}))\n"
    )
    found = json.loads(_run(code))
    from graphile_py.cli.group import COMMAND_MODULES

    assert set(found) == set(COMMAND_MODULES)
    for name, (module, listed) in found.items():
        assert module in listed, (name, module, listed)


def test_the_worker_command_loads_no_admin_command_and_its_help_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from graphile_py.cli import main\n"
        "result = CliRunner().invoke(main, ['worker', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(_run(code).split())
    unwanted = {
        "pydantic",
        "pydantic_settings",
        "graphile_py.admin",
        "graphile_py.cli.admin",
        "graphile_py.cli.dashboard",
        "graphile_py.cli.ops",
        "graphile_py.cron",
    }
    assert loaded & unwanted == set()
    assert "graphile_py.cli.run" in loaded


def test_the_top_level_help_lists_every_command() -> None:
    from click.testing import CliRunner

    from graphile_py.cli.group import COMMAND_MODULES, main

    output = CliRunner().invoke(main, ["--help"]).output
    commands = output.split("Commands:")[1].split()
    assert set(COMMAND_MODULES) <= set(commands)
    jobs = CliRunner().invoke(main, ["jobs", "--help"]).output
    assert "history" in jobs and "replay" in jobs  # history.py completes ops.py's group
