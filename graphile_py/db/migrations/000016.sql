--! breaking-change
-- Migration 16: the tables become private (_private_*), leaving the bare
-- names free for a public view. Renaming keeps every constraint, index and
-- sequence name as it was.

ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs RENAME TO _private_jobs;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.job_queues RENAME TO _private_job_queues;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.tasks RENAME TO _private_tasks;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.known_crontabs RENAME TO _private_known_crontabs;

-- Function bodies name the tables, so every function is dropped and created
-- again against the new names (this also resets their privileges, as Node's
-- migration does).

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier text,
    payload json DEFAULT NULL::json,
    queue_name text DEFAULT NULL::text,
    run_at timestamptz DEFAULT NULL::timestamptz,
    max_attempts integer DEFAULT NULL::integer,
    job_key text DEFAULT NULL::text,
    priority integer DEFAULT NULL::integer,
    flags text[] DEFAULT NULL::text[],
    job_key_mode text DEFAULT 'replace'::text
)
RETURNS :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    result_row :GRAPHILE_WORKER_SCHEMA._private_jobs;
BEGIN
    IF add_job.job_key IS NULL
       OR add_job.job_key_mode IS NULL
       OR add_job.job_key_mode IN ('replace', 'preserve_run_at') THEN
        SELECT * INTO result_row
          FROM :GRAPHILE_WORKER_SCHEMA.add_jobs(
                   ARRAY[CAST(ROW(add_job.identifier, add_job.payload, add_job.queue_name,
                                  add_job.run_at, add_job.max_attempts::smallint, add_job.job_key,
                                  add_job.priority::smallint, add_job.flags)
                              AS :GRAPHILE_WORKER_SCHEMA.job_spec)],
                   add_job.job_key_mode = 'preserve_run_at')
         LIMIT 1;
        RETURN result_row;
    END IF;

    IF add_job.job_key_mode <> 'unsafe_dedupe' THEN
        RAISE EXCEPTION 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
            USING ERRCODE = 'GWBKM';
    END IF;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_tasks (identifier)
    VALUES (add_job.identifier)
    ON CONFLICT DO NOTHING;

    IF add_job.queue_name IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_job_queues (queue_name)
        VALUES (add_job.queue_name)
        ON CONFLICT DO NOTHING;
    END IF;

    -- On a key clash the existing row wins, running or not; bumping revision
    -- and updated_at makes the upsert return that row.
    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
        (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    SELECT q.id,
           t.id,
           coalesce(add_job.payload, '{}'::json),
           coalesce(add_job.run_at, now()),
           coalesce(add_job.max_attempts::smallint, 25::smallint),
           add_job.job_key,
           coalesce(add_job.priority::smallint, 0::smallint),
           (SELECT jsonb_object_agg(f.name, true) FROM unnest(add_job.flags) AS f(name))
      FROM :GRAPHILE_WORKER_SCHEMA._private_tasks AS t
      LEFT JOIN :GRAPHILE_WORKER_SCHEMA._private_job_queues AS q
        ON q.queue_name = add_job.queue_name
     WHERE t.identifier = add_job.identifier
    ON CONFLICT (key) DO UPDATE
        SET revision = j.revision + 1,
            updated_at = now()
    RETURNING * INTO result_row;

    RETURN result_row;
END;
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_jobs;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_jobs(
    specs :GRAPHILE_WORKER_SCHEMA.job_spec[],
    job_key_preserve_run_at boolean DEFAULT false
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_tasks (identifier)
    SELECT DISTINCT s.identifier
      FROM unnest(specs) AS s
    ON CONFLICT DO NOTHING;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_job_queues (queue_name)
    SELECT DISTINCT s.queue_name
      FROM unnest(specs) AS s
     WHERE s.queue_name IS NOT NULL
    ON CONFLICT DO NOTHING;

    -- A job holding one of the keys that cannot be updated (it is running, or
    -- has used up its attempts) gives up the key and will never run again;
    -- the insert below then creates a new job for the key.
    UPDATE :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
       SET key = NULL,
           attempts = j.max_attempts,
           updated_at = now()
      FROM unnest(specs) AS s
     WHERE s.job_key IS NOT NULL
       AND j.key = s.job_key
       AND j.is_available IS NOT TRUE;

    RETURN QUERY
    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
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
      JOIN :GRAPHILE_WORKER_SCHEMA._private_tasks AS t
        ON t.identifier = s.identifier
      LEFT JOIN :GRAPHILE_WORKER_SCHEMA._private_job_queues AS q
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

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_jobs;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_jobs(job_ids bigint[])
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE sql
AS $body$
    DELETE FROM :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
     WHERE j.id = ANY (complete_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.force_unlock_workers;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.force_unlock_workers(worker_ids text[])
RETURNS void
LANGUAGE sql
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
       SET locked_at = NULL,
           locked_by = NULL
     WHERE j.locked_by = ANY (force_unlock_workers.worker_ids);

    UPDATE :GRAPHILE_WORKER_SCHEMA._private_job_queues AS q
       SET locked_at = NULL,
           locked_by = NULL
     WHERE q.locked_by = ANY (force_unlock_workers.worker_ids);
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.permanently_fail_jobs;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.permanently_fail_jobs(
    job_ids bigint[],
    error_message text DEFAULT NULL::text
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE sql
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
       SET last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
           attempts = j.max_attempts,
           updated_at = now()
     WHERE j.id = ANY (permanently_fail_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job(job_key text)
RETURNS :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE plpgsql
STRICT
AS $body$
DECLARE
    affected :GRAPHILE_WORKER_SCHEMA._private_jobs;
BEGIN
    DELETE FROM :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
     WHERE j.key = remove_job.job_key
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING * INTO affected;

    IF FOUND THEN
        RETURN affected;
    END IF;

    -- Still running: let it finish, but never retry it and free the key.
    UPDATE :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
       SET key = NULL,
           attempts = j.max_attempts,
           updated_at = now()
     WHERE j.key = remove_job.job_key
    RETURNING * INTO affected;

    RETURN affected;
END;
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs(
    job_ids bigint[],
    run_at timestamptz DEFAULT NULL::timestamptz,
    priority integer DEFAULT NULL::integer,
    attempts integer DEFAULT NULL::integer,
    max_attempts integer DEFAULT NULL::integer
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA._private_jobs
LANGUAGE sql
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA._private_jobs AS j
       SET run_at       = coalesce(reschedule_jobs.run_at, j.run_at),
           priority     = coalesce(reschedule_jobs.priority::smallint, j.priority),
           attempts     = coalesce(reschedule_jobs.attempts::smallint, j.attempts),
           max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, j.max_attempts),
           updated_at   = now()
     WHERE j.id = ANY (reschedule_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;
