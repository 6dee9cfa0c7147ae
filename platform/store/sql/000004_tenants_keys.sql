-- API keys get a public id (listed and revoked by it, and carried in the key itself), a label and
-- a revocation time; the secret stays stored only as its SHA-256 hash. Keys made before this
-- migration (and by ensureTenant) take the first 12 hex digits of their hash as their id.
alter table praxis.api_keys
  add column id text,
  add column label text check (label is null or length(label) <= 200),
  add column revoked_at timestamptz;
update praxis.api_keys set id = left(key_hash, 12) where id is null;
alter table praxis.api_keys
  alter column id set not null,
  add constraint api_keys_id_format check (id ~ '^[a-z0-9]{12}$');
create unique index api_keys_id on praxis.api_keys (id);
create index api_keys_tenant on praxis.api_keys (tenant_id, created_at);

-- New tenant ids are slugs: other names (queue names, metrics labels) are built from them, so no
-- dots, colons or underscores. `not valid`: rows made before this migration are not rechecked.
alter table praxis.tenants add constraint tenants_id_slug check (id ~ '^[a-z][a-z0-9-]{0,39}$') not valid;
