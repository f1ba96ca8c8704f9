-- Migration 6: index only the jobs that can still be attempted, and include
-- locked_at so the fetch query can check it from the index.

CREATE INDEX jobs_priority_run_at_id_locked_at_without_failures_idx
    ON :GRAPHILE_WORKER_SCHEMA.jobs (priority, run_at, id, locked_at)
    WHERE attempts < max_attempts;

-- Superseded by the partial index above.
DROP INDEX :GRAPHILE_WORKER_SCHEMA.jobs_priority_run_at_id_idx;
