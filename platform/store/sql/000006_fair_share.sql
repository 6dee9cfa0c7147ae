-- Fair share by virtual time. graphile-worker hands out jobs `order by priority, run_at`; an
-- invoke job's run_at is a fixed past epoch plus its flow's virtual time, so every job stays
-- runnable and the queue interleaves flows (a tenant's services, or the values of a call's
-- fairness key) instead of serving a flood first-come, first-served. `priority` stays the class
-- above it. Virtual time is in microseconds; a job costs 1000.

-- Per flow: the virtual time its last queued job was given.
create table praxis.fair_flows (
  tenant_id text not null,
  flow text not null check (length(flow) <= 400),
  vt bigint not null default 0,
  primary key (tenant_id, flow)
);

-- Per tenant: the virtual time of the latest job its workers started (the queue's head). A flow
-- that was idle starts from here, so it neither jumps the queue nor waits behind a flood.
create table praxis.fair_clock (
  tenant_id text primary key,
  vt bigint not null default 0
);

-- The run_at of a job at virtual time `vt`: 2000-01-01 plus vt microseconds (always in the past).
create function praxis.fair_run_at(vt bigint) returns timestamptz language sql immutable parallel safe
  as $$ select timestamptz '2000-01-01 00:00:00+00' + vt * interval '1 microsecond' $$;

-- The run_at that puts a job at the head of its tenant's queue now (evaluate jobs, a job handed back).
create function praxis.fair_now(tenant text) returns timestamptz language sql stable parallel safe
  as $$ select praxis.fair_run_at(coalesce((select vt from praxis.fair_clock where tenant_id = tenant), 0)) $$;

-- A call's fairness key (ctx.call(…, { fairnessKey })): its flow is the service and this key.
alter table praxis.invocations add column fairness_key text check (length(fairness_key) <= 200);
