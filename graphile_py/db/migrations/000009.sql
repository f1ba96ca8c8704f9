-- Migration 9: the caller may supply the current time (workers that trust
-- their own clock over the database's).

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(text, text[], interval, text[]);

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(
    worker_id        text,
    task_identifiers text[]      = NULL,
    job_expiry       interval    = interval '4 hours',
    forbidden_flags  text[]      = NULL,
    now              timestamptz = now()
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
VOLATILE
AS $body$
DECLARE
    picked_id    bigint;
    picked_queue text;
    claimed      :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    IF worker_id IS NULL OR length(worker_id) < 10 THEN
        RAISE EXCEPTION 'invalid worker id';
    END IF;

    SELECT j.queue_name, j.id
      INTO picked_queue, picked_id
      FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE (j.locked_at IS NULL OR j.locked_at < get_job.now - job_expiry)
       AND (
            j.queue_name IS NULL
            OR EXISTS (
                SELECT 1
                  FROM :GRAPHILE_WORKER_SCHEMA.job_queues AS q
                 WHERE q.queue_name = j.queue_name
                   AND (q.locked_at IS NULL OR q.locked_at < get_job.now - job_expiry)
                   FOR UPDATE SKIP LOCKED
            )
       )
       AND j.run_at <= get_job.now
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
               locked_at = get_job.now
         WHERE q.queue_name = picked_queue;
    END IF;

    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET attempts  = j.attempts + 1,
           locked_by = worker_id,
           locked_at = get_job.now
     WHERE j.id = picked_id
    RETURNING * INTO claimed;

    RETURN claimed;
END;
$body$;
