"""The operator API, shared by the command line and the dashboard.

``worker_utils``: :class:`WorkerUtils`, graphile-worker's helpers and every action on jobs;
``inspector``: :class:`Inspector`, the read-only views of the queue (and the operators'
actions, which are WorkerUtils's); ``records``: what the Inspector returns; ``pools`` and
``history``: the worker registry and the job history in the side schema, and replay;
``views``: the JSON shapes of those records, printed by ``--json`` and answered by the
dashboard.
"""
