/** Invocation rows: what a worker reads before running a function and records after. */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import type { LockedInstance } from './instances.js'
import { invokeTaskSql } from './tasks.js'

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
 * Records a failed attempt and schedules the next one after `delayMs`, in one statement: the
 * attempt goes into the instance's timeline (`invocation.retrying`), and the job to the queue of
 * the invocation row's own tenant and pool (not the job payload's).
 */
export async function scheduleRetry(client: Queryable, job: InvocationJob, attempt: number, failure: Json, delayMs: number): Promise<boolean> {
  const { rows } = await client.query({
    name: 'praxis_schedule_retry_v2',
    text: `with inv as (update praxis.invocations set attempts = greatest(attempts, $3), failure = $4 where tenant_id = $1 and id = $2 and status = 'pending' returning tenant_id, instance_id, pool, rule, function),
           attempt as (insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
             select inv.tenant_id, inv.instance_id, i.revision, 'invocation.retrying', inv.rule,
               jsonb_build_object('invocationId', $2::text, 'function', inv.function, 'attempt', $3::int, 'failure', $4::jsonb, 'retryInMs', $5::int)
             from inv join praxis.instances i on i.tenant_id = inv.tenant_id and i.id = inv.instance_id)
           select graphile_worker.add_job(${invokeTaskSql('inv.tenant_id', 'inv.pool')}, $7::json, run_at := now() + $5 * interval '1 millisecond', max_attempts := 25, priority := $6::int)
           from inv`,
    values: [job.tenant_id, job.id, attempt, JSON.stringify(failure), delayMs, Math.max(-32768, Math.min(32767, -job.priority)), JSON.stringify({ ...job, attempts: attempt, snapshot: null })],
  })
  return rows.length > 0
}
