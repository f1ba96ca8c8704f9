--! breaking-change
-- Migration 19 changes nothing in the database. It exists only so that the
-- migrations table records a breaking revision: from 0.17 on, locked_by holds
-- the id of a worker pool rather than of a single worker, so older workers
-- must refuse to run against this schema.
SELECT 'no schema change' AS migration_19;
