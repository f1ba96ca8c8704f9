-- Migration 8: remembers which cron items have been seen and when each last
-- ran, so that missed runs can be backfilled after downtime.

CREATE TABLE :GRAPHILE_WORKER_SCHEMA.known_crontabs (
    identifier     text        NOT NULL PRIMARY KEY,
    known_since    timestamptz NOT NULL,
    last_execution timestamptz
);

ALTER TABLE :GRAPHILE_WORKER_SCHEMA.known_crontabs ENABLE ROW LEVEL SECURITY;
