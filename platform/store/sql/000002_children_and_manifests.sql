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
