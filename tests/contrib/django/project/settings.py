"""A small Django project that uses graphile-py as its tasks backend (the tests' project).

The database comes from the environment: ``GRAPHILE_PY_DJANGO_DSN`` (a libpq connection
string; the tests point it, or the settings, at a database of their own).
"""

from __future__ import annotations

import os

import django
from psycopg.conninfo import conninfo_to_dict

_DSN = conninfo_to_dict(
    os.environ.get("GRAPHILE_PY_DJANGO_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
)

SECRET_KEY = "graphile-py tests, not a secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Paris"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.contrib.django.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    # Django 5.2 runs the tasks framework from the django-tasks backport, an app itself.
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
    "graphile_py.contrib.django",
    "tests.contrib.django.project.shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _DSN.get("dbname", "postgres"),
        "USER": _DSN.get("user", "postgres"),
        "PASSWORD": _DSN.get("password", ""),
        "HOST": _DSN.get("host", "127.0.0.1"),
        "PORT": _DSN.get("port", "5432"),
        # Each request is one transaction: a view that raises leaves nothing behind.
        "ATOMIC_REQUESTS": True,
    }
}
TASKS = {
    "default": {
        "BACKEND": "graphile_py.contrib.django.GraphileBackend",
        "QUEUES": ["default", "emails", "ledger"],
        "OPTIONS": {
            "SCHEMA": os.environ.get("GRAPHILE_PY_TEST_SCHEMA", "graphile_worker"),
            # Ledger entries are written one at a time; the other queues run in parallel.
            "SERIAL_QUEUES": {"ledger": "shop-ledger"},
            "TASK_MODULES": ["tests.contrib.django.project.shop.more_tasks"],
        },
    },
    # The same queue, for tasks that get one attempt only.
    "once": {
        "BACKEND": "graphile_py.contrib.django.GraphileBackend",
        "OPTIONS": {
            "SCHEMA": os.environ.get("GRAPHILE_PY_TEST_SCHEMA", "graphile_worker"),
            "MAX_ATTEMPTS": 1,
        },
    },
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
