/**
 * graphile-worker task identifiers, scoped by tenant: the one place they are named, for the SQL
 * that adds jobs (this folder) and for the workers that take them (platform/queue re-exports the
 * functions). Every identifier starts with the tenant whose job it is, so two tenants never share
 * a queue, and a worker, which registers only its own tenant's identifiers, never takes another's.
 *
 *   praxis.invoke.<tenantId>.<pool>    an invocation on a pool (`service:pool`, or `@child`)
 *   praxis.evaluate.<tenantId>         an evaluation of one of the tenant's instances
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

function checkTenant(tenantId: string): string {
  if (typeof tenantId !== 'string' || !QUEUE_TENANT.test(tenantId)) throw new Error(`tenant id ${JSON.stringify(tenantId)} is invalid: lower-case letters, digits, "-" and "_"`)
  return tenantId
}

/** Task of one invocation of `tenantId` on `pool`: `praxis.invoke.<tenantId>.<pool>`. */
export const invokeTask = (tenantId: string, pool: string): string => `${INVOKE}${checkTenant(tenantId)}.${pool}`

/** Task that consumes the inbox of one of `tenantId`'s instances: `praxis.evaluate.<tenantId>`. */
export const evaluateTask = (tenantId: string): string => `${EVALUATE}${checkTenant(tenantId)}`

/** The same names as SQL expressions over a tenant expression (a column or a parameter) and a pool expression. */
export const invokeTaskSql = (tenant: string, pool: string): string => `('${INVOKE}' || ${tenant} || '.' || ${pool})`
export const evaluateTaskSql = (tenant: string): string => `('${EVALUATE}' || ${tenant})`
