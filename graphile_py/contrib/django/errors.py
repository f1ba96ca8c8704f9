"""The errors of the Django integration, in graphile-py's hierarchy and Django's at once."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from graphile_py.errors import ConfigurationError, GraphileError

__all__ = ["BackendMisconfigured", "JobFailed", "TaskFailed"]


class BackendMisconfigured(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]
    """A ``TASKS`` entry for :class:`GraphileBackend` that cannot work as written.

    Both a :class:`graphile_py.ConfigurationError` and Django's ``ImproperlyConfigured``,
    so either kind of handler catches it.
    """


class TaskFailed(GraphileError):
    """A Django task raised: what the worker records as the job's error.

    Its text starts with the exception's class path (``myapp.tasks.Boom: message``) and
    goes on with the traceback, so that ``get_result`` can give Django's ``TaskError``
    (``exception_class_path``, ``traceback``) back from the job's ``last_error`` or history.
    The task's exception is the ``__cause__``.
    """


class JobFailed(GraphileError):
    """The class ``get_result`` names for an error that names no Python exception.

    A job can fail without a Django task raising: a Node worker ran it, a forced shutdown
    or a lost worker ended the attempt. ``TaskError.traceback`` then holds the error text
    as it was recorded.
    """
