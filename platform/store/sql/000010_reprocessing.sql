-- Always-on deploys as background jobs (platform/queue/reprocess.ts). A deploy that changes or
-- adds rules records a reprocessing run: the rules to reach old work with, and a keyset cursor
-- over the service's instances (the watermark: every instance at or before it has been given the
-- new version; no row is rewritten for it). A job of the tenant's workers walks the instances in
-- batches, each its own transaction that moves the cursor, so a run resumes where it stopped after
-- a restart and never gives one instance two evaluations. A newer deploy of the service
-- supersedes a run still going.
create table praxis.reprocessing (
  tenant_id text not null,
  id bigint generated always as identity,
  service text not null,
  bundle_id bigint not null,
  version int not null,
  -- Per workflow, the rules added or changed ({ workflow: [{ name, condition, fingerprints }] }).
  rules jsonb not null,
  -- Workflows whose completed instances the run reopens too (their `reopen` opt-in).
  reopen text[] not null default '{}',
  status text not null default 'running' check (status in ('running', 'done', 'superseded')),
  total int not null default 0,
  walked int not null default 0,
  queued int not null default 0,
  cursor uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (tenant_id, id)
);
create index reprocessing_service on praxis.reprocessing (tenant_id, service, id desc);

-- What each queued instance's evaluation did with the new version: one row per instance, written
-- by the evaluation that consumed the redeploy event (the run's progress: evaluated, fired, failed).
create table praxis.reprocessed (
  tenant_id text not null,
  reprocessing_id bigint not null,
  instance_id uuid not null,
  fired int not null,
  failed boolean not null,
  at timestamptz not null default now(),
  primary key (tenant_id, reprocessing_id, instance_id),
  foreign key (tenant_id, reprocessing_id) references praxis.reprocessing (tenant_id, id) on delete cascade
);

-- The walk reads a service's running (and, for workflows that reopen, completed) instances in id order.
create index instances_open_by_service on praxis.instances (tenant_id, service, id) where status in ('running', 'completed');
