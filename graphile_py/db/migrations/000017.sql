-- Migration 17: the public, stable way to look at jobs. It hides the payload
-- and the internal ids and resolves task and queue names. Columns may be
-- added in future but never removed or retyped.

CREATE VIEW :GRAPHILE_WORKER_SCHEMA.jobs AS
SELECT jobs.id,
       job_queues.queue_name,
       tasks.identifier AS task_identifier,
       jobs.priority,
       jobs.run_at,
       jobs.attempts,
       jobs.max_attempts,
       jobs.last_error,
       jobs.created_at,
       jobs.updated_at,
       jobs.key,
       jobs.locked_at,
       jobs.locked_by,
       jobs.revision,
       jobs.flags
  FROM :GRAPHILE_WORKER_SCHEMA._private_jobs AS jobs
  JOIN :GRAPHILE_WORKER_SCHEMA._private_tasks AS tasks
    ON tasks.id = jobs.task_id
  LEFT JOIN :GRAPHILE_WORKER_SCHEMA._private_job_queues AS job_queues
    ON job_queues.id = jobs.job_queue_id;
