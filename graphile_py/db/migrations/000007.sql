-- Migration 7: job_key_mode chooses what happens when a job with the same key
-- exists ('replace', 'preserve_run_at' or 'unsafe_dedupe'), and remove_job
-- retires running jobs instead of ignoring them.

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(text, json, text, timestamptz, int, text, int, text[]);

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier   text,
    payload      json        = NULL,
    queue_name   text        = NULL,
    run_at       timestamptz = NULL,
    max_attempts integer     = NULL,
    job_key      text        = NULL,
    priority     integer     = NULL,
    flags        text[]      = NULL,
    job_key_mode text        = 'replace'
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
        RAISE EXCEPTION 'Job maximum attempts must be at least 1.'
            USING ERRCODE = 'GWBMA';
    END IF;

    -- Without a key the mode is irrelevant, so it is not validated.
    IF job_key IS NOT NULL
       AND job_key_mode NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe') THEN
        RAISE EXCEPTION 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
            USING ERRCODE = 'GWBKM';
    END IF;

    SELECT jsonb_object_agg(f.name, true)
      INTO flag_set
      FROM unnest(add_job.flags) AS f(name);

    IF job_key IS NOT NULL
       AND (job_key_mode IS NULL OR job_key_mode IN ('replace', 'preserve_run_at')) THEN
        -- An idle job with this key is updated in place. A locked one has
        -- already started with stale inputs, so it is retired below and a new
        -- job is created to act on the new information.
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
                -- Only a job that has never been attempted keeps its slot.
                run_at          = CASE
                                      WHEN add_job.job_key_mode = 'preserve_run_at'
                                           AND j.attempts = 0
                                      THEN j.run_at
                                      ELSE excluded.run_at
                                  END,
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

        UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
           SET key = NULL,
               attempts = j.max_attempts
         WHERE j.key = add_job.job_key;

    ELSIF job_key IS NOT NULL AND job_key_mode = 'unsafe_dedupe' THEN
        -- Keep whatever job holds the key, even a running one. Only useful
        -- for deliberate de-duplication: an update that arrives after the
        -- existing job started may never be acted upon.
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
        -- A no-op update would return nothing; bumping revision returns the row.
        ON CONFLICT (key) DO UPDATE
            SET revision = j.revision + 1
        RETURNING * INTO result_row;

        RETURN result_row;
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

-- An idle job is deleted; a running one loses its key and will not be retried.
CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job(job_key text)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
STRICT
AS $body$
DECLARE
    affected :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.key = remove_job.job_key
       AND j.locked_at IS NULL
    RETURNING * INTO affected;

    IF FOUND THEN
        RETURN affected;
    END IF;

    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET attempts = j.max_attempts,
           key = NULL
     WHERE j.key = remove_job.job_key
    RETURNING * INTO affected;

    RETURN affected;
END;
$body$;
