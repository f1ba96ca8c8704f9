"""Every command's --help: it runs, every option says what it does, in plain words.

Click shows an option without a metavar as its type (``TEXT``, ``INTEGER RANGE``, a
strptime pattern): these tests ask for a word that tells the user what to type, and
for a help text on every option. Each top-level command must be in docs/cli.md's table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from graphile_py.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _commands(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(main, ()))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "graphile-py" for p in COMMANDS])
def test_help_runs_and_every_option_is_explained(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = _command(path)
    context = click.Context(command, info_name=" ".join(("graphile-py", *path)))
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        record = param.get_help_record(context)
        assert record is not None
        flags, text = record
        assert param.help, f"{' '.join(path)} {flags}: no help text"
        assert not re.search(r"\b(TEXT|INTEGER|FLOAT)\b|%[A-Za-z]", flags), (
            f"{' '.join(path)} {flags}: give it a metavar that says what to type"
        )
        assert text in result.output.replace("\n", " ") or flags in result.output


def test_the_top_level_help_says_how_to_start() -> None:
    output = CliRunner().invoke(main, ["--help"]).output
    assert "graphile-py migrate -c postgresql://" in output
    assert "graphile-py worker --tasks myapp.tasks:registry" in output
    worker = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "Example:" in worker
    assert "[this flag turns it off; env: GRAPHILE_PY_PREPARED_STATEMENTS]" in " ".join(
        worker.split()
    )


def test_every_command_is_in_the_cli_docs_table() -> None:
    table = (ROOT / "docs" / "cli.md").read_text().split("## `graphile-py worker`")[0]
    missing = [name for name in main.commands if f"`{name}" not in table]
    assert missing == []
