-- Migration 5: a revision counter bumped whenever a keyed job is replaced, and
-- per-job flags (stored as a jsonb set) that workers can refuse to run.

ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ADD COLUMN revision int NOT NULL DEFAULT 0;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ADD COLUMN flags jsonb DEFAULT NULL;

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(text, json, text, timestamptz, int, text, int);

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier   text,
    payload      json        = NULL,
    queue_name   text        = NULL,
    run_at       timestamptz = NULL,
    max_attempts int         = NULL,
    job_key      text        = NULL,
    priority     int         = NULL,
    flags        text[]      = NULL
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
AS $body$
DECLARE
    result_row :GRAPHILE_WORKER_SCHEMA.jobs;
    flag_set   jsonb;
BEGIN
    IF length(identifier) > 128 THEN
        RAISE EXCEPTION 'Task identifier is too long (max length: 128).'
            USING ERRCODE = 'GWBID';
    END IF;
    IF queue_name IS NOT NULL AND length(queue_name) > 128 THEN
        RAISE EXCEPTION 'Job queue name is too long (max length: 128).'
            USING ERRCODE = 'GWBQN';
    END IF;
    IF job_key IS NOT NULL AND length(job_key) > 512 THEN
        RAISE EXCEPTION 'Job key is too long (max length: 512).'
            USING ERRCODE = 'GWBJK';
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'Job maximum attempts must be at least 1'
            USING ERRCODE = 'GWBMA';
    END IF;

    -- {"flag": true, ...}; NULL when there are no flags.
    SELECT jsonb_object_agg(f.name, true)
      INTO flag_set
      FROM unnest(add_job.flags) AS f(name);

    IF job_key IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
            (task_identifier, payload, queue_name, run_at, max_attempts, key, priority, flags)
        VALUES (
            add_job.identifier,
            coalesce(add_job.payload, '{}'::json),
            add_job.queue_name,
            coalesce(add_job.run_at, now()),
            coalesce(add_job.max_attempts, 25),
            add_job.job_key,
            coalesce(add_job.priority, 0),
            flag_set
        )
        ON CONFLICT (key) DO UPDATE
            SET task_identifier = excluded.task_identifier,
                payload         = excluded.payload,
                queue_name      = excluded.queue_name,
                max_attempts    = excluded.max_attempts,
                run_at          = excluded.run_at,
                priority        = excluded.priority,
                revision        = j.revision + 1,
                flags           = excluded.flags,
                attempts        = 0,
                last_error      = NULL
            WHERE j.locked_at IS NULL
        RETURNING * INTO result_row;

        IF FOUND THEN
            RETURN result_row;
        END IF;

        -- The holder of the key is locked (running): retire it.
        UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
           SET key = NULL,
               attempts = j.max_attempts
         WHERE j.key = add_job.job_key;
    END IF;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs
        (task_identifier, payload, queue_name, run_at, max_attempts, key, priority, flags)
    VALUES (
        add_job.identifier,
        coalesce(add_job.payload, '{}'::json),
        add_job.queue_name,
        coalesce(add_job.run_at, now()),
        coalesce(add_job.max_attempts, 25),
        add_job.job_key,
        coalesce(add_job.priority, 0),
        flag_set
    )
    RETURNING * INTO result_row;

    RETURN result_row;
END;
$body$;

-- get_job learns to skip jobs carrying any of the forbidden flags.
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(text, text[], interval);

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(
    worker_id        text,
    task_identifiers text[]   = NULL,
    job_expiry       interval = interval '4 hours',
    forbidden_flags  text[]   = NULL
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
AS $body$
DECLARE
    picked_id    bigint;
    picked_queue text;
    claimed      :GRAPHILE_WORKER_SCHEMA.jobs;
    started_at   timestamptz := now();
BEGIN
    IF worker_id IS NULL OR length(worker_id) < 10 THEN
        RAISE EXCEPTION 'invalid worker id';
    END IF;

    SELECT j.queue_name, j.id
      INTO picked_queue, picked_id
      FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE (j.locked_at IS NULL OR j.locked_at < started_at - job_expiry)
       AND (
            j.queue_name IS NULL
            OR EXISTS (
                SELECT 1
                  FROM :GRAPHILE_WORKER_SCHEMA.job_queues AS q
                 WHERE q.queue_name = j.queue_name
                   AND (q.locked_at IS NULL OR q.locked_at < started_at - job_expiry)
                   FOR UPDATE SKIP LOCKED
            )
       )
       AND j.run_at <= started_at
       AND j.attempts < j.max_attempts
       AND (task_identifiers IS NULL OR j.task_identifier = ANY (task_identifiers))
       AND (forbidden_flags IS NULL OR (j.flags ?| forbidden_flags) IS NOT TRUE)
     ORDER BY j.priority, j.run_at, j.id
     LIMIT 1
       FOR UPDATE SKIP LOCKED;

    IF picked_id IS NULL THEN
        RETURN NULL;
    END IF;

    IF picked_queue IS NOT NULL THEN
        UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
           SET locked_by = worker_id,
               locked_at = started_at
         WHERE q.queue_name = picked_queue;
    END IF;

    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET attempts  = j.attempts + 1,
           locked_by = worker_id,
           locked_at = started_at
     WHERE j.id = picked_id
    RETURNING * INTO claimed;

    RETURN claimed;
END;
$body$;
