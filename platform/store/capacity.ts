/**
 * Worker capacity, read off the hot path: how deep and how old each pool's queue is (what the
 * supervisor scales on), which pools of a tenant no live worker serves, and the `pool.unserved`
 * timeline entry that says so, written once per (instance, pool).
 *
 * A worker is live while its heartbeat (praxis.workers.heartbeat_at, every lease / 3) is younger
 * than the lease: a killed worker's row stays until a live worker's sweeper deletes it, and with
 * no worker left nothing sweeps, so the heartbeat, not the row, decides.
 */
import type pg from 'pg'
import { rollback } from './database.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/** The pool of child-workflow starts: every worker of the tenant runs it. */
const CHILD_POOL = '@child'

/** The timeline entry kind of a pending invocation on a pool no live worker serves. */
export const UNSERVED_KIND = 'pool.unserved'



/** Of `pools`, those no live worker of `tenantId` serves. */
export async function unservedPools(client: Queryable, tenantId: string, pools: readonly string[], leaseMs: number): Promise<string[]> {
  if (pools.length === 0) return []
  const { rows } = await client.query<{ pool: string }>(
    `select p.pool from unnest($2::text[]) as p(pool)
     where not exists (select 1 from praxis.workers w where w.tenant_id = $1 and w.heartbeat_at > now() - $3 * interval '1 millisecond'
       and (p.pool = any(w.pools) or p.pool = '${CHILD_POOL}'))
     order by p.pool`,
    [tenantId, [...new Set(pools)], leaseMs])
  return rows.map((r) => r.pool)
}

/** A pool an instance waits on with no live worker to serve it. */
export interface UnservedPool {
  pool: string
  /** The function of its oldest pending invocation there, and that invocation. */
  function: string
  invocationId: string
  rule: string
  /** Pending invocations of the instance on the pool. */
  invocations: number
  /** When the oldest of them was made (ISO 8601): the instance has waited on the pool since. */
  since: string
  /** Whether the instance's timeline already says so. */
  recorded: boolean
}

/**
 * The pools `instanceId` has pending invocations on that no live worker of its tenant serves.
 * An invocation on `@child` counts as served by any live worker of the tenant.
 */
export async function findUnserved(client: Queryable, tenantId: string, instanceId: string, leaseMs: number): Promise<UnservedPool[]> {
  const { rows } = await client.query<Omit<UnservedPool, 'since'> & { since: Date }>({
    name: 'praxis_find_unserved',
    text: `select v.pool, (array_agg(v.function order by v.created_at, v.id))[1] as function, (array_agg(v.id::text order by v.created_at, v.id))[1] as "invocationId",
        (array_agg(v.rule order by v.created_at, v.id))[1] as rule, count(*)::int as invocations, min(v.created_at) as since,
        exists (select 1 from praxis.timeline t where t.tenant_id = $1 and t.instance_id = $2 and t.kind = '${UNSERVED_KIND}' and t.data->>'pool' = v.pool) as recorded
      from praxis.invocations v
      where v.tenant_id = $1 and v.instance_id = $2 and v.status = 'pending'
        and not exists (select 1 from praxis.workers w where w.tenant_id = $1 and w.heartbeat_at > now() - $3 * interval '1 millisecond'
          and (v.pool = any(w.pools) or v.pool = '${CHILD_POOL}'))
      group by v.pool
      order by min(v.created_at), v.pool`,
    values: [tenantId, instanceId, leaseMs],
  })
  return rows.map((r) => ({ ...r, since: r.since.toISOString() }))
}

/** What a reader is told of a pool an instance waits on: why, and what to do. */
export function unservedNotice(tenantId: string, u: Pick<UnservedPool, 'pool' | 'since'>): { reason: string; fix: string } {
  const reason = `no worker serves pool ${u.pool} since ${u.since}`
  if (u.pool === CHILD_POOL) return { reason, fix: `child workflows start on any worker of tenant ${tenantId}: start one with \`praxis worker <service-folder> --tenant ${tenantId}\` or \`praxis dev\`` }
  const service = u.pool.split(':')[0]!
  return { reason, fix: `start one with \`praxis worker <${service}-folder> --tenant ${tenantId}\` (or \`praxis pools <${service}-folder> --tenant ${tenantId}\`) or \`praxis dev\`` }
}

/** A pool an instance waits on, as the instance view shows it. */
export interface Waiting { pool: string; function: string; invocations: number; since: string; reason: string; fix: string }

/**
 * The pools a running instance waits on with no live worker (for its view), each said once in its
 * timeline too (`pool.unserved`): one read when there are none or all are said already.
 */
export async function noticeUnserved(pool: pg.Pool, tenantId: string, instanceId: string, leaseMs: number): Promise<Waiting[]> {
  const unserved = await findUnserved(pool, tenantId, instanceId, leaseMs)
  if (unserved.length === 0) return []
  await recordUnserved(pool, tenantId, instanceId, unserved)
  return unserved.map((u) => ({ pool: u.pool, function: u.function, invocations: u.invocations, since: u.since, ...unservedNotice(tenantId, u) }))
}

/**
 * Writes a `pool.unserved` timeline entry for each of `unserved` not recorded yet, once per
 * (instance, pool) however many readers detect it at once: each pool's insert runs under a
 * transaction-scoped advisory lock on (tenant, instance, pool) and only where no such entry
 * exists. `data` carries the pool, function, invocation, since, reason and fix; `rule` is the
 * rule whose call waits. Returns how many entries it wrote.
 */
export async function recordUnserved(pool: pg.Pool, tenantId: string, instanceId: string, unserved: readonly UnservedPool[]): Promise<number> {
  const todo = unserved.filter((u) => !u.recorded).sort((a, b) => (a.pool < b.pool ? -1 : 1))
  if (todo.length === 0) return 0
  const client = await pool.connect()
  let written = 0
  let broken: Error | undefined
  try {
    await client.query('begin')
    for (const u of todo) {
      await client.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [JSON.stringify(['praxis.pool.unserved', tenantId, instanceId, u.pool])])
      const { rowCount } = await client.query(
        `insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
         select i.tenant_id, i.id, i.revision, '${UNSERVED_KIND}', $3, $5::jsonb from praxis.instances i
         where i.tenant_id = $1 and i.id = $2
           and not exists (select 1 from praxis.timeline t where t.tenant_id = $1 and t.instance_id = $2 and t.kind = '${UNSERVED_KIND}' and t.data->>'pool' = $4)`,
        [tenantId, instanceId, u.rule, u.pool, JSON.stringify({ pool: u.pool, function: u.function, invocationId: u.invocationId, since: u.since, ...unservedNotice(tenantId, u) })])
      written += rowCount ?? 0
    }
    await client.query('commit')
  } catch (error) {
    broken = await rollback(client)
    throw error
  } finally {
    client.release(broken)
  }
  return written
}

/** The services of `tenantId` with an active bundle, by name. */
export async function deployedServices(client: Queryable, tenantId: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>('select name from praxis.services where tenant_id = $1 and active_bundle_id is not null order by name', [tenantId])
  return rows.map((r) => r.name)
}
