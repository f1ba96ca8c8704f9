-- Migration 20: register only task identifiers and queue names that are not
-- there yet. INSERT ... ON CONFLICT DO NOTHING draws an identity value even
-- when it ends up inserting nothing; skipping known names first stops ids
-- being used up. ON CONFLICT still covers concurrent inserts.

CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
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
    SELECT add_job.identifier
     WHERE NOT EXISTS (
               SELECT 1
                 FROM :GRAPHILE_WORKER_SCHEMA._private_tasks AS known
                WHERE known.identifier = add_job.identifier
           )
    ON CONFLICT DO NOTHING;

    IF add_job.queue_name IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_job_queues (queue_name)
        SELECT add_job.queue_name
         WHERE NOT EXISTS (
                   SELECT 1
                     FROM :GRAPHILE_WORKER_SCHEMA._private_job_queues AS known
                    WHERE known.queue_name = add_job.queue_name
               )
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

    -- Only a genuinely new row (revision 0) is news for the workers.
    IF result_row.revision = 0 THEN
        PERFORM pg_notify('jobs:insert', '{"r":' || random()::text || ',"count":1}');
    END IF;

    RETURN result_row;
END;
$body$;

CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_jobs(
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
     WHERE NOT EXISTS (
               SELECT 1
                 FROM :GRAPHILE_WORKER_SCHEMA._private_tasks AS known
                WHERE known.identifier = s.identifier
           )
    ON CONFLICT DO NOTHING;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA._private_job_queues (queue_name)
    SELECT DISTINCT s.queue_name
      FROM unnest(specs) AS s
     WHERE s.queue_name IS NOT NULL
       AND NOT EXISTS (
               SELECT 1
                 FROM :GRAPHILE_WORKER_SCHEMA._private_job_queues AS known
                WHERE known.queue_name = s.queue_name
           )
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

    -- Announce the specs before inserting. The count is an upper bound: some
    -- specs may only update existing rows. "r" makes every payload distinct,
    -- so PostgreSQL does not fold notifications from one transaction together.
    PERFORM pg_notify(
        'jobs:insert',
        '{"r":' || random()::text || ',"count":' || array_length(specs, 1)::text || '}'
    );

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
