-- Child workflows: an instance started by another instance's rule (ctx.start) knows its parent and
-- the parent's invocation it stands for; when the child ends, the same commit finishes that
-- invocation and queues the parent's reaction (or error section).
alter table praxis.instances
  add column parent_instance_id uuid,
  add column parent_invocation_id uuid;
create index instances_children on praxis.instances (tenant_id, parent_instance_id) where parent_instance_id is not null;

-- The manifest codegen wrote (sent with a deploy), kept as text: JSON Schemas list properties in
-- declaration order, which jsonb would not keep, and layered clients are generated from it.
alter table praxis.bundles add column generated_manifest text;

-- Raised by the evaluation write when an invocation would be left without its job (its pool's
-- graphile-worker task row was not visible): the write rolls back instead of stranding it.
create function praxis.jobs_missing() returns int language plpgsql as $$
begin
  raise exception 'praxis: an invocation has no job (unknown graphile-worker task); retry the evaluation' using errcode = '40001';
end
$$;

-- Every invocation row is updated once when its result is recorded: leave room on its page so the
-- update stays HOT (no index writes); measured 411 of 528 HOT before, all after.
alter table praxis.invocations set (fillfactor = 85);
