--! breaking-change
-- Migration 3: a job may have no queue at all; such jobs run in parallel and
-- never touch job_queues.

ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ALTER COLUMN queue_name DROP NOT NULL;

-- Same as before, except that a replaced job takes the new queue_name even
-- when that is NULL.
CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier   text,
    payload      json        = '{}',
    queue_name   text        = NULL,
    run_at       timestamptz = now(),
    max_attempts int         = 25,
    job_key      text        = NULL
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
AS $body$
DECLARE
    result_row :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    IF job_key IS NOT NULL THEN
        INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
            (task_identifier, payload, queue_name, run_at, max_attempts, key)
        VALUES
            (add_job.identifier, add_job.payload, add_job.queue_name,
             add_job.run_at, add_job.max_attempts, add_job.job_key)
        ON CONFLICT (key) DO UPDATE
            SET task_identifier = excluded.task_identifier,
                payload         = excluded.payload,
                queue_name      = excluded.queue_name,
                max_attempts    = excluded.max_attempts,
                run_at          = excluded.run_at,
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
        (task_identifier, payload, queue_name, run_at, max_attempts, key)
    VALUES
        (add_job.identifier, add_job.payload, add_job.queue_name,
         add_job.run_at, add_job.max_attempts, add_job.job_key)
    RETURNING * INTO result_row;

    RETURN result_row;
END;
$body$;

-- Jobs are now picked (and row-locked) directly; a queue, if any, must be free
-- and is locked with the job.
CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(
    worker_id        text,
    task_identifiers text[]   = NULL,
    job_expiry       interval = interval '4 hours'
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

CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.fail_job(
    worker_id text,
    job_id bigint,
    error_message text
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
STRICT
AS $body$
DECLARE
    failed :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET last_error = error_message,
           run_at = greatest(now(), j.run_at)
                    + (exp(least(j.attempts, 10))::text || ' seconds')::interval,
           locked_by = NULL,
           locked_at = NULL
     WHERE j.id = job_id
       AND j.locked_by = worker_id
    RETURNING * INTO failed;

    IF failed.queue_name IS NOT NULL THEN
        UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
           SET locked_by = NULL,
               locked_at = NULL
         WHERE q.queue_name = failed.queue_name
           AND q.locked_by = worker_id;
    END IF;

    RETURN failed;
END;
$body$;

CREATE OR REPLACE FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_job(worker_id text, job_id bigint)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    finished :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.id = job_id
    RETURNING * INTO finished;

    IF finished.queue_name IS NOT NULL THEN
        UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
           SET locked_by = NULL,
               locked_at = NULL
         WHERE q.queue_name = finished.queue_name
           AND q.locked_by = worker_id;
    END IF;

    RETURN finished;
END;
$body$;

-- Queue bookkeeping only applies to jobs that have a queue.
DROP TRIGGER _500_increase_job_queue_count ON :GRAPHILE_WORKER_SCHEMA.jobs;
DROP TRIGGER _500_decrease_job_queue_count ON :GRAPHILE_WORKER_SCHEMA.jobs;
DROP TRIGGER _500_increase_job_queue_count_update ON :GRAPHILE_WORKER_SCHEMA.jobs;
DROP TRIGGER _500_decrease_job_queue_count_update ON :GRAPHILE_WORKER_SCHEMA.jobs;

CREATE TRIGGER _500_increase_job_queue_count
    AFTER INSERT ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW
    WHEN (NEW.queue_name IS NOT NULL)
    EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count();
CREATE TRIGGER _500_decrease_job_queue_count
    AFTER DELETE ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW
    WHEN (OLD.queue_name IS NOT NULL)
    EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count();
CREATE TRIGGER _500_increase_job_queue_count_update
    AFTER UPDATE OF queue_name ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW
    WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND NEW.queue_name IS NOT NULL)
    EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count();
CREATE TRIGGER _500_decrease_job_queue_count_update
    AFTER UPDATE OF queue_name ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW
    WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND OLD.queue_name IS NOT NULL)
    EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count();
