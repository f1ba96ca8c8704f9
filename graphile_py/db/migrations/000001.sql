--! breaking-change
-- Migration 1: the original queue schema. Queues are rows keyed by name that
-- triggers create and delete as jobs come and go; whole queues are locked by
-- the worker that holds one of their jobs.

CREATE TABLE :GRAPHILE_WORKER_SCHEMA.job_queues (
    queue_name text NOT NULL PRIMARY KEY,
    job_count  int  NOT NULL,
    locked_at  timestamptz,
    locked_by  text
);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.job_queues ENABLE ROW LEVEL SECURITY;

CREATE TABLE :GRAPHILE_WORKER_SCHEMA.jobs (
    id              bigserial PRIMARY KEY,
    queue_name      text NOT NULL,
    task_identifier text NOT NULL,
    payload         json NOT NULL DEFAULT '{}'::json,
    priority        int NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT now(),
    attempts        int NOT NULL DEFAULT 0,
    max_attempts    int NOT NULL DEFAULT 25,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ENABLE ROW LEVEL SECURITY;

-- Named explicitly with the name PostgreSQL would generate: migration 6 drops
-- it by that name.
CREATE INDEX jobs_priority_run_at_id_idx
    ON :GRAPHILE_WORKER_SCHEMA.jobs (priority, run_at, id);

-- updated_at must move forward on every change, even within one transaction.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.tg__update_timestamp()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 millisecond');
    RETURN NEW;
END;
$body$;

-- The queue row lives exactly as long as it has jobs: decrement on the way out
-- and drop it once empty...
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    remaining int;
BEGIN
    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET job_count = q.job_count - 1
     WHERE q.queue_name = OLD.queue_name
    RETURNING q.job_count INTO remaining;

    IF remaining <= 0 THEN
        DELETE FROM :GRAPHILE_WORKER_SCHEMA.job_queues AS q
         WHERE q.queue_name = OLD.queue_name
           AND q.job_count <= 0;
    END IF;

    RETURN OLD;
END;
$body$;

-- ...and create or bump it on the way in.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.job_queues AS q (queue_name, job_count)
    VALUES (NEW.queue_name, 1)
    ON CONFLICT (queue_name) DO UPDATE
        SET job_count = q.job_count + 1;

    RETURN NEW;
END;
$body$;

CREATE TRIGGER _100_timestamps
    BEFORE UPDATE ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.tg__update_timestamp();

CREATE TRIGGER _500_increase_job_queue_count
    AFTER INSERT ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count();
CREATE TRIGGER _500_decrease_job_queue_count
    AFTER DELETE ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count();
CREATE TRIGGER _500_increase_job_queue_count_update
    AFTER UPDATE OF queue_name ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count();
CREATE TRIGGER _500_decrease_job_queue_count_update
    AFTER UPDATE OF queue_name ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH ROW EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count();

-- Wake idle workers once per inserting statement (empty payload).
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.tg_jobs__notify_new_jobs()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    PERFORM pg_notify('jobs:insert', '');
    RETURN NEW;
END;
$body$;

CREATE TRIGGER _900_notify_worker
    AFTER INSERT ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH STATEMENT EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.tg_jobs__notify_new_jobs();

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job(
    identifier   text,
    payload      json        = '{}',
    queue_name   text        = NULL,
    run_at       timestamptz = now(),
    max_attempts int         = 25
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
AS $body$
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs
        (task_identifier, payload, queue_name, run_at, max_attempts)
    VALUES
        ($1, $2, $3, $4, $5)
    RETURNING *;
$body$;

-- Claim the most urgent runnable job whose queue nobody (live) holds, locking
-- the queue for this worker and counting the attempt.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job(
    worker_id        text,
    task_identifiers text[]   = NULL,
    job_expiry       interval = interval '4 hours'
)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    picked_id    bigint;
    picked_queue text;
    claimed      :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    IF worker_id IS NULL OR length(worker_id) < 10 THEN
        RAISE EXCEPTION 'invalid worker id';
    END IF;

    SELECT q.queue_name, j.id
      INTO picked_queue, picked_id
      FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
      JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q USING (queue_name)
     WHERE (q.locked_at IS NULL OR q.locked_at < now() - job_expiry)
       AND j.run_at <= now()
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
           locked_at = now()
     WHERE q.queue_name = picked_queue;

    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET attempts = j.attempts + 1
     WHERE j.id = picked_id
    RETURNING * INTO claimed;

    RETURN claimed;
END;
$body$;

-- Success: the job goes away and its queue is released.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_job(worker_id text, job_id bigint)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    finished :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.id = job_id
    RETURNING * INTO finished;

    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET locked_by = NULL,
           locked_at = NULL
     WHERE q.queue_name = finished.queue_name
       AND q.locked_by = worker_id;

    RETURN finished;
END;
$body$;

-- Failure: record the error, back off exponentially (capped at e^10 seconds)
-- and release the queue.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.fail_job(worker_id text, job_id bigint, error_message text)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    failed :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET last_error = error_message,
           run_at = greatest(now(), j.run_at)
                    + (exp(least(j.attempts, 10))::text || ' seconds')::interval
     WHERE j.id = job_id
    RETURNING * INTO failed;

    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET locked_by = NULL,
           locked_at = NULL
     WHERE q.queue_name = failed.queue_name
       AND q.locked_by = worker_id;

    RETURN failed;
END;
$body$;
