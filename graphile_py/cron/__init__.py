"""Recurring jobs: graphile-worker's crontab format, schedule matching and the scheduler.

``schedule`` matches UTC minutes against the five time fields; ``js`` holds the
JavaScript rules a crontab inherits from Node; ``json5_errors`` parses payloads with npm's
error messages; ``crontab`` reads the text format into cron items; only ``scheduler``
talks to the database. This package loads on first use (see ``graphile_py.__init__``):
most processes never need it.
"""
