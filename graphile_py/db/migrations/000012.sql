-- Migration 12: adding a job by key whose existing and new payloads are both
-- JSON arrays concatenates them ("batch jobs"); otherwise unchanged.

CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_jobs(
    specs :GRAPHILE_WORKER_SCHEMA.job_spec[],
    job_key_preserve_run_at boolean DEFAULT false
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.tasks (identifier)
    SELECT DISTINCT s.identifier
      FROM unnest(specs) AS s
    ON CONFLICT DO NOTHING;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA.job_queues (queue_name)
    SELECT DISTINCT s.queue_name
      FROM unnest(specs) AS s
     WHERE s.queue_name IS NOT NULL
    ON CONFLICT DO NOTHING;

    -- A job holding one of the keys that cannot be updated (it is running, or
    -- has used up its attempts) gives up the key and will never run again;
    -- the insert below then creates a new job for the key.
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET key = NULL,
           attempts = j.max_attempts,
           updated_at = now()
      FROM unnest(specs) AS s
     WHERE s.job_key IS NOT NULL
       AND j.key = s.job_key
       AND j.is_available IS NOT TRUE;

    RETURN QUERY
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
        (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    SELECT q.id,
           t.id,
           coalesce(s.payload, '{}'::json),
           coalesce(s.run_at, now()),
           coalesce(s.max_attempts, 25),
           s.job_key,
           coalesce(s.priority, 0),
           (SELECT jsonb_object_agg(f.name, true) FROM unnest(s.flags) AS f(name))
      FROM unnest(specs) AS s
      JOIN :GRAPHILE_WORKER_SCHEMA.tasks AS t
        ON t.identifier = s.identifier
      LEFT JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q
        ON q.queue_name = s.queue_name
    ON CONFLICT (key) DO UPDATE
        SET job_queue_id = excluded.job_queue_id,
            task_id      = excluded.task_id,
            -- Two JSON arrays are a batch: append the new items to the old.
            payload      = CASE
                               WHEN json_typeof(j.payload) = 'array'
                                    AND json_typeof(excluded.payload) = 'array'
                               THEN (j.payload::jsonb || excluded.payload::jsonb)::json
                               ELSE excluded.payload
                           END,
            max_attempts = excluded.max_attempts,
            -- preserve_run_at only keeps the slot of a never-attempted job.
            run_at       = CASE
                               WHEN job_key_preserve_run_at IS TRUE AND j.attempts = 0
                               THEN j.run_at
                               ELSE excluded.run_at
                           END,
            priority     = excluded.priority,
            revision     = j.revision + 1,
            flags        = excluded.flags,
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        WHERE j.locked_at IS NULL
    RETURNING *;
END;
$body$;
