-- Praxis core schema: tenants, services, bundles, instances, events (inbox), invocations, timeline.
-- Every row belongs to one tenant; tenant_id leads every key so the schema can be split by tenant.

create table praxis.tenants (
  id text primary key check (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name text not null,
  created_at timestamptz not null default now()
);

create table praxis.api_keys (
  key_hash text primary key,
  tenant_id text not null references praxis.tenants (id) on delete cascade,
  created_at timestamptz not null default now()
);

create table praxis.services (
  tenant_id text not null references praxis.tenants (id) on delete cascade,
  name text not null check (name ~ '^[A-Za-z][A-Za-z0-9_-]{0,99}$'),
  active_bundle_id bigint,
  created_at timestamptz not null default now(),
  primary key (tenant_id, name)
);

create table praxis.bundles (
  tenant_id text not null,
  id bigint generated always as identity,
  service text not null,
  version int not null,
  code text not null,
  code_hash text not null,
  manifest jsonb not null,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, service, version),
  foreign key (tenant_id, service) references praxis.services (tenant_id, name) on delete cascade
);

alter table praxis.services add foreign key (tenant_id, active_bundle_id) references praxis.bundles (tenant_id, id);

create table praxis.instances (
  tenant_id text not null,
  id uuid not null default gen_random_uuid(),
  service text not null,
  workflow text not null,
  bundle_id bigint not null,
  status text not null default 'running' check (status in ('running', 'completed', 'failed', 'cancelled', 'paused')),
  revision int not null default 0,
  facts jsonb not null,
  -- fingerprint -> last known truth of that rule's match, for edge-triggered firing
  rule_state jsonb not null default '{}',
  result jsonb,
  error jsonb,
  idempotency_key text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, bundle_id) references praxis.bundles (tenant_id, id)
);
create unique index instances_idempotency on praxis.instances (tenant_id, service, workflow, idempotency_key) where idempotency_key is not null;
create index instances_list on praxis.instances (tenant_id, created_at desc, id desc);

create table praxis.events (
  tenant_id text not null,
  id bigint generated always as identity,
  instance_id uuid not null,
  kind text not null check (kind in ('signal', 'result', 'failure', 'redeploy')),
  payload jsonb not null default '{}',
  dedupe_key text,
  created_at timestamptz not null default now(),
  consumed_at timestamptz,
  primary key (tenant_id, id),
  foreign key (tenant_id, instance_id) references praxis.instances (tenant_id, id) on delete cascade
);
create index events_pending on praxis.events (tenant_id, instance_id, id) where consumed_at is null;
create unique index events_dedupe on praxis.events (tenant_id, instance_id, kind, dedupe_key) where dedupe_key is not null;

create table praxis.invocations (
  tenant_id text not null,
  id uuid not null default gen_random_uuid(),
  instance_id uuid not null,
  rule text not null,
  function text not null,
  pool text not null,
  input jsonb not null,
  call_key text,
  priority int not null default 0,
  retry jsonb not null,
  timeout_ms int not null,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed', 'cancelled')),
  attempts int not null default 0,
  output jsonb,
  failure jsonb,
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (tenant_id, id),
  foreign key (tenant_id, instance_id) references praxis.instances (tenant_id, id) on delete cascade
);
create unique index invocations_key on praxis.invocations (tenant_id, instance_id, call_key) where call_key is not null;
create index invocations_instance on praxis.invocations (tenant_id, instance_id);

create table praxis.timeline (
  tenant_id text not null,
  id bigint generated always as identity,
  instance_id uuid not null,
  revision int not null,
  kind text not null,
  rule text,
  data jsonb not null default '{}',
  at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, instance_id) references praxis.instances (tenant_id, id) on delete cascade
);
create index timeline_instance on praxis.timeline (tenant_id, instance_id, id);

-- Worker processes and the graphile-worker ids they lock jobs with, for the lease sweeper.
create table praxis.workers (
  id text primary key,
  pools text[] not null,
  lock_ids text[] not null default '{}',
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now()
);
