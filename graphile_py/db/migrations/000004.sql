-- Migration 4: add_job gains a priority, every optional argument defaults to
-- NULL (the real defaults are applied inside), inputs are sanity-checked, and
-- three bulk admin functions appear.

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(text, json, text, timestamptz, int, text);

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier   text,
    payload      json        = NULL,
    queue_name   text        = NULL,
    run_at       timestamptz = NULL,
    max_attempts int         = NULL,
    job_key      text        = NULL,
    priority     int         = NULL
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
AS $body$
DECLARE
    result_row :GRAPHILE_WORKER_SCHEMA.jobs;
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

    IF job_key IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
            (task_identifier, payload, queue_name, run_at, max_attempts, key, priority)
        VALUES (
            add_job.identifier,
            coalesce(add_job.payload, '{}'::json),
            add_job.queue_name,
            coalesce(add_job.run_at, now()),
            coalesce(add_job.max_attempts, 25),
            add_job.job_key,
            coalesce(add_job.priority, 0)
        )
        ON CONFLICT (key) DO UPDATE
            SET task_identifier = excluded.task_identifier,
                payload         = excluded.payload,
                queue_name      = excluded.queue_name,
                max_attempts    = excluded.max_attempts,
                run_at          = excluded.run_at,
                priority        = excluded.priority,
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
        (task_identifier, payload, queue_name, run_at, max_attempts, key, priority)
    VALUES (
        add_job.identifier,
        coalesce(add_job.payload, '{}'::json),
        add_job.queue_name,
        coalesce(add_job.run_at, now()),
        coalesce(add_job.max_attempts, 25),
        add_job.job_key,
        coalesce(add_job.priority, 0)
    )
    RETURNING * INTO result_row;

    RETURN result_row;
END;
$body$;

-- The admin functions below skip jobs that a live worker holds (a lock older
-- than four hours is considered abandoned).

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_jobs(job_ids bigint[])
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
VOLATILE
AS $body$
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.id = ANY ($1)
       AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.permanently_fail_jobs(
    job_ids       bigint[],
    error_message text = NULL
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
VOLATILE
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET last_error = coalesce($2, 'Manually marked as failed'),
           attempts = j.max_attempts
     WHERE j.id = ANY ($1)
       AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs(
    job_ids      bigint[],
    run_at       timestamptz = NULL,
    priority     int         = NULL,
    attempts     int         = NULL,
    max_attempts int         = NULL
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
VOLATILE
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET run_at       = coalesce($2, j.run_at),
           priority     = coalesce($3, j.priority),
           attempts     = coalesce($4, j.attempts),
           max_attempts = coalesce($5, j.max_attempts)
     WHERE j.id = ANY ($1)
       AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;
