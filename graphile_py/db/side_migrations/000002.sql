-- The one-job claim as a function, for connections without prepared statements (a
-- transaction-mode pooler). A client statement sent unprepared is planned again on every
-- claim, which cost more server time than running it; PL/pgSQL keeps the plan of its
-- statement for the life of the server backend, whichever client the pooler lends it to.
-- The statement is graphile-py's one-job claim (graphile_py/db/claims.py, "queue
-- strategy 2", complete-first): with done not null, that finished job (of no named
-- queue, still ours or unlocked) is deleted in the same statement. The result columns are
-- spelled out rather than the table's row type, so nothing here depends on the worker
-- schema's catalog and Node's migrations can change its tables freely.
create function :GRAPHILE_PY_SCHEMA.claim_next(done bigint, pool text, task_ids int[])
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
