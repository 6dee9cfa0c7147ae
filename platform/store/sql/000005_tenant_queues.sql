-- Queues scoped by tenant: task identifiers are praxis.invoke.<tenant>.<pool> and
-- praxis.evaluate.<tenant> (platform/store/tasks.ts), and a worker serves one tenant.

-- The tenant a worker serves (null only for a row written before this migration).
alter table praxis.workers add column tenant_id text;

-- Jobs queued before this migration, on the unscoped praxis.invoke.<pool> and praxis.evaluate,
-- move to their tenant's queue, the tenant taken from the invocation or instance row they name
-- (never from the payload's own tenant field). A job naming no such row is left where it is: no
-- worker takes the unscoped identifiers any more. graphile-worker's schema is migrated after the
-- praxis one, so on a new database it does not exist yet and there is nothing to move.
do $$
begin
  if to_regclass('graphile_worker._private_jobs') is null then
    return;
  end if;

  create temporary table praxis_requeue on commit drop as
  select j.id as job_id, 'praxis.invoke.' || v.tenant_id || '.' || v.pool as identifier
  from graphile_worker._private_jobs j
  join graphile_worker._private_tasks t on t.id = j.task_id
  join praxis.invocations v on v.id::text = j.payload->>'id'
  where t.identifier like 'praxis.invoke.%' and t.identifier = 'praxis.invoke.' || v.pool
  union all
  select j.id, 'praxis.evaluate.' || i.tenant_id
  from graphile_worker._private_jobs j
  join graphile_worker._private_tasks t on t.id = j.task_id
  join praxis.instances i on i.id::text = j.payload->>'i'
  where t.identifier = 'praxis.evaluate';

  insert into graphile_worker._private_tasks (identifier)
  select distinct identifier from praxis_requeue
  on conflict do nothing;

  update graphile_worker._private_jobs j set task_id = t.id
  from praxis_requeue r join graphile_worker._private_tasks t on t.identifier = r.identifier
  where j.id = r.job_id;
end
$$;
