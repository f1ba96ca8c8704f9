--! breaking-change
-- Migration 13: job_spec carries max_attempts and priority as smallint, like
-- the jobs table, and add_job / reschedule_jobs take smallint arguments.

ALTER TYPE :GRAPHILE_WORKER_SCHEMA.job_spec ALTER ATTRIBUTE max_attempts TYPE smallint;
ALTER TYPE :GRAPHILE_WORKER_SCHEMA.job_spec ALTER ATTRIBUTE priority TYPE smallint;

-- The argument types change, so these are dropped and created afresh.
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier text,
    payload json DEFAULT NULL::json,
    queue_name text DEFAULT NULL::text,
    run_at timestamptz DEFAULT NULL::timestamptz,
    max_attempts smallint DEFAULT NULL::smallint,
    job_key text DEFAULT NULL::text,
    priority smallint DEFAULT NULL::smallint,
    flags text[] DEFAULT NULL::text[],
    job_key_mode text DEFAULT 'replace'::text
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    result_row :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    IF add_job.job_key IS NULL
       OR add_job.job_key_mode IS NULL
       OR add_job.job_key_mode IN ('replace', 'preserve_run_at') THEN
        SELECT * INTO result_row
          FROM :GRAPHILE_WORKER_SCHEMA.add_jobs(
                   ARRAY[CAST(ROW(add_job.identifier, add_job.payload, add_job.queue_name,
                                  add_job.run_at, add_job.max_attempts, add_job.job_key,
                                  add_job.priority, add_job.flags)
                              AS :GRAPHILE_WORKER_SCHEMA.job_spec)],
                   add_job.job_key_mode = 'preserve_run_at')
         LIMIT 1;
        RETURN result_row;
    END IF;

    IF add_job.job_key_mode <> 'unsafe_dedupe' THEN
        RAISE EXCEPTION 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
            USING ERRCODE = 'GWBKM';
    END IF;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA.tasks (identifier)
    VALUES (add_job.identifier)
    ON CONFLICT DO NOTHING;

    IF add_job.queue_name IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA.job_queues (queue_name)
        VALUES (add_job.queue_name)
        ON CONFLICT DO NOTHING;
    END IF;

    -- On a key clash the existing row wins, running or not; bumping revision
    -- and updated_at makes the upsert return that row.
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
        (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    SELECT q.id,
           t.id,
           coalesce(add_job.payload, '{}'::json),
           coalesce(add_job.run_at, now()),
           coalesce(add_job.max_attempts, 25),
           add_job.job_key,
           coalesce(add_job.priority, 0),
           (SELECT jsonb_object_agg(f.name, true) FROM unnest(add_job.flags) AS f(name))
      FROM :GRAPHILE_WORKER_SCHEMA.tasks AS t
      LEFT JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q
        ON q.queue_name = add_job.queue_name
     WHERE t.identifier = add_job.identifier
    ON CONFLICT (key) DO UPDATE
        SET revision = j.revision + 1,
            updated_at = now()
    RETURNING * INTO result_row;

    RETURN result_row;
END;
$body$;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs;
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs(
    job_ids bigint[],
    run_at timestamptz DEFAULT NULL::timestamptz,
    priority smallint DEFAULT NULL::smallint,
    attempts smallint DEFAULT NULL::smallint,
    max_attempts smallint DEFAULT NULL::smallint
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET run_at       = coalesce(reschedule_jobs.run_at, j.run_at),
           priority     = coalesce(reschedule_jobs.priority, j.priority),
           attempts     = coalesce(reschedule_jobs.attempts, j.attempts),
           max_attempts = coalesce(reschedule_jobs.max_attempts, j.max_attempts),
           updated_at   = now()
     WHERE j.id = ANY (reschedule_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;
