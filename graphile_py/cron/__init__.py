"""Recurring jobs: graphile-worker's crontab format, schedule matching and the scheduler.

Parsing and matching are pure (no I/O); only :mod:`graphile_py.cron.scheduler` talks to
the database. This package loads on first use (see ``graphile_py.__init__``): most
processes never need it.
"""
