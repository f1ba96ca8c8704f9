"""The worker command's options, made from graphile-py's setting declarations.

``manage.py graphile_worker`` takes the options of ``graphile-py worker`` (``--jobs``,
``--history``, ``--task-timeout`` ...), each built here from its one declaration (see
:mod:`graphile_py.settings`), as argparse options: the names, help, choices and the
environment variables are those of the command line. Values are checked by
:func:`~graphile_py.settings.load_settings`, which also reads ``GRAPHILE_PY_*`` and
``graphile_py.toml``.

Left out: where to connect and which schema (``--connection``, ``--embedded``,
``--schema``, ``--side-schema``), which come from ``DATABASES`` and the backend's
``OPTIONS`` instead.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Mapping
from typing import Any, Literal

from graphile_py.settings import SETTINGS, KnownSetting

__all__ = ["DJANGO_DECIDES", "WORKER_COMMAND_SETTINGS", "add_setting_arguments", "given_settings"]

#: Settings the Django project decides (DATABASES, the backend's OPTIONS).
DJANGO_DECIDES = ("database_url", "embedded", "worker_schema", "side_schema")

#: Every setting the worker command takes, in the order of their declarations.
WORKER_COMMAND_SETTINGS = tuple(name for name in SETTINGS if name not in DJANGO_DECIDES)


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting of :data:`WORKER_COMMAND_SETTINGS`; unset ones are None."""
    group = parser.add_argument_group("graphile-py worker settings")
    for name in WORKER_COMMAND_SETTINGS:
        _add(group, SETTINGS[name])


def _add(group: argparse._ArgumentGroup, known: KnownSetting) -> None:
    spec, base = known.declared.spec, known.declared.base_type
    notes = ["env: " + " or ".join(known.env_names)]
    text = spec.help
    kind: dict[str, Any] = {}
    if base is bool:
        # As with the command line: the flag sets the opposite of the default.
        kind = {"action": "store_const", "const": not known.declared.default}
    elif typing.get_origin(base) is list:
        kind = {"action": "append", "metavar": spec.metavar}
        text += "; repeat the flag for several"
    elif typing.get_origin(base) is Literal:
        kind = {"choices": typing.get_args(base)}
    elif base is int:
        kind = {"type": int, "metavar": spec.metavar or "N"}
    elif base is float:
        kind = {"type": float, "metavar": spec.metavar or "SECONDS"}
    else:
        kind = {"metavar": spec.metavar}
    if known.default_text and base is not bool:
        notes.append(f"default: {known.default_text}")
    # argparse formats help with %: a literal one must be doubled.
    help_text = f"{text} [{'; '.join(notes)}].".replace("%", "%%")
    group.add_argument(*known.flags, dest=known.name, default=None, help=help_text, **kind)


def given_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given as options (by setting name), for ``load_settings``."""
    return {
        name: options[name] for name in WORKER_COMMAND_SETTINGS if options.get(name) is not None
    }
