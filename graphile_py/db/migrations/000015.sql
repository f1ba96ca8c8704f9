-- Migration 15: drop the trigger functions whose triggers vanished with the
-- old tables in migration 11, and add force_unlock_workers.

DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.jobs__increase_job_queue_count();
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.jobs__decrease_job_queue_count();
DROP FUNCTION :GRAPHILE_WORKER_SCHEMA.tg__update_timestamp();

-- Releases every job and queue held by the given (crashed) workers so that
-- others can pick them up straight away.
CREATE FUNCTION :GRAPHILE_WORKER_SCHEMA.force_unlock_workers(worker_ids text[])
RETURNS void
LANGUAGE sql
VOLATILE
AS $body$
    UPDATE :GRAPHILE_WORKER_SCHEMA.jobs AS j
       SET locked_at = NULL,
           locked_by = NULL
     WHERE j.locked_by = ANY (force_unlock_workers.worker_ids);

    UPDATE :GRAPHILE_WORKER_SCHEMA.job_queues AS q
       SET locked_at = NULL,
           locked_by = NULL
     WHERE q.locked_by = ANY (force_unlock_workers.worker_ids);
$body$;
