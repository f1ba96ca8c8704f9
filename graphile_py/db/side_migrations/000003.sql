-- claim_next for a database with graphile-py's optional per-task index
-- (graphile_py_jobs_task_index, installed by `graphile-py task-index install`): the same
-- one-job claim as claim_next (side migration 2), but each of the pool's tasks is looked
-- up apart, so due jobs of tasks the pool does not serve (a Node backlog) are never read.
-- Each task's job priorities are found first, one index probe each (a recursive "loose
-- index scan"), so that every scan is bounded by run_at <= now and the pool's own jobs
-- scheduled for later are not read either. For each (task, priority) its first due job
-- is locked (SKIP LOCKED) under that pair's own limit, then the first of those in claim
-- order is taken (graphile_py/db/claims.py, per_task). Pools call it only when they
-- found the index valid at start; without the index it is still correct, only slower.
create function :GRAPHILE_PY_SCHEMA.claim_next_by_task(done bigint, pool text, task_ids int[])
returns table (
  id bigint, payload json, job_queue_id int, task_id int, priority smallint,
  run_at timestamptz, attempts smallint, max_attempts smallint, last_error text,
  created_at timestamptz, updated_at timestamptz, key text, locked_at timestamptz,
  locked_by text, revision int, flags jsonb, is_available boolean
)
language plpgsql volatile
as $graphile_py_claim_next_by_task$
#variable_conflict use_column
begin
  return query
  with recursive completed as (
    delete from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
    where jobs.id = claim_next_by_task.done
      and (jobs.locked_by = claim_next_by_task.pool or jobs.locked_by is null)
  ),
  task_priorities(task_id, priority) as (
    select wanted.task_id, (
      select jobs.priority from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.task_id = wanted.task_id and jobs.is_available = true
      order by jobs.priority asc limit 1)
    -- "(select ...)": hidden from every plan, so that custom plans cost what the
    -- generic one does and the server keeps the generic plan, as for the client's claim.
    from unnest((select claim_next_by_task.task_ids)) as wanted(task_id)
    union all
    select known.task_id, (
      select jobs.priority from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.task_id = known.task_id and jobs.is_available = true
        and jobs.priority > known.priority
      order by jobs.priority asc limit 1)
    from task_priorities as known where known.priority is not null
  ),
  candidates as (
    select picked.id, picked.job_queue_id, picked.priority, picked.run_at
    from task_priorities as wanted
    cross join lateral (
      select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
      from :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
      where jobs.task_id = wanted.task_id and jobs.priority = wanted.priority
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
    set locked_by = claim_next_by_task.pool, locked_at = now()
    from candidates where queues.id = candidates.job_queue_id
  )
  update :GRAPHILE_WORKER_SCHEMA._private_jobs as jobs
  set attempts = jobs.attempts + 1, locked_by = claim_next_by_task.pool, locked_at = now()
  from candidates where jobs.id = candidates.id
  returning jobs.id, jobs.payload, jobs.job_queue_id, jobs.task_id, jobs.priority,
    jobs.run_at, jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.created_at,
    jobs.updated_at, jobs.key, jobs.locked_at, jobs.locked_by, jobs.revision, jobs.flags,
    jobs.is_available;
end
$graphile_py_claim_next_by_task$;
