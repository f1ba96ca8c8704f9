"""The queue the docs' transcripts show, built in a database of the default schema.

docs/cli.md's examples show jobs 1 to 5 (one running in queue ``mail``, one ready
behind it, one retrying, one failed, one scheduled), a known cron identifier
``nightly_report``; docs/operations.md's unlock example a pool whose locks are hours
old. Every shell block runs against its own copy of this database.
"""

from __future__ import annotations

import psycopg

from graphile_py.db.migrate import migrate

LIVE_POOL = "pool-6f1c0a9e2b7d4c3a51"
STALE_POOL = "pool-3f1c0e9a7d2b4c6e81"

_SCENE = """
select graphile_worker.add_job('send_email', '{"to": "ada@example.com"}', queue_name => 'mail');
select graphile_worker.add_job('send_email', '{"to": "bob@example.com"}', queue_name => 'mail');
select graphile_worker.add_job('sync_crm', '{"account": 7}');
select graphile_worker.add_job('send_email', '{"to": "eve@example.com"}', max_attempts => 3);
select graphile_worker.add_job('nightly_report', '{}', run_at => now() + interval '9 hours');
select graphile_worker.add_job('resize_image', '{"path": "a.png"}', queue_name => 'images');
select graphile_worker.add_job('resize_image', '{"path": "b.png"}');
update graphile_worker._private_jobs
   set locked_by = %(live)s, locked_at = now() - interval '4 seconds', attempts = 1
 where id = 1;
update graphile_worker._private_job_queues
   set locked_by = %(live)s, locked_at = now() - interval '4 seconds'
 where queue_name = 'mail';
update graphile_worker._private_jobs
   set attempts = 1, last_error = 'HTTP 503 from crm.example.com',
       run_at = now() + interval '3 seconds'
 where id = 3;
update graphile_worker._private_jobs
   set attempts = 3, last_error = '550 mailbox unavailable'
 where id = 4;
update graphile_worker._private_jobs
   set locked_by = %(stale)s, locked_at = now() - interval '3.2 hours', attempts = 1
 where id in (6, 7);
update graphile_worker._private_job_queues
   set locked_by = %(stale)s, locked_at = now() - interval '3.2 hours'
 where queue_name = 'images';
insert into graphile_py.pools
  (id, hostname, pid, version, concurrency, task_identifiers, heartbeat_timeout, jobs_succeeded)
values (%(live)s, 'web-7', 4121, '0.1.0', 10, '{send_email}', '1 day', 18211);
insert into graphile_py.pools
  (id, hostname, pid, version, concurrency, task_identifiers, heartbeat_timeout,
   heartbeat_at, lost_at, lost_by, jobs_rescued)
values ('pool-1d0f6a2e9c4b7a8e55', 'web-9', 3988, '0.1.0', 10, '{send_email}', '20 seconds',
        now() - interval '6 minutes', now() - interval '5 minutes', %(live)s, 2);
insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution)
values ('nightly_report', now() - interval '3 days', now() - interval '1 day');
"""


def build_scene(dsn: str) -> None:
    """Migrate the default schemas (as ``graphile-py migrate`` would) and add the jobs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema="graphile_worker")
        with conn.transaction():
            for statement in filter(str.strip, _SCENE.split(";")):
                conn.execute(statement, {"live": LIVE_POOL, "stale": STALE_POOL})
