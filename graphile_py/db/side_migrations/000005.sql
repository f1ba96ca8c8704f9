-- claim_next back to one ordered scan of jobs_main_index, as side migration 2 made it.
-- Side migration 4 looked up the priorities first (a recursive "loose index scan") so
-- that a claim finding nothing due would not read every job scheduled for later; but with
-- statistics that had not yet seen the jobs (a burst into a table analysed while nearly
-- empty), its per-priority scan was planned as a bitmap scan and a sort of every due job,
-- which made a drain quadratic. The single ordered scan with LIMIT stays an index scan
-- that stops at the first due job whatever the statistics say. (The per-task claim,
-- claim_next_by_task, scans graphile_py_jobs_task_index, whose leading task_id keeps the
-- index scan there.)
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
  with completed as (
    delete from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
    where jobs.id = claim_next.done
      and (jobs.locked_by = claim_next.pool or jobs.locked_by is null)
  ),
  candidates as (
    select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
    from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
    where jobs.is_available = true and jobs.run_at <= (select now())
      and jobs.task_id = any(claim_next.task_ids)
      and (jobs.job_queue_id is null or jobs.job_queue_id in (
        select queues.id from :GRAPHILE_WORKER_SCHEMA._private_job_queues as queues
        where queues.is_available = true for update skip locked))
    order by jobs.priority asc, jobs.run_at asc
    limit 1
    for update skip locked
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
