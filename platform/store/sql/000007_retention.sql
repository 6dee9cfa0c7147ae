-- Retention (platform/store/retention.ts): a tenant's finished data is purged by a graphile-worker
-- cron job on its own workers, by age, in bounded batches.

-- A tenant's own retention, overriding the platform defaults (platform/config.ts) key by key:
-- absent keys take the default, a number is days (fractions allowed, up to 100 years), null keeps
-- that data for ever. Set with `praxis tenants retention <tenant> …`.
alter table praxis.tenants add column retention jsonb;
-- One setting's value: days in (0, 36500], JSON null (keep for ever), or absent (SQL null).
create function praxis.retention_days_ok(days jsonb) returns boolean language sql immutable parallel safe as $$
  select case jsonb_typeof(days) when 'number' then days::numeric > 0 and days::numeric <= 36500 when 'null' then true else days is null end
$$;
alter table praxis.tenants add constraint tenants_retention check (retention is null or (
  jsonb_typeof(retention) = 'object'
  and retention - array['finishedDays', 'eventsDays', 'runningTimelineDays'] = '{}'::jsonb
  and praxis.retention_days_ok(retention->'finishedDays')
  and praxis.retention_days_ok(retention->'eventsDays')
  and praxis.retention_days_ok(retention->'runningTimelineDays')));

-- Deleting an instance deletes its events (by the purge, and by the foreign key's cascade, which
-- probes for them once per instance): without this index each probe read the whole table.
create index events_instance on praxis.events (tenant_id, instance_id);

-- Consumed events by age. Signals sent with a signalId (dedupe_key) are kept as long as their
-- instance (a retried signal stays a duplicate), so they are not in it. An event enters it when it
-- is consumed; that update already changed an indexed column (events_pending's predicate).
create index events_consumed on praxis.events (tenant_id, consumed_at) where consumed_at is not null and dedupe_key is null;

-- Finished instances are found through instances_list (tenant_id, created_at): one that finished
-- before the cutoff was created before it. No index on updated_at: every evaluation writes it,
-- and an index on it (even a partial one) would make each of those updates a non-HOT update.
