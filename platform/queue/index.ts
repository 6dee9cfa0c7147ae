/**
 * platform/queue: the one owner of graphile-worker's SQL. The step write (the store's parts and
 * the jobs it adds), the inbox's evaluate jobs, retries, fair-share placement, completion,
 * hand-back and release of locks, and the check of graphile-worker's schema version; the task
 * names and payloads the workers take.
 */
export * from './jobs.js'
export * from './step.js'
export * from './inbox.js'
export * from './retry.js'
export * from './reprocess.js'
export * from './depth.js'
export * from './metrics.js'
export { statement, type Statement, type Part, type Params, type ParamTypes } from './statement.js'

import { MAX_BATCH_SIZE } from '../../sdk/index.js'
import type { InvocationJob } from '../store/index.js'

/**
 * Task names, scoped by tenant (named once, in store/tasks.ts, beside the SQL that adds jobs):
 * `invokeTask(tenantId, pool)` is `praxis.invoke.<tenantId>.<pool>`, one function invocation on a
 * pool (`service:pool`, or `@child` for child-workflow starts), payload an `InvocationJob`;
 * `evaluateTask(tenantId)` is `praxis.evaluate.<tenantId>`, consuming an instance's inbox, payload
 * `{ t: tenantId, i: instanceId }` (not keyed: see store/events.ts).
 */
export { dueTask, evaluateTask, invokeTask, reprocessTask } from '../store/index.js'

export interface JobPayload { t: string; i: string }

/** Validates a job payload (jobs are data in a table anyone with access can write). */
export function parsePayload(payload: unknown): JobPayload {
  const p = payload as Partial<JobPayload> | null
  if (!p || typeof p.t !== 'string' || typeof p.i !== 'string') throw new Error(`malformed praxis job payload: ${JSON.stringify(payload)}`)
  return { t: p.t, i: p.i }
}

/**
 * A due job's payload: a retry come due, or (with `job`) a deferred call's deadline come close or
 * (`requeue`) a job that failed outside the function come due again.
 */
export type DuePayload = JobPayload & ({ job?: undefined } | { job: string; priority: number; requeue: boolean })

/** Validates a due job's payload. */
export function parseDuePayload(payload: unknown): DuePayload {
  const base = parsePayload(payload)
  const p = payload as { job?: unknown; priority?: unknown }
  if (p.job === undefined) return base
  if (typeof p.job !== 'string' || !/^\d{1,19}$/.test(p.job) || !Number.isInteger(p.priority)) throw new Error(`malformed praxis due job payload: ${JSON.stringify(payload)}`)
  return { ...base, job: p.job, priority: p.priority as number, requeue: (p as { requeue?: unknown }).requeue === true }
}

/**
 * Validates an invoke job's payload and returns its invocations: one, or a micro-batch's (the
 * payload's `items`, each with its own id, input and key, sharing the rest).
 */
export function parseInvocations(payload: unknown): InvocationJob[] {
  const first = parseInvocationJob(payload)
  const items = (payload as { items?: unknown }).items
  if (items === undefined || items === null) return [first]
  const ok = Array.isArray(items) && items.length >= 1 && items.length <= MAX_BATCH_SIZE
    && items.every((i: { id?: unknown; call_key?: unknown } | null) => typeof i === 'object' && i !== null && typeof i.id === 'string' && (i.call_key === null || typeof i.call_key === 'string'))
  if (!ok) throw new Error(`malformed praxis invoke job payload: its items are not a list of 1 to ${MAX_BATCH_SIZE} { id, input, call_key }`)
  return (items as { id: string; input: InvocationJob['input']; call_key: string | null }[]).map((i) => ({ ...first, id: i.id, input: i.input ?? null, call_key: i.call_key }))
}

/** Validates an invoke job's payload (jobs are data in a table anyone with access can write). */
export function parseInvocationJob(payload: unknown): InvocationJob {
  const p = payload as Partial<InvocationJob> | null
  const ok = p !== null && typeof p === 'object'
    && typeof p.tenant_id === 'string' && typeof p.id === 'string' && typeof p.instance_id === 'string'
    && typeof p.rule === 'string' && typeof p.function === 'string' && typeof p.pool === 'string' && typeof p.priority === 'number'
    && typeof p.timeout_ms === 'number' && typeof p.attempts === 'number'
    && typeof p.retry === 'object' && p.retry !== null && typeof p.retry.attempts === 'number'
  if (!ok) throw new Error(`malformed praxis invoke job payload: ${JSON.stringify(payload)}`)
  const snap = p.snapshot
  const usable = typeof snap === 'object' && snap !== null && typeof snap.revision === 'number' && typeof snap.facts === 'object' && snap.facts !== null && typeof snap.facts_version === 'number'
    && typeof snap.rule_state === 'object' && typeof snap.active_bundle_id === 'string' && typeof snap.workflow === 'string'
  return { ...(p as InvocationJob), snapshot: usable ? snap : null }
}

/** Delay before retry `attempt` (1-based count of failures so far), with ±20% jitter. */
export function backoffDelay(retry: { backoff: 'exponential' | 'fixed'; initialDelayMs: number; maxDelayMs: number }, attempt: number, random: () => number = Math.random): number {
  const base = retry.backoff === 'fixed' ? retry.initialDelayMs : retry.initialDelayMs * 2 ** Math.max(0, attempt - 1)
  const capped = Math.min(base, retry.maxDelayMs)
  return Math.round(capped * (0.8 + 0.4 * random()))
}
