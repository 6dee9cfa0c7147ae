/**
 * graphile-worker task identifiers, scoped by tenant: the one place they are named, for the SQL
 * that adds jobs (this folder) and for the workers that take them (platform/queue re-exports the
 * functions). Every identifier starts with the tenant whose job it is, so two tenants never share
 * a queue, and a worker, which registers only its own tenant's identifiers, never takes another's.
 *
 *   praxis.invoke.<tenantId>.<pool>    an invocation on a pool (`service:pool`, or `@child`)
 *   praxis.evaluate.<tenantId>         an evaluation of one of the tenant's instances
 *   praxis.retention.<tenantId>        the tenant's retention purge (a cron job: store/retention.ts)
 *   praxis.due.<tenantId>              a retry come due: adds the invocation's job at its fair place
 *   praxis.reprocess.<tenantId>        a deploy's walk over old work (queue/reprocess.ts)
 *
 * A tenant id has no `.` (see QUEUE_TENANT), so the tenant part of an identifier is unambiguous.
 * The SQL composes the tenant part from the instance's own tenant (a column or the parameter the
 * instance was read with), never from a job payload or a string rule code wrote.
 */

/**
 * Every id praxis.tenants holds: new ones are slugs (TENANT_ID, 000004), older ones what 000001
 * allowed; never a `.` or a `:`.
 */
const QUEUE_TENANT = /^[a-z0-9][a-z0-9_-]{0,62}$/

const INVOKE = 'praxis.invoke.'
const EVALUATE = 'praxis.evaluate.'
const RETENTION = 'praxis.retention.'
const DUE = 'praxis.due.'
const REPROCESS = 'praxis.reprocess.'

function checkTenant(tenantId: string): string {
  if (typeof tenantId !== 'string' || !QUEUE_TENANT.test(tenantId)) throw new Error(`tenant id ${JSON.stringify(tenantId)} is invalid: lower-case letters, digits, "-" and "_"`)
  return tenantId
}

/** Task of one invocation of `tenantId` on `pool`: `praxis.invoke.<tenantId>.<pool>`. */
export const invokeTask = (tenantId: string, pool: string): string => `${INVOKE}${checkTenant(tenantId)}.${pool}`

/** Task that consumes the inbox of one of `tenantId`'s instances: `praxis.evaluate.<tenantId>`. */
export const evaluateTask = (tenantId: string): string => `${EVALUATE}${checkTenant(tenantId)}`

/** Task of a delayed invocation (a retry) come due: `praxis.due.<tenantId>`. */
export const dueTask = (tenantId: string): string => `${DUE}${checkTenant(tenantId)}`

/** Task of a deploy's walk over the tenant's old work: `praxis.reprocess.<tenantId>`. */
export const reprocessTask = (tenantId: string): string => `${REPROCESS}${checkTenant(tenantId)}`

/** A tenant-scoped praxis task: the invoke queue of a pool, or one of the tenant's own queues. */
export type ParsedTask = { kind: 'invoke'; tenantId: string; pool: string } | { kind: 'evaluate' | 'due' | 'retention' | 'reprocess'; tenantId: string; pool: null }

/**
 * The kind, tenant and pool a task identifier names, or null when it is not a tenant-scoped praxis
 * task (another application's task, or an unscoped one from before 000005). The tenant part ends
 * at the first `.` (a tenant id has none); an invoke task's pool is the rest (`service:pool`,
 * `@child`; a pool name may hold dots).
 */
export function parseTask(identifier: string): ParsedTask | null {
  if (identifier.startsWith(INVOKE)) {
    const rest = identifier.slice(INVOKE.length)
    const dot = rest.indexOf('.')
    const tenantId = rest.slice(0, dot)
    const pool = rest.slice(dot + 1)
    return dot > 0 && QUEUE_TENANT.test(tenantId) && pool.length > 0 ? { kind: 'invoke', tenantId, pool } : null
  }
  for (const [prefix, kind] of [[EVALUATE, 'evaluate'], [DUE, 'due'], [RETENTION, 'retention'], [REPROCESS, 'reprocess']] as const) {
    if (!identifier.startsWith(prefix)) continue
    const tenantId = identifier.slice(prefix.length)
    return QUEUE_TENANT.test(tenantId) ? { kind, tenantId, pool: null } : null
  }
  return null
}

/** Task that purges `tenantId`'s expired data (retention, a cron job): `praxis.retention.<tenantId>`. */
export const retentionTask = (tenantId: string): string => `${RETENTION}${checkTenant(tenantId)}`

/** The same names as SQL expressions over a tenant expression (a column or a parameter) and a pool expression. */
export const invokeTaskSql = (tenant: string, pool: string): string => `('${INVOKE}' || ${tenant} || '.' || ${pool})`
export const evaluateTaskSql = (tenant: string): string => `('${EVALUATE}' || ${tenant})`
export const dueTaskSql = (tenant: string): string => `('${DUE}' || ${tenant})`
export const reprocessTaskSql = (tenant: string): string => `('${REPROCESS}' || ${tenant})`
