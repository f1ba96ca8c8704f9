-- Migration 10: very old installs gave queue_name a random default
-- (gen_random_uuid()); NULL now means "no queue", so any default must go.
ALTER TABLE :GRAPHILE_WORKER_SCHEMA.jobs
    ALTER COLUMN queue_name DROP DEFAULT;
