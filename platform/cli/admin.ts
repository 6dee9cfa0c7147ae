/**
 * `praxis tenants …` and `praxis keys …`: administration straight on the database (DATABASE_URL,
 * else the embedded PostgreSQL of a running `praxis dev`), never through the API, whose keys are
 * per tenant. Secrets are printed once, when a key is made.
 */
import type pg from 'pg'
import type { Config } from '../config.js'
import { PraxisError } from '../errors.js'
import {
  createApiKey, createTenant, getTenantRetention, isRetentionDays, listApiKeys, listTenants, MAX_RETENTION_DAYS, migrate, purgeExpired, resolveRetention,
  revokeApiKey, setTenantRetention, type RetentionKey, type TenantRetention,
} from '../store/index.js'
import { openCliDatabase } from './database.js'

export interface AdminArgs {
  positionals: string[]; id?: string | undefined; tenant?: string | undefined; label?: string | undefined
  /** praxis tenants retention: days, `off` or `default` per setting, and --purge. */
  finishedDays?: string | undefined; eventsDays?: string | undefined; runningTimelineDays?: string | undefined; purge?: boolean | undefined
}

/** The retention settings as `praxis tenants retention` names them: flag and what it keeps. */
const RETENTION_FLAGS: readonly (readonly [RetentionKey, string, string])[] = [
  ['finishedDays', 'finished-days', 'finished instances, with their events, timeline, invocations'],
  ['eventsDays', 'events-days', 'consumed events'],
  ['runningTimelineDays', 'running-timeline-days', 'timeline entries of running instances'],
]

/** A retention flag's value: days (fractions allowed), `off` (keep for ever) or `default` (the platform's). */
function retentionValue(flag: string, text: string): number | null | 'default' {
  if (text === 'off') return null
  if (text === 'default') return 'default'
  const days = text.trim() === '' ? NaN : Number(text)
  if (!isRetentionDays(days)) throw new PraxisError('PRX_BAD_REQUEST', `--${flag} ${JSON.stringify(text)}: give days (above 0, at most ${MAX_RETENTION_DAYS}, fractions allowed), off (keep for ever) or default (the platform's)`)
  return days
}

const shownDays = (value: number | null | undefined): string => (value === undefined ? '-' : value === null ? 'off' : String(value))

/** `praxis tenants retention <tenant> [--finished-days N|off|default] … [--purge]`. */
async function tenantRetention(pool: pg.Pool, config: Config, tenantId: string | undefined, args: AdminArgs, out: (line: string) => void): Promise<number> {
  if (!tenantId) throw new Error('praxis tenants retention needs a tenant id, e.g. praxis tenants retention acme [--finished-days 14] [--events-days 3] [--running-timeline-days off] [--purge]')
  const given = { finishedDays: args.finishedDays, eventsDays: args.eventsDays, runningTimelineDays: args.runningTimelineDays }
  const changes = Object.fromEntries(RETENTION_FLAGS.flatMap(([key, flag]) => (given[key] === undefined ? [] : [[key, retentionValue(flag, given[key])]])))
  let own: TenantRetention | null
  if (Object.keys(changes).length > 0) {
    own = await setTenantRetention(pool, tenantId, changes)
    out(`updated the retention of tenant ${tenantId}; its workers apply it from their next purge`)
  } else own = await getTenantRetention(pool, tenantId)
  const policy = resolveRetention(config.retention, own)
  out(`retention of tenant ${tenantId}, in days (off: kept for ever; -: the default applies):`)
  for (const line of table([['SETTING', 'KEEPS', 'TENANT', 'DEFAULT', 'APPLIES'], ...RETENTION_FLAGS.map(([key, flag, what]) => [`--${flag}`, what, shownDays(own?.[key]), shownDays(config.retention[key]), shownDays(policy[key])])])) out(line)
  out(`defaults as this environment sets them (PRAXIS_RETAIN_*); the tenant's workers purge with theirs, on the schedule ${config.retention.schedule ?? 'off'} (PRAXIS_RETENTION_SCHEDULE)`)
  if (args.purge) {
    const r = await purgeExpired(pool, tenantId, policy, { batchSize: config.retention.batchSize, budgetMs: config.retention.budgetMs })
    if (r.skipped) out('purge skipped: another purge of this tenant is running (a worker\'s retention job); try again later')
    else out(`purged ${r.instances} instances, ${r.events} events, ${r.timeline} timeline entries, ${r.invocations} invocations in ${r.batches} batches (${r.ms} ms)${r.complete ? '' : '; stopped at PRAXIS_RETENTION_BUDGET_MS, run it again to go on'}`)
  }
  return 0
}


const date = (d: Date | null): string => (d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '-')

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd())
}

/** Runs `praxis <group> <verb> …`; returns the exit code. */
export async function runAdmin(config: Config, group: 'tenants' | 'keys', args: AdminArgs, out: (line: string) => void): Promise<number> {
  const [verb, ...rest] = args.positionals
  const pool = await openCliDatabase(config, `praxis ${group}`, 2)
  try {
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
      if (verb === 'retention') return await tenantRetention(pool, config, rest[0], args, out)
      throw new Error(`unknown command praxis tenants ${verb ?? ''}: use praxis tenants create <name> [--id ID] | list | retention <tenant> [--finished-days N] [--events-days N] [--running-timeline-days N] [--purge]`)
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
