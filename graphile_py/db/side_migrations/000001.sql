-- The pool registry (heartbeats, rescue) and the job history. Nothing here refers to
-- the worker schema, so Node's migrations and catalog never see it.
create table :GRAPHILE_PY_SCHEMA.pools (
  id text primary key,                 -- the pool id, exactly as written in W._private_jobs.locked_by
  hostname text not null,
  pid int not null,
  version text not null,               -- graphile-py version
  concurrency int not null,
  task_identifiers text[] not null,
  heartbeat_timeout interval not null, -- this pool's own timeout: rescuers judge it by it
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now(),
  stopped_at timestamptz,              -- set on a clean stop
  lost_at timestamptz,                 -- set when another pool declared it lost
  lost_by text,                        -- the rescuing pool's id
  jobs_rescued int,                    -- how many of its jobs were released
  jobs_succeeded bigint not null default 0,  -- counters sent with each heartbeat
  jobs_failed bigint not null default 0
);
create index pools_alive on :GRAPHILE_PY_SCHEMA.pools (heartbeat_at) where stopped_at is null and lost_at is null;
create table :GRAPHILE_PY_SCHEMA.job_attempts (
  id bigint generated always as identity primary key,
  job_id bigint not null,
  task_identifier text not null,
  queue_name text,
  key text,
  payload json,                        -- null when larger than history_payload_limit
  payload_bytes int not null,
  attempt int not null,
  max_attempts int not null,
  pool_id text not null,
  started_at timestamptz not null,
  finished_at timestamptz not null default now(),
  outcome text not null check (outcome in ('success', 'failure', 'abandoned', 'lost')),
  error text
);
create index job_attempts_job on :GRAPHILE_PY_SCHEMA.job_attempts (job_id, id);
create index job_attempts_finished on :GRAPHILE_PY_SCHEMA.job_attempts (finished_at);
create index job_attempts_task on :GRAPHILE_PY_SCHEMA.job_attempts (task_identifier, finished_at);
