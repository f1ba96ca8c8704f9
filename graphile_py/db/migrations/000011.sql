--! breaking-change
-- Migration 11: the big restructure. Tasks and queues get integer ids, jobs
-- refer to them, availability becomes a generated column covered by partial
-- indexes, and job state changes move out of the database into the worker.
-- Rows are carried over from the old tables, which are then dropped.

-- Nothing may touch the old tables while they are rebuilt.
LOCK TABLE :GRAPHILE_WORKER_SCHEMA.jobs;
LOCK TABLE :GRAPHILE_WORKER_SCHEMA.job_queues;

-- Refuse to run while a worker may still be executing a job (a lock younger
-- than four hours). A division by zero is the signal: the migration runner
-- turns SQLSTATE 22012 from this migration into an explanatory error.
SELECT 1 / CASE
               WHEN EXISTS (
                   SELECT 1
                     FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
                    WHERE j.locked_at IS NOT NULL
                      AND j.locked_at > now() - interval '4 hours'
               ) THEN 0
               ELSE 1
           END;

-- The counters fit in two bytes; converting here means out-of-range values
-- fail early, before anything is copied.
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs
    ALTER COLUMN attempts     TYPE int2,
    ALTER COLUMN max_attempts TYPE int2,
    ALTER COLUMN priority     TYPE int2;

-- The in-database job lifecycle is gone; workers issue their own queries now.
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_job;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.fail_job;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.get_job;

-- Everything bound to the old table layout is rebuilt below.
DROP TRIGGER _900_notify_worker ON :GRAPHILE_WORKER_SCHEMA.jobs;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.add_job;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_jobs;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.permanently_fail_jobs;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs;
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.tg_jobs__notify_new_jobs;

-- The old tables stay (renamed) until their rows are copied. They keep their
-- index and sequence names, so the new tables' automatically named objects
-- come out as jobs_pkey1, jobs_id_seq1, jobs_key_key1 and job_queues_pkey1:
-- Node's schema has exactly these names.
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs RENAME TO jobs_legacy;
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.job_queues RENAME TO job_queues_legacy;

CREATE TABLE :GRAPHILE_WORKER_SCHEMA.job_queues (
    id           int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name   text NOT NULL UNIQUE CHECK (length(queue_name) <= 128),
    locked_at    timestamptz,
    locked_by    text,
    is_available boolean NOT NULL GENERATED ALWAYS AS ((locked_at IS NULL)) STORED
);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.job_queues ENABLE ROW LEVEL SECURITY;

CREATE TABLE :GRAPHILE_WORKER_SCHEMA.tasks (
    id         int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identifier text NOT NULL UNIQUE CHECK (length(identifier) <= 128)
);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.tasks ENABLE ROW LEVEL SECURITY;

-- job_queue_id and task_id deliberately have no foreign keys: checking them
-- on every insert and delete costs more than it protects.
CREATE TABLE :GRAPHILE_WORKER_SCHEMA.jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_queue_id int,
    task_id      int NOT NULL,
    payload      json NOT NULL DEFAULT '{}'::json,
    priority     smallint NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     smallint NOT NULL DEFAULT 0,
    max_attempts smallint NOT NULL DEFAULT 25
                 CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    key          text UNIQUE
                 CONSTRAINT jobs_key_check CHECK (length(key) > 0 AND length(key) <= 512),
    locked_at    timestamptz,
    locked_by    text,
    revision     integer NOT NULL DEFAULT 0,
    flags        jsonb,
    is_available boolean NOT NULL
                 GENERATED ALWAYS AS (((locked_at IS NULL) AND (attempts < max_attempts))) STORED
);
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs ENABLE ROW LEVEL SECURITY;

-- The fetch query scans available jobs in (priority, run_at) order; these
-- partial covering indexes let it do so without visiting the heap.
CREATE INDEX jobs_main_index
    ON :GRAPHILE_WORKER_SCHEMA.jobs USING btree (priority, run_at)
    INCLUDE (id, task_id, job_queue_id)
    WHERE (is_available = true);
CREATE INDEX jobs_no_queue_index
    ON :GRAPHILE_WORKER_SCHEMA.jobs USING btree (priority, run_at)
    INCLUDE (id, task_id)
    WHERE (is_available = true AND job_queue_id IS NULL);

-- One job to add; NULL fields take the usual defaults.
CREATE TYPE :GRAPHILE_WORKER_SCHEMA.job_spec AS (
    identifier   text,
    payload      json,
    queue_name   text,
    run_at       timestamptz,
    max_attempts integer,
    job_key      text,
    priority     integer,
    flags        text[]
);

-- Adds (or, by key, replaces) many jobs at once, registering any new task
-- identifiers and queue names first.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.add_jobs(
    specs :GRAPHILE_WORKER_SCHEMA.job_spec[],
    job_key_preserve_run_at boolean DEFAULT false
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.tasks (identifier)
    SELECT DISTINCT s.identifier
      FROM unnest(specs) AS s
    ON CONFLICT DO NOTHING;

    INSERT INTO :GRAPHILE_WORKER_SCHEMA.job_queues (queue_name)
    SELECT DISTINCT s.queue_name
      FROM unnest(specs) AS s
     WHERE s.queue_name IS NOT NULL
    ON CONFLICT DO NOTHING;

    -- A job holding one of the keys that cannot be updated (it is running, or
    -- has used up its attempts) gives up the key and will never run again;
    -- the insert below then creates a new job for the key.
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET key = NULL,
           attempts = j.max_attempts,
           updated_at = now()
      FROM unnest(specs) AS s
     WHERE s.job_key IS NOT NULL
       AND j.key = s.job_key
       AND j.is_available IS NOT TRUE;

    RETURN QUERY
    INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs AS j
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
      JOIN :GRAPHILE_WORKER_SCHEMA.tasks AS t
        ON t.identifier = s.identifier
      LEFT JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q
        ON q.queue_name = s.queue_name
    ON CONFLICT (key) DO UPDATE
        SET job_queue_id = excluded.job_queue_id,
            task_id      = excluded.task_id,
            payload      = excluded.payload,
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

-- Admin functions: they leave alone any job locked within the last four hours
-- (an older lock belongs to a worker presumed dead).

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.complete_jobs(job_ids bigint[])
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
AS $body$
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.id = ANY (complete_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.permanently_fail_jobs(
    job_ids bigint[],
    error_message text DEFAULT NULL::text
)
RETURNS SETOF :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE sql
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
           attempts = j.max_attempts,
           updated_at = now()
     WHERE j.id = ANY (permanently_fail_jobs.job_ids)
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING *;
$body$;

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.remove_job(job_key text)
RETURNS :GRAPHILE_WORKER_SCHEMA.jobs
LANGUAGE plpgsql
STRICT
AS $body$
DECLARE
    affected :GRAPHILE_WORKER_SCHEMA.jobs;
BEGIN
    DELETE FROM :GRAPHILE_WORKER_SCHEMA.jobs AS j
     WHERE j.key = remove_job.job_key
       AND (j.locked_at IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING * INTO affected;

    IF FOUND THEN
        RETURN affected;
    END IF;

    -- Still running: let it finish, but never retry it and free the key.
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET key = NULL,
           attempts = j.max_attempts,
           updated_at = now()
     WHERE j.key = remove_job.job_key
    RETURNING * INTO affected;

    RETURN affected;
END;
$body$;

CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.reschedule_jobs(
    job_ids bigint[],
    run_at timestamptz DEFAULT NULL::timestamptz,
    priority integer DEFAULT NULL::integer,
    attempts integer DEFAULT NULL::integer,
    max_attempts integer DEFAULT NULL::integer
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

-- Wake idle workers once per inserting statement (empty payload).
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.tg_jobs__after_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    PERFORM pg_notify('jobs:insert', '');
    RETURN NEW;
END;
$body$;

CREATE TRIGGER _900_after_insert
    AFTER INSERT ON :GRAPHILE_WORKER_SCHEMA.jobs
    FOR EACH STATEMENT
    EXECUTE PROCEDURE :GRAPHILE_WORKER_SCHEMA.tg_jobs__after_insert();

-- add_job is a single-spec add_jobs, except for unsafe_dedupe which keeps
-- whichever job already holds the key, whatever its state.
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

-- Carry the old rows over: queues and tasks first so jobs can refer to them.
-- Old locks are not copied (the check above guarantees they are stale).
INSERT INTO :GRAPHILE_WORKER_SCHEMA.job_queues (queue_name)
SELECT DISTINCT l.queue_name
  FROM :GRAPHILE_WORKER_SCHEMA.jobs_legacy AS l
 WHERE l.queue_name IS NOT NULL
ON CONFLICT DO NOTHING;

INSERT INTO :GRAPHILE_WORKER_SCHEMA.tasks (identifier)
SELECT DISTINCT l.task_identifier
  FROM :GRAPHILE_WORKER_SCHEMA.jobs_legacy AS l
ON CONFLICT DO NOTHING;

INSERT INTO :GRAPHILE_WORKER_SCHEMA.jobs
    (job_queue_id, task_id, payload, priority, run_at, attempts, max_attempts,
     last_error, created_at, updated_at, key, revision, flags)
SELECT q.id,
       t.id,
       l.payload,
       l.priority,
       l.run_at,
       l.attempts,
       l.max_attempts,
       l.last_error,
       l.created_at,
       l.updated_at,
       l.key,
       l.revision,
       l.flags
  FROM :GRAPHILE_WORKER_SCHEMA.jobs_legacy AS l
  JOIN :GRAPHILE_WORKER_SCHEMA.tasks AS t
    ON t.identifier = l.task_identifier
  LEFT JOIN :GRAPHILE_WORKER_SCHEMA.job_queues AS q
    ON q.queue_name = l.queue_name;

DROP TABLE :GRAPHILE_WORKER_SCHEMA.jobs_legacy;
DROP TABLE :GRAPHILE_WORKER_SCHEMA.job_queues_legacy;
