"""The operator API: :class:`WorkerUtils` (graphile-worker's helpers) and :class:`Inspector`
(the queue as operators see it), shared by the command line and the dashboard."""
