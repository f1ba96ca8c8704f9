-- claim_next (side migration 2) as a "loose index scan", as graphile-py's client claim
-- now is (graphile_py/db/claims.py, _candidates): the distinct priorities of the available
-- jobs first, one probe of jobs_main_index each (a recursive CTE), then for each priority
-- its first due job, locked (SKIP LOCKED) under that priority's own limit; then the first
-- of those in claim order. Every scan is bounded by priority = ? and run_at <= now: the
-- old single ordered scan of (priority, run_at) read every job scheduled for later
-- whenever nothing was due (11-20 ms at a million), on every idle look. Same arguments,
-- same result columns: pools already calling it need no change.
create or replace function :GRAPHILE_PY_SCHEMA.claim_next(done bigint, pool text, task_ids int[])
returns table (
  id bigint, payload json, job_queue_id int, task_id int, priority smallint,
  run_at timestamptz, attempts smallint, max_attempts smallint, last_error text,
  created_at timestamptz, updated_at timestamptz, key text, locked_at timestamptz,
  locked_by text, revision int, flags jsonb, is_available boolean
)
language plpgsql volatile
as $graphile_py_claim_next$
#variable_conflict use_column
begin
  return query
  with recursive completed as (
    delete from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
    where jobs.id = claim_next.done
      and (jobs.locked_by = claim_next.pool or jobs.locked_by is null)
  ),
  priorities(priority) as (
    select (
      select jobs.priority from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.is_available = true
      order by jobs.priority asc limit 1)
    union all
    select (
      select jobs.priority from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.is_available = true and jobs.priority > known.priority
      order by jobs.priority asc limit 1)
    from priorities as known where known.priority is not null
  ),
  candidates as (
    select picked.id, picked.job_queue_id, picked.priority, picked.run_at
    from priorities as wanted
    cross join lateral (
      select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
      from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.task_id = any(claim_next.task_ids) and jobs.priority = wanted.priority
        and jobs.is_available = true and jobs.run_at <= (select now())
        and (jobs.job_queue_id is null or jobs.job_queue_id in (
          select queues.id from :GRAPHILE_WORKER_SCHEMA._private_job_queues as queues
          where queues.is_available = true for update skip locked))
      order by jobs.run_at asc
      limit 1
      for update of jobs skip locked
    ) as picked
    order by picked.priority asc, picked.run_at asc
    limit 1
  ),
  locked_queues as (
    update :GRAPHILE_WORKER_SCHEMA._private_job_queues as queues
    set locked_by = claim_next.pool, locked_at = now()
    from candidates where queues.id = candidates.job_queue_id
  )
  update :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
  set attempts = jobs.attempts + 1, locked_by = claim_next.pool, locked_at = now()
  from candidates where jobs.id = candidates.id
  returning jobs.id, jobs.payload, jobs.job_queue_id, jobs.task_id, jobs.priority,
    jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.created_at,
    jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by, jobs.revision, jobs.flags,
    jobs.is_available;
end
$graphile_py_claim_next$;
