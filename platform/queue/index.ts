/**
 * platform/queue: the graphile-worker glue. Jobs are added in SQL inside the evaluation
 * transaction (store/instances.ts, store/events.ts); this module names the tasks and payloads.
 */

/** Task of one function invocation on a pool: `praxis.invoke.<pool>`. Payload: `{ t: tenantId, i: invocationId }`. */
export const invokeTask = (pool: string): string => `praxis.invoke.${pool}`

/** Task that consumes an instance's inbox. Payload: `{ t: tenantId, i: instanceId }`; keyed by instance. */
export const EVALUATE_TASK = 'praxis.evaluate'

export interface JobPayload { t: string; i: string }

/** Validates a job payload (jobs are data in a table anyone with access can write). */
export function parsePayload(payload: unknown): JobPayload {
  const p = payload as Partial<JobPayload> | null
  if (!p || typeof p.t !== 'string' || typeof p.i !== 'string') throw new Error(`malformed praxis job payload: ${JSON.stringify(payload)}`)
  return { t: p.t, i: p.i }
}

/** Delay before retry `attempt` (1-based count of failures so far), with ±20% jitter. */
export function backoffDelay(retry: { backoff: 'exponential' | 'fixed'; initialDelayMs: number; maxDelayMs: number }, attempt: number, random: () => number = Math.random): number {
  const base = retry.backoff === 'fixed' ? retry.initialDelayMs : retry.initialDelayMs * 2 ** Math.max(0, attempt - 1)
  const capped = Math.min(base, retry.maxDelayMs)
  return Math.round(capped * (0.8 + 0.4 * random()))
}
