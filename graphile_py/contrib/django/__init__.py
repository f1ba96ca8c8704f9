"""graphile-py for Django: a backend for Django's tasks framework, and the commands to run it.

Add ``"graphile_py.contrib.django"`` to ``INSTALLED_APPS`` (for the management commands
``graphile_worker`` and ``graphile_migrate``, and to install the queue's schema on
``manage.py migrate``), and the backend to ``TASKS``::

    TASKS = {"default": {"BACKEND": "graphile_py.contrib.django.GraphileBackend"}}

Works with Django 6's ``django.tasks`` and, on Django 5.2, the ``django-tasks`` backport
(``pip install 'graphile-py[django]'``). See docs/django.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphile_py.contrib.django.backend import GraphileBackend
    from graphile_py.contrib.django.errors import BackendMisconfigured, JobFailed, TaskFailed
    from graphile_py.contrib.django.results import ReturnValueNotKept

__all__ = [
    "BackendMisconfigured",
    "GraphileBackend",
    "JobFailed",
    "ReturnValueNotKept",
    "TaskFailed",
]

_HOMES = {
    "GraphileBackend": "graphile_py.contrib.django.backend",
    "BackendMisconfigured": "graphile_py.contrib.django.errors",
    "JobFailed": "graphile_py.contrib.django.errors",
    "TaskFailed": "graphile_py.contrib.django.errors",
    "ReturnValueNotKept": "graphile_py.contrib.django.results",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use: Django imports this package to find its AppConfig before the
    # tasks framework may be imported.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
