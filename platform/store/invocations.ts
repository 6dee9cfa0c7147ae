/** Invocation rows: what a worker reads before running a function and records after. */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import type { LockedInstance } from './instances.js'

type Queryable = Pick<pg.PoolClient, 'query'>

export interface InvocationRow {
  tenant_id: string
  id: string
  instance_id: string
  rule: string
  function: string
  pool: string
  input: Json
  call_key: string | null
  priority: number
  retry: { attempts: number; backoff: 'exponential' | 'fixed'; initialDelayMs: number; maxDelayMs: number }
  timeout_ms: number
  status: 'pending' | 'succeeded' | 'failed' | 'cancelled'
  attempts: number
  output: Json | null
  failure: Json | null
}

export async function getInvocations(client: Queryable, tenantId: string, ids: string[]): Promise<Map<string, InvocationRow>> {
  const { rows } = await client.query<InvocationRow>('select * from praxis.invocations where tenant_id = $1 and id = any($2::uuid[])', [tenantId, ids])
  return new Map(rows.map((r) => [r.id, r]))
}

/**
 * Moves a pending invocation to its final state. Returns null when it was already final: the
 * function ran twice (at-least-once execution), and this second result must not react again.
 */
export async function finishInvocation(client: Queryable, tenantId: string, id: string, result: { status: 'succeeded'; output: Json; attempts: number } | { status: 'failed'; failure: Json; attempts: number }): Promise<InvocationRow | null> {
  const { rows } = await client.query<InvocationRow>({
    name: 'praxis_finish_invocation',
    text: `update praxis.invocations set status = $3, output = $4, failure = $5, attempts = greatest(attempts, $6), finished_at = now()
           where tenant_id = $1 and id = $2 and status = 'pending' returning *`,
    values: [tenantId, id, result.status, result.status === 'succeeded' ? JSON.stringify(result.output) : null, result.status === 'failed' ? JSON.stringify(result.failure) : null, result.attempts],
  })
  return rows[0] ?? null
}

/**
 * What an invoke job carries: everything a worker needs to run the function, so it reads nothing
 * before running it. `attempts` counts the attempts made before this job.
 */
export type InvocationJob = Pick<InvocationRow, 'tenant_id' | 'id' | 'instance_id' | 'rule' | 'function' | 'pool' | 'input' | 'call_key' | 'priority' | 'retry' | 'timeout_ms' | 'attempts'> & {
  /** The instance as the evaluation that made the call left it (absent when its facts are large). */
  snapshot?: Omit<LockedInstance, 'tenant_id' | 'id' | 'pending'> | null
}

/**
 * Records attempts of a pending invocation that were lost (their worker stopped or crashed while
 * running them, or the job failed before the function ran): a timeline entry each, and the count.
 * `lost` are the 1-based attempt numbers.
 */
export async function recordLostAttempts(client: Queryable, tenantId: string, invocationId: string, lost: number[], reason: string): Promise<void> {
  if (lost.length === 0) return
  await client.query({
    name: 'praxis_record_lost_attempts',
    text: `with inv as (update praxis.invocations set attempts = greatest(attempts, (select max(n) from unnest($3::int[]) as n)) where tenant_id = $1 and id = $2 and status = 'pending' returning tenant_id, instance_id, rule, function)
      insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
      select inv.tenant_id, inv.instance_id, i.revision, 'invocation.lost', inv.rule,
        jsonb_build_object('invocationId', $2::text, 'function', inv.function, 'attempt', a.n, 'failure', jsonb_build_object('kind', 'lost', 'message', $4::text, 'attempts', a.n))
      from inv join praxis.instances i on i.tenant_id = inv.tenant_id and i.id = inv.instance_id, unnest($3::int[]) as a(n)`,
    values: [tenantId, invocationId, lost, reason],
  })
}
