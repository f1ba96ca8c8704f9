"""Django's tasks framework, wherever this Django keeps it.

Django 6 ships it as ``django.tasks``; on Django 5.2 LTS it is the ``django-tasks``
backport, ``django_tasks``, with the same classes (and ``InvalidTaskError`` for Django's
``InvalidTask``). Everything here is loaded by name and typed ``Any``: Django ships no
type information, and the two spellings must look the same to the rest of this package.
"""

from __future__ import annotations

import importlib
from typing import Any

import django

__all__ = [
    "DEFAULT_QUEUE_NAME",
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

# Django 6 has the framework built in; before it, the backport is the one a project uses
# (with both installed on Django 6, TASKS is read by django.tasks, so that one is ours).
FRAMEWORK = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"


def _load(module: str) -> Any:
    try:
        return importlib.import_module(f"{FRAMEWORK}{module}")
    except ImportError as exc:  # only the backport can be missing
        raise ImportError(
            "graphile_py.contrib.django needs Django's tasks framework: Django"
            f" {django.__version__} has none built in, so install the backport"
            " (pip install 'graphile-py[django]' brings django-tasks) or upgrade to Django 6"
        ) from exc


_tasks = _load("")
_base = _load(".base")
_backends = _load(".backends.base")
_exceptions = _load(".exceptions")
_signals = _load(".signals")

Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
DEFAULT_QUEUE_NAME: str = _base.DEFAULT_TASK_QUEUE_NAME
BaseTaskBackend: Any = _backends.BaseTaskBackend
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_backends: Any = _tasks.task_backends
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished

if FRAMEWORK == "django.tasks":
    normalize_json: Any = importlib.import_module("django.utils.json").normalize_json
else:
    normalize_json = _load(".utils").normalize_json
