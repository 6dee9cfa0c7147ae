/**
 * `praxis tenants …` and `praxis keys …`: administration straight on the database (DATABASE_URL,
 * else the embedded PostgreSQL of a running `praxis dev`), never through the API, whose keys are
 * per tenant. Secrets are printed once, when a key is made.
 */
import type { Config } from '../config.js'
import { PraxisError } from '../errors.js'
import { createApiKey, createPool, createTenant, listApiKeys, listTenants, migrate, revokeApiKey } from '../store/index.js'

export interface AdminArgs { positionals: string[]; id?: string | undefined; tenant?: string | undefined; label?: string | undefined }

/** Where `praxis dev`'s embedded PostgreSQL listens (its TCP port; the same URL its workers use). */
export const adminDatabaseUrl = (config: Config): string => config.databaseUrl ?? `postgres://postgres:praxis@127.0.0.1:${config.embeddedPort}/praxis`

const date = (d: Date | null): string => (d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '-')

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd())
}

/** Runs `praxis <group> <verb> …`; returns the exit code. */
export async function runAdmin(config: Config, group: 'tenants' | 'keys', args: AdminArgs, out: (line: string) => void): Promise<number> {
  const [verb, ...rest] = args.positionals
  const url = adminDatabaseUrl(config)
  const pool = createPool(url, 2)
  try {
    try {
      await pool.query('select 1')
    } catch (error) {
      const where = config.databaseUrl ? 'the PostgreSQL of DATABASE_URL' : `the embedded PostgreSQL of \`praxis dev\` on port ${config.embeddedPort}`
      const fix = config.databaseUrl
        ? 'check DATABASE_URL'
        : 'start `praxis dev` (or `npm start`) in another terminal and run this again, or set DATABASE_URL to your PostgreSQL (and PRAXIS_PG_PORT if praxis dev uses another port)'
      throw new PraxisError('PRX_DATABASE_UNAVAILABLE', `cannot reach ${where} (${(error as Error).message}): ${fix}`, { cause: error })
    }
    await migrate(pool)
    if (group === 'tenants') {
      if (verb === 'create') {
        const name = rest.join(' ')
        if (!name) throw new Error('praxis tenants create needs a name, e.g. praxis tenants create "Acme Corp" [--id acme]')
        const tenant = await createTenant(pool, { name, ...(args.id !== undefined ? { id: args.id } : {}) })
        out(`created tenant ${tenant.id} (${tenant.name})`)
        out(`make it an API key: praxis keys create --tenant ${tenant.id}`)
        return 0
      }
      if (verb === 'list') {
        const tenants = await listTenants(pool)
        if (tenants.length === 0) out('no tenants: praxis tenants create <name>')
        else for (const line of table([['ID', 'NAME', 'ACTIVE KEYS', 'CREATED'], ...tenants.map((t) => [t.id, t.name, String(t.activeKeys), date(t.createdAt)])])) out(line)
        return 0
      }
      throw new Error(`unknown command praxis tenants ${verb ?? ''}: use praxis tenants create <name> [--id ID] | list`)
    }
    if (verb === 'create') {
      if (!args.tenant) throw new Error('praxis keys create needs --tenant ID (see praxis tenants list)')
      const key = await createApiKey(pool, args.tenant, args.label !== undefined ? { label: args.label } : {})
      out(`created API key ${key.id} for tenant ${key.tenantId}${key.label ? ` (${key.label})` : ''}:`)
      out('')
      out(`  ${key.key}`)
      out('')
      out('Store it now: it cannot be shown again (only its hash is kept). Send it as Authorization: Bearer <key>;')
      out(`revoke it with praxis keys revoke ${key.id}.`)
      return 0
    }
    if (verb === 'list') {
      if (!args.tenant) throw new Error('praxis keys list needs --tenant ID (see praxis tenants list)')
      const keys = await listApiKeys(pool, args.tenant)
      if (keys.length === 0) out(`tenant ${args.tenant} has no API keys: praxis keys create --tenant ${args.tenant}`)
      else for (const line of table([['ID', 'LABEL', 'CREATED', 'REVOKED'], ...keys.map((k) => [k.id, k.label ?? '-', date(k.createdAt), date(k.revokedAt)])])) out(line)
      return 0
    }
    if (verb === 'revoke') {
      const id = rest[0]
      if (!id) throw new Error('praxis keys revoke needs a key id (see praxis keys list --tenant ID)')
      const key = await revokeApiKey(pool, id)
      out(key.alreadyRevoked
        ? `API key ${key.id} of tenant ${key.tenantId} was already revoked (${date(key.revokedAt)})`
        : `revoked API key ${key.id} of tenant ${key.tenantId}: requests with it now answer 401`)
      return 0
    }
    throw new Error(`unknown command praxis keys ${verb ?? ''}: use praxis keys create --tenant ID [--label L] | list --tenant ID | revoke <key-id>`)
  } finally {
    await pool.end()
  }
}
