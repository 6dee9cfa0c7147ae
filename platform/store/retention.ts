/**
 * Retention: a tenant's finished data is deleted by age, so table sizes stay flat under steady
 * load. Each tenant's workers run `praxis.retention.<tenant>` as a graphile-worker cron job (one
 * job per schedule across all of them: graphile-worker's known_crontabs), which purges in bounded
 * batches, each statement its own short transaction, until done or out of time.
 *
 * What goes, with the platform defaults (platform/config.ts; a tenant's own settings override each):
 *  - an instance completed, failed or cancelled more than `finishedDays` (30) ago (by its
 *    `updated_at`), with all its events, timeline entries and invocations; but never one whose
 *    parent is running or paused, one with a running or paused child, one with a pending
 *    invocation or an unconsumed event: those wait until they have none;
 *  - an event consumed more than `eventsDays` (7) ago, whatever its instance's state (a consumed
 *    event is not read again), except a signal sent with a signalId, kept as long as its instance
 *    so that a retried signal is still answered as a duplicate;
 *  - a timeline entry of a running or paused instance written more than `runningTimelineDays` ago,
 *    only when that is set (off by default: a running instance keeps its whole timeline).
 * Never: a running or paused instance, its invocations (call keys deduplicate calls for the
 * instance's whole life), its unconsumed events.
 *
 * Cost: each batch is one statement on indexes (instances_list, the primary keys, events_instance,
 * events_consumed: 000007_retention.sql). Finished instances are found among those created before
 * the cutoff, so every run also reads the ones it keeps there (long-running instances, mostly),
 * a batch at a time; no index on updated_at, which would make every evaluation's write non-HOT.
 */
import { parseCronItems, type ParsedCronItem } from 'graphile-worker'
import type pg from 'pg'
import type { Logger } from 'pino'
import { DEFAULT_RETENTION, type RetentionPolicy, type RetentionSettings } from '../config.js'
import { PraxisError } from '../errors.js'
import { retentionTask } from './tasks.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/** The keys of a retention policy, as stored in praxis.tenants.retention. */
export const RETENTION_KEYS = ['finishedDays', 'eventsDays', 'runningTimelineDays'] as const satisfies readonly (keyof RetentionPolicy)[]
export type RetentionKey = (typeof RETENTION_KEYS)[number]

/** A tenant's own settings: a key absent takes the default, null keeps that data for ever. */
export type TenantRetention = { [K in RetentionKey]?: number | null }

/** Longest retention one can set: 100 years (the check constraint's bound too). */
export const MAX_RETENTION_DAYS = 36_500

/** Rows deleted by one purge, per table. */
export interface PurgeCounts { instances: number; events: number; timeline: number; invocations: number }

export interface PurgeResult extends PurgeCounts {
  /** Statements that deleted (or looked for) rows, each its own transaction. */
  batches: number
  /** False when the purge stopped on its time budget or a stop request: the next one goes on. */
  complete: boolean
  /** True when another purge of the tenant was running: this one did nothing. */
  skipped: boolean
  ms: number
}

export interface PurgeOptions {
  /** Instances (with their rows), events or timeline entries per statement. Default 1000. */
  batchSize?: number
  /** Stop after this long (checked between statements). Default 60 s. */
  budgetMs?: number
  /** Asked between statements: true stops the purge there (a worker shutting down). */
  shouldStop?: () => boolean
  /** Where the purge logs its counts (info), or how far it got before failing (warn). */
  log?: Pick<Logger, 'info' | 'warn'>
}

const FINISHED = `('completed', 'failed', 'cancelled')`
const LIVE = `('running', 'paused')`
/** Advisory lock class of a tenant's purge (the object is the tenant id's hash); migrate.ts uses the single-key 7_211_001. */
const LOCK_CLASS = 7_211_002
/** A keyset cursor before every instance (no `is null or …` in the statement: its generic plan could not use the index then). */
const START = { at: '-infinity', id: '00000000-0000-0000-0000-000000000000' }
const days = (value: number | null | undefined): string => (value === null || value === undefined ? 'off' : String(value))

/** Whether `value` is a retention in days a tenant or the platform may set. */
export function isRetentionDays(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= MAX_RETENTION_DAYS
}

/** Retention settings: `given` over DEFAULT_RETENTION, key by key (a key given as undefined takes the default). */
export function retentionSettings(given: Partial<RetentionSettings> = {}): RetentionSettings {
  const set = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined)) as Partial<RetentionSettings>
  return { ...DEFAULT_RETENTION, ...set }
}

/** The policy that applies to a tenant: its own settings over the platform defaults, key by key. */
export function resolveRetention(defaults: RetentionPolicy, tenant: TenantRetention | null | undefined): RetentionPolicy {
  const own = tenant ?? {}
  const pick = (key: RetentionKey): number | null => (key in own && own[key] !== undefined ? own[key]! : defaults[key])
  return { finishedDays: pick('finishedDays'), eventsDays: pick('eventsDays'), runningTimelineDays: pick('runningTimelineDays') }
}

/** A tenant's own retention settings (null when it has none); PRX_TENANT_NOT_FOUND for an unknown tenant. */
export async function getTenantRetention(client: Queryable, tenantId: string): Promise<TenantRetention | null> {
  const { rows } = await client.query<{ retention: TenantRetention | null }>('select retention from praxis.tenants where id = $1', [tenantId])
  if (!rows[0]) throw new PraxisError('PRX_TENANT_NOT_FOUND', `no tenant ${JSON.stringify(tenantId)}: see praxis tenants list`)
  return rows[0].retention
}

/**
 * Changes a tenant's own retention settings: a number (days) or null (keep for ever) sets a key,
 * 'default' removes it (the platform default applies again); keys not given are left as they are.
 * Returns the tenant's settings as stored now.
 */
export async function setTenantRetention(client: Queryable, tenantId: string, changes: { [K in RetentionKey]?: number | null | 'default' }): Promise<TenantRetention | null> {
  const set: TenantRetention = {}
  const reset: string[] = []
  for (const [key, value] of Object.entries(changes)) {
    if (!(RETENTION_KEYS as readonly string[]).includes(key)) throw new PraxisError('PRX_BAD_REQUEST', `unknown retention setting ${JSON.stringify(key)}: ${RETENTION_KEYS.join(', ')}`)
    if (value === undefined) continue
    if (value === 'default') reset.push(key)
    else if (value === null || isRetentionDays(value)) set[key as RetentionKey] = value
    else throw new PraxisError('PRX_BAD_REQUEST', `retention ${key} must be a number of days above 0 and at most ${MAX_RETENTION_DAYS}, null (keep for ever) or 'default'; got ${JSON.stringify(value)}`)
  }
  const { rows } = await client.query<{ retention: TenantRetention | null }>(
    `update praxis.tenants set retention = nullif((coalesce(retention, '{}') - $2::text[]) || $3::jsonb, '{}') where id = $1 returning retention`,
    [tenantId, reset, JSON.stringify(set)])
  if (!rows[0]) throw new PraxisError('PRX_TENANT_NOT_FOUND', `no tenant ${JSON.stringify(tenantId)}: see praxis tenants list`)
  return rows[0].retention
}

/**
 * One batch of finished instances: scans the next `$5` instances created before the cutoff (in
 * (created_at, id) order, from the cursor, through instances_list: an instance that finished before
 * the cutoff was created before it), locks those that may go (skipping any another transaction
 * holds) and deletes them with their timeline, events and invocations in this one statement, so an
 * instance never goes half. The foreign keys' cascade then finds nothing left to delete.
 */
const FINISHED_SQL = `
with scanned as (
  select i.id, i.created_at, i.status in ${FINISHED} and i.updated_at < $2::timestamptz as expired from praxis.instances i
  where i.tenant_id = $1 and i.created_at < $2::timestamptz
    and (i.created_at, i.id) > ($3::timestamptz, $4::uuid)
  order by i.created_at, i.id limit $5),
doomed as (
  select i.id from praxis.instances i
  where i.tenant_id = $1 and i.id = any(array(select id from scanned where expired))
    and i.status in ${FINISHED} and i.updated_at < $2::timestamptz
    -- a running or paused parent may still look at its child
    and not exists (select 1 from praxis.instances p where p.tenant_id = $1 and p.id = i.parent_instance_id and p.status in ${LIVE})
    -- a running or paused child still reports to its parent's invocation
    and not exists (select 1 from praxis.instances c where c.tenant_id = $1 and c.parent_instance_id = i.id and c.status in ${LIVE})
    -- work still in flight: a pending invocation's result, an event not yet consumed
    and not exists (select 1 from praxis.invocations v where v.tenant_id = $1 and v.instance_id = i.id and v.status = 'pending')
    and not exists (select 1 from praxis.events e where e.tenant_id = $1 and e.instance_id = i.id and e.consumed_at is null)
  for update of i skip locked),
tl as (delete from praxis.timeline t where t.tenant_id = $1 and t.instance_id in (select id from doomed) returning 1),
ev as (delete from praxis.events e where e.tenant_id = $1 and e.instance_id in (select id from doomed) returning 1),
inv as (delete from praxis.invocations v where v.tenant_id = $1 and v.instance_id in (select id from doomed) returning 1),
gone as (delete from praxis.instances i where i.tenant_id = $1 and i.id in (select id from doomed) returning 1),
last as (select created_at::text as at, id from scanned order by created_at desc, id desc limit 1)
select (select count(*) from gone)::int as instances, (select count(*) from tl)::int as timeline, (select count(*) from ev)::int as events,
  (select count(*) from inv)::int as invocations, (select count(*) from scanned)::int as scanned, (select at from last) as last_at, (select id from last) as last_id`

/** Consumed events by age, oldest first (events_consumed), signals with a signalId excepted. */
const EVENTS_SQL = `
delete from praxis.events e where e.tenant_id = $1 and e.id = any(array(
  select id from praxis.events where tenant_id = $1 and consumed_at is not null and dedupe_key is null and consumed_at < $2::timestamptz
  order by consumed_at limit $3))`

/** The next `$5` running or paused instances created before the cutoff (the others cannot have older entries). */
const LIVE_SQL = `
with scanned as (
  select i.id, i.created_at, i.status from praxis.instances i
  where i.tenant_id = $1 and i.created_at < $2::timestamptz
    and (i.created_at, i.id) > ($3::timestamptz, $4::uuid)
  order by i.created_at, i.id limit $5),
last as (select created_at::text as at, id from scanned order by created_at desc, id desc limit 1)
select coalesce(array_agg(id) filter (where status in ${LIVE}), '{}') as ids, count(*)::int as scanned, (select at from last) as last_at, (select id from last) as last_id from scanned`

/** Timeline entries of those instances written before the cutoff, `$4` at most (timeline_pkey). */
const TIMELINE_SQL = `
delete from praxis.timeline t using (
  select instance_id, id from praxis.timeline where tenant_id = $1 and instance_id = any($2::uuid[]) and at < $3::timestamptz limit $4) old
where t.tenant_id = $1 and t.instance_id = old.instance_id and t.id = old.id
  and exists (select 1 from praxis.instances i where i.tenant_id = $1 and i.id = t.instance_id and i.status in ${LIVE})`

/**
 * Deletes `tenantId`'s data that `policy` says has expired, in batches of `batchSize`, each
 * statement its own transaction, until none is left or the budget runs out (then `complete` is
 * false and the next purge goes on). One purge per tenant at a time (an advisory lock): another
 * one started meanwhile returns at once with `skipped`. Logs its counts at info.
 */
export async function purgeExpired(pool: pg.Pool, tenantId: string, policy: RetentionPolicy, options: PurgeOptions = {}): Promise<PurgeResult> {
  const batchSize = options.batchSize ?? DEFAULT_RETENTION.batchSize
  const budgetMs = options.budgetMs ?? DEFAULT_RETENTION.budgetMs
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`retention batch size must be a positive integer, got ${batchSize}`)
  for (const key of RETENTION_KEYS) {
    if (policy[key] !== null && !isRetentionDays(policy[key])) throw new Error(`retention ${key} must be null or days in (0, ${MAX_RETENTION_DAYS}], got ${policy[key]}`)
  }
  const started = performance.now()
  const result: PurgeResult = { instances: 0, events: 0, timeline: 0, invocations: 0, batches: 0, complete: true, skipped: false, ms: 0 }
  const out = (): boolean => performance.now() - started >= budgetMs || (options.shouldStop?.() ?? false)
  // One connection for the whole purge: it holds the tenant's advisory lock (a session lock, so it
  // spans the batches' transactions). It goes back to the pool as it came (lock released, settings
  // reset), or, after an error, is closed (which drops the lock too).
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    // A purge never waits long for a row lock (instances are skipped when locked; the rest is rows
    // nothing else writes once finished), nor runs one statement long. Its statements are planned
    // once per connection (their generic plans are the index plans the comments above describe).
    await client.query("select set_config('lock_timeout', '5s', false), set_config('statement_timeout', '120s', false), set_config('plan_cache_mode', 'force_generic_plan', false)")
    const { rows: [lock] } = await client.query<{ ok: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as ok', [LOCK_CLASS, tenantId])
    if (!lock!.ok) {
      result.skipped = true
      options.log?.info({ tenantId }, 'retention purge skipped: another purge of this tenant is running')
      return result
    }
    // The cutoffs come from the database's clock, once, at full precision.
    const { rows: [cut] } = await client.query<{ finished: string | null; events: string | null; timeline: string | null }>(
      `select (now() - $1::float8 * interval '1 day')::text as finished, (now() - $2::float8 * interval '1 day')::text as events,
         (now() - $3::float8 * interval '1 day')::text as timeline`, [policy.finishedDays, policy.eventsDays, policy.runningTimelineDays])

    if (cut!.finished !== null) {
      let cursor = START
      for (;;) {
        if (out()) { result.complete = false; break }
        const { rows: [r] } = await client.query<PurgeCounts & { scanned: number; last_at: string | null; last_id: string | null }>(
          { name: 'praxis_retention_finished', text: FINISHED_SQL, values: [tenantId, cut!.finished, cursor.at, cursor.id, batchSize] })
        result.batches++
        result.instances += r!.instances
        result.timeline += r!.timeline
        result.events += r!.events
        result.invocations += r!.invocations
        if (r!.scanned < batchSize) break
        cursor = { at: r!.last_at!, id: r!.last_id! }
      }
    }

    if (cut!.events !== null && result.complete) {
      for (;;) {
        if (out()) { result.complete = false; break }
        const { rowCount } = await client.query({ name: 'praxis_retention_events', text: EVENTS_SQL, values: [tenantId, cut!.events, batchSize] })
        result.batches++
        result.events += rowCount ?? 0
        if ((rowCount ?? 0) < batchSize) break
      }
    }

    if (cut!.timeline !== null && result.complete) {
      let cursor = START
      scan: for (;;) {
        if (out()) { result.complete = false; break }
        const { rows: [live] } = await client.query<{ ids: string[]; scanned: number; last_at: string | null; last_id: string | null }>(
          { name: 'praxis_retention_live', text: LIVE_SQL, values: [tenantId, cut!.timeline, cursor.at, cursor.id, batchSize] })
        result.batches++
        while (live!.ids.length > 0) {
          if (out()) { result.complete = false; break scan }
          const { rowCount } = await client.query({ name: 'praxis_retention_timeline', text: TIMELINE_SQL, values: [tenantId, live!.ids, cut!.timeline, batchSize] })
          result.batches++
          result.timeline += rowCount ?? 0
          if ((rowCount ?? 0) < batchSize) break
        }
        if (live!.scanned < batchSize) break
        cursor = { at: live!.last_at!, id: live!.last_id! }
      }
    }
    await client.query('select pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, tenantId])
  } catch (error) {
    broken = error as Error
    // What was deleted stays deleted (each batch committed): say how far it got.
    options.log?.warn({ tenantId, instances: result.instances, events: result.events, timeline: result.timeline, invocations: result.invocations, batches: result.batches, error: broken.message }, 'retention purge failed; the next run goes on')
    throw error
  } finally {
    if (!broken) await client.query('reset lock_timeout; reset statement_timeout; reset plan_cache_mode').catch((error: Error) => { broken = error })
    client.release(broken)
  }
  result.ms = Math.round(performance.now() - started)
  options.log?.info({
    tenantId, instances: result.instances, events: result.events, timeline: result.timeline, invocations: result.invocations,
    batches: result.batches, complete: result.complete, ms: result.ms,
    finishedDays: days(policy.finishedDays), eventsDays: days(policy.eventsDays), runningTimelineDays: days(policy.runningTimelineDays),
  }, result.complete ? 'retention purge done' : 'retention purge stopped (time budget or shutdown); the next run goes on')
  return result
}

/**
 * What a tenant's retention job runs: reads the tenant's own settings (changes apply from the next
 * run, with no restart), resolves them over `settings`, and purges.
 */
export async function purgeTenant(pool: pg.Pool, tenantId: string, settings: RetentionSettings, options: Pick<PurgeOptions, 'log' | 'shouldStop'> = {}): Promise<PurgeResult> {
  const policy = resolveRetention(settings, await getTenantRetention(pool, tenantId))
  return purgeExpired(pool, tenantId, policy, { ...options, batchSize: settings.batchSize, budgetMs: settings.budgetMs })
}

/**
 * The cron item of `tenantId`'s retention job, for graphile-worker's `run({ parsedCronItems })`
 * (none when `schedule` is null). Every worker of the tenant lists it; graphile-worker schedules
 * each matching minute once across them (known_crontabs). Missed runs (all workers down) are
 * backfilled for an hour after a worker starts; the job key folds them, and any run still queued,
 * into one job. Its priority puts it before the tenant's function jobs (which fair share gives
 * run_at values in the past), so a busy queue never starves it; it takes one slot for at most the
 * purge budget.
 */
export function retentionCronItems(tenantId: string, settings: Pick<RetentionSettings, 'schedule'>): ParsedCronItem[] {
  if (settings.schedule === null) return []
  const task = retentionTask(tenantId)
  try {
    return parseCronItems([{
      task,
      identifier: task,
      match: settings.schedule,
      options: { backfillPeriod: 60 * 60 * 1000, maxAttempts: 3, jobKey: task, jobKeyMode: 'replace', priority: -32768 },
    }])
  } catch (error) {
    throw new Error(`retention schedule ${JSON.stringify(settings.schedule)} is not a cron pattern (PRAXIS_RETENTION_SCHEDULE): ${(error as Error).message}`, { cause: error })
  }
}
