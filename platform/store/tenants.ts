/** Tenants and their API keys (stored as SHA-256 hashes, never in clear). */
import { createHash, randomBytes } from 'node:crypto'
import type pg from 'pg'

type Queryable = Pick<pg.PoolClient, 'query'>

const hash = (key: string): string => createHash('sha256').update(key).digest('hex')

/** Creates the tenant if missing and registers `apiKey` for it (a new random key when omitted). */
export async function ensureTenant(client: Queryable, id: string, options: { name?: string; apiKey?: string } = {}): Promise<{ apiKey: string }> {
  const apiKey = options.apiKey ?? `prx_${randomBytes(24).toString('base64url')}`
  await client.query('insert into praxis.tenants (id, name) values ($1, $2) on conflict (id) do nothing', [id, options.name ?? id])
  await client.query('insert into praxis.api_keys (key_hash, tenant_id) values ($1, $2) on conflict (key_hash) do nothing', [hash(apiKey), id])
  return { apiKey }
}

/** The tenant an API key belongs to, or null. */
export async function tenantForKey(client: Queryable, apiKey: string): Promise<string | null> {
  const { rows } = await client.query<{ tenant_id: string }>({ name: 'praxis_tenant_for_key', text: 'select tenant_id from praxis.api_keys where key_hash = $1', values: [hash(apiKey)] })
  return rows[0]?.tenant_id ?? null
}
