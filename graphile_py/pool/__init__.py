"""The worker pool: threads that claim jobs, run tasks and record what happened.

:class:`WorkerPool` is the engine; :class:`WorkerOptions` declares how it behaves.
"""

from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.pool import WorkerPool

__all__ = ["WorkerOptions", "WorkerPool"]
