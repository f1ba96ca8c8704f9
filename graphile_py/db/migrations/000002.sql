-- Migration 2: job keys, and locks recorded on the job itself as well as on
-- its queue.

ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs
    ADD COLUMN key text UNIQUE CHECK (length(key) > 0);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ADD COLUMN locked_at timestamptz;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ADD COLUMN locked_by text;

-- Jobs that are running right now inherit the lock of their queue.
UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
   SET locked_at = q.locked_at,
       locked_by = q.locked_by
  FROM :GRAPHILE_WORKER_SCHEMA.job_queues AS q
 WHERE q.queue_name = j.queue_name
   AND q.locked_at IS NOT NULL;

DROP FUNCTION IF EXISTS :GRAPHILE_WORKER_SCHEMA.add_job(text, json, text, timestamptz, int);

-- With a key, an idle job of that key is replaced in place (keeping its queue
-- unless a new one is given). A running one cannot be touched, so it loses the
-- key, will not be retried, and a fresh job takes the key.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
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
                queue_name      = coalesce(add_job.queue_name, j.queue_name),
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

-- Delete an idle job by key; running jobs are left alone.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job(job_key text)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
STRICT
VOLATILE
AS $body$
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.key = $1
       AND j.locked_at IS NULL
    RETURNING *;
$body$;

-- get_job now also stamps the lock onto the job row.
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

    SELECT q.queue_name, j.id
      INTO picked_queue, picked_id
      FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
      JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q USING (queue_name)
     WHERE (q.locked_at IS NULL OR q.locked_at < started_at - job_expiry)
       AND j.run_at <= started_at
       AND j.attempts < j.max_attempts
       AND (task_identifiers IS NULL OR j.task_identifier = ANY (task_identifiers))
     ORDER BY j.priority, j.run_at, j.id
     LIMIT 1
       FOR UPDATE OF q SKIP LOCKED;

    IF picked_queue IS NULL THEN
        RETURN NULL;
    END IF;

    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET locked_by = worker_id,
           locked_at = started_at
     WHERE q.queue_name = picked_queue;

    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET attempts  = j.attempts + 1,
           locked_by = worker_id,
           locked_at = started_at
     WHERE j.id = picked_id
    RETURNING * INTO claimed;

    RETURN claimed;
END;
$body$;

-- fail_job only acts for the worker holding the job, and unlocks it.
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

    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET locked_by = NULL,
           locked_at = NULL
     WHERE q.queue_name = failed.queue_name
       AND q.locked_by = worker_id;

    RETURN failed;
END;
$body$;
