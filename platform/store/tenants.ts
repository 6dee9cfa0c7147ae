/**
 * Tenants and their API keys. A key is stored only as the SHA-256 hash of its secret, shown once
 * when made, and revocable; revocation takes effect on the next request (nothing is cached).
 *
 * Key format: `prx_<key id>_<secret>`, the key id 12 hex digits (public: listed and revoked by it),
 * the secret the base64url of 32 random bytes. Lookup finds the row by the id and compares hashes
 * with `timingSafeEqual`. Keys of the older format (`prx_<base64url>`, still made by `ensureTenant`
 * for tests and `praxis dev`) are found by their hash; their id is the hash's first 12 hex digits.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type pg from 'pg'
import { PraxisError } from '../errors.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/** A tenant id: other names (queues, metrics) are built from it, so no dots, colons or underscores. */
export const TENANT_ID = /^[a-z][a-z0-9-]{0,39}$/
/** A key id, as `praxis keys list` shows it and `praxis keys revoke` takes it. */
export const KEY_ID = /^[a-z0-9]{12}$/
const KEY = /^prx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest()
const hash = (key: string): string => sha256(key).toString('hex')
/** Compared against when a key id is unknown, so an unknown id costs what a wrong secret costs. */
const DUMMY_HASH = sha256('praxis: no such key').toString('hex')

export interface TenantRow { id: string; name: string; createdAt: Date; activeKeys: number }
export interface ApiKeyRow { id: string; tenantId: string; label: string | null; createdAt: Date; revokedAt: Date | null }

/** Creates the tenant if missing and registers `apiKey` for it (a new random key when omitted). */
export async function ensureTenant(client: Queryable, id: string, options: { name?: string; apiKey?: string } = {}): Promise<{ apiKey: string }> {
  checkTenantId(id)
  const apiKey = options.apiKey ?? `prx_${randomBytes(24).toString('base64url')}`
  const keyHash = hash(apiKey)
  await client.query('insert into praxis.tenants (id, name) values ($1, $2) on conflict (id) do nothing', [id, options.name ?? id])
  await client.query('insert into praxis.api_keys (id, key_hash, tenant_id) values ($1, $2, $3) on conflict (key_hash) do nothing', [keyHash.slice(0, 12), keyHash, id])
  return { apiKey }
}

/** Whether `key` hashes to `storedHash` (hex), compared in constant time. */
export function keyMatches(storedHash: string, key: string): boolean {
  const stored = Buffer.from(storedHash, 'hex')
  const given = sha256(key)
  return stored.length === given.length && timingSafeEqual(stored, given)
}

/** The tenant an API key belongs to, or null (unknown, malformed or revoked). Reads the database every time. */
export async function tenantForKey(client: Queryable, apiKey: string): Promise<string | null> {
  const parsed = KEY.exec(apiKey)
  if (parsed) {
    const { rows } = await client.query<{ tenant_id: string; key_hash: string; revoked: boolean }>({
      name: 'praxis_key_by_id',
      text: 'select tenant_id, key_hash, revoked_at is not null as revoked from praxis.api_keys where id = $1',
      values: [parsed[1]],
    })
    const row = rows[0]
    const matches = keyMatches(row?.key_hash ?? DUMMY_HASH, apiKey)
    return row && matches && !row.revoked ? row.tenant_id : null
  }
  // The older format: the hash is the lookup key (an index probe on a hash reveals nothing useful).
  if (apiKey.length > 200 || !/^[\x21-\x7e]+$/.test(apiKey)) return null
  const { rows } = await client.query<{ tenant_id: string }>({
    name: 'praxis_key_by_hash',
    text: 'select tenant_id from praxis.api_keys where key_hash = $1 and revoked_at is null',
    values: [hash(apiKey)],
  })
  return rows[0]?.tenant_id ?? null
}

/** The id `praxis tenants create <name>` derives from a name: lower case, runs of other characters become "-". */
export function tenantIdFromName(name: string): string {
  const slug = name.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^[^a-z]+/, '').slice(0, 40).replace(/-+$/, '')
  if (!TENANT_ID.test(slug)) throw new PraxisError('PRX_BAD_REQUEST', `cannot derive a tenant id from the name ${JSON.stringify(name)}: pass one with --id (a letter, then up to 39 lower-case letters, digits or "-")`)
  return slug
}

function checkTenantId(id: string): void {
  if (!TENANT_ID.test(id)) throw new PraxisError('PRX_BAD_REQUEST', `invalid tenant id ${JSON.stringify(id)}: a letter, then up to 39 lower-case letters, digits or "-" (no dots, colons or underscores)`)
}

/** Creates a tenant; refuses an id that exists. */
export async function createTenant(client: Queryable, options: { name: string; id?: string }): Promise<TenantRow> {
  const name = options.name.trim()
  if (!name || name.length > 200) throw new PraxisError('PRX_BAD_REQUEST', 'a tenant name is 1 to 200 characters')
  const id = options.id ?? tenantIdFromName(name)
  checkTenantId(id)
  const { rows } = await client.query<{ id: string; name: string; created_at: Date }>(
    'insert into praxis.tenants (id, name) values ($1, $2) on conflict (id) do nothing returning id, name, created_at', [id, name])
  const row = rows[0]
  if (!row) throw new PraxisError('PRX_TENANT_EXISTS', `tenant ${id} exists already: choose another id with --id, or make a key for it (praxis keys create --tenant ${id})`)
  return { id: row.id, name: row.name, createdAt: row.created_at, activeKeys: 0 }
}

export async function listTenants(client: Queryable): Promise<TenantRow[]> {
  const { rows } = await client.query<{ id: string; name: string; created_at: Date; active_keys: number }>(
    `select t.id, t.name, t.created_at, (select count(*) from praxis.api_keys k where k.tenant_id = t.id and k.revoked_at is null)::int as active_keys
     from praxis.tenants t order by t.id`)
  return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at, activeKeys: r.active_keys }))
}

async function requireTenant(client: Queryable, tenantId: string): Promise<void> {
  const { rowCount } = await client.query('select 1 from praxis.tenants where id = $1', [tenantId])
  if (!rowCount) throw new PraxisError('PRX_TENANT_NOT_FOUND', `no tenant ${JSON.stringify(tenantId)}: see praxis tenants list, or create it with praxis tenants create <name>`)
}

/** Makes a key for the tenant. The returned `key` is the only time the secret exists in clear. */
export async function createApiKey(client: Queryable, tenantId: string, options: { label?: string } = {}): Promise<ApiKeyRow & { key: string }> {
  // eslint-disable-next-line no-control-regex -- control characters are what a label may not hold
  if (options.label !== undefined && (options.label.length > 200 || /[\u0000-\u001f]/.test(options.label))) throw new PraxisError('PRX_BAD_REQUEST', 'a key label is up to 200 printable characters')
  if (!TENANT_ID.test(tenantId)) throw new PraxisError('PRX_TENANT_NOT_FOUND', `no tenant ${JSON.stringify(tenantId)}: see praxis tenants list`)
  await requireTenant(client, tenantId)
  for (let attempt = 0; ; attempt++) {
    const id = randomBytes(6).toString('hex')
    const key = `prx_${id}_${randomBytes(32).toString('base64url')}`
    const { rows } = await client.query<{ created_at: Date }>(
      'insert into praxis.api_keys (id, key_hash, tenant_id, label) values ($1, $2, $3, $4) on conflict do nothing returning created_at',
      [id, hash(key), tenantId, options.label ?? null])
    if (rows[0]) return { id, tenantId, label: options.label ?? null, createdAt: rows[0].created_at, revokedAt: null, key }
    if (attempt >= 3) throw new Error('could not draw an unused key id')
  }
}

/** A tenant's keys, newest last: ids, labels and dates, never secrets or hashes. */
export async function listApiKeys(client: Queryable, tenantId: string): Promise<ApiKeyRow[]> {
  if (!TENANT_ID.test(tenantId)) throw new PraxisError('PRX_TENANT_NOT_FOUND', `no tenant ${JSON.stringify(tenantId)}: see praxis tenants list`)
  await requireTenant(client, tenantId)
  const { rows } = await client.query<{ id: string; tenant_id: string; label: string | null; created_at: Date; revoked_at: Date | null }>(
    'select id, tenant_id, label, created_at, revoked_at from praxis.api_keys where tenant_id = $1 order by created_at, id', [tenantId])
  return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, label: r.label, createdAt: r.created_at, revokedAt: r.revoked_at }))
}

/** Revokes a key by its id; the next request with it answers 401. Revoking twice keeps the first time. */
export async function revokeApiKey(client: Queryable, keyId: string): Promise<ApiKeyRow & { alreadyRevoked: boolean }> {
  const notFound = (): never => { throw new PraxisError('PRX_KEY_NOT_FOUND', `no API key ${JSON.stringify(keyId)}: see praxis keys list --tenant <id>`) }
  if (!KEY_ID.test(keyId)) notFound()
  const { rows } = await client.query<{ id: string; tenant_id: string; label: string | null; created_at: Date; revoked_at: Date; already: boolean }>(
    `with before as (select id, revoked_at is not null as already from praxis.api_keys where id = $1),
     done as (update praxis.api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1 returning id, tenant_id, label, created_at, revoked_at)
     select done.*, before.already from done join before using (id)`, [keyId])
  const row = rows[0] ?? notFound()
  return { id: row.id, tenantId: row.tenant_id, label: row.label, createdAt: row.created_at, revokedAt: row.revoked_at, alreadyRevoked: row.already }
}
