"""A web dashboard and JSON API for the job queue (the optional ``dashboard`` extra).

Run it with ``graphile-py dashboard``, or serve :func:`create_app` with any ASGI server::

    from graphile_py import WorkerUtils
    from graphile_py.extras.dashboard import create_app

    utils = WorkerUtils(DATABASE_URL)
    app = create_app(utils, allow_actions=True, token="s3cret")

See docs/dashboard.md for the security model and the API.
"""

from graphile_py.extras.dashboard.app import LOOPBACK_HOSTS, create_app, is_loopback
from graphile_py.extras.dashboard.sampler import Sample, Sampler

__all__ = ["LOOPBACK_HOSTS", "Sample", "Sampler", "create_app", "is_loopback"]
