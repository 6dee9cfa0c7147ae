/**
 * Delayed invocations. A job's run_at is its fair-share place in the queue, not a time (see
 * jobs.ts), so a retry is two jobs: a small due job at the wall-clock time the retry is due (at
 * the highest priority, so it runs the moment it is due whatever the backlog), which then adds the
 * invocation's job at its flow's fair place. Placed at its due time directly, a retry would sort
 * behind the whole virtual-time backlog.
 */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import { dueTaskSql, type InvocationJob } from '../store/index.js'
import { DEFERRED_PRIORITY, fairParts, invokeTaskSql, jobFlags, jobPriority, wakeWorkers } from './jobs.js'
import { statement, type Part } from './statement.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/**
 * Records a failed attempt and schedules the next one after `delayMs`, in one statement: the
 * attempt goes into the instance's timeline (`invocation.retrying`), and a due job to the queue
 * of the invocation row's own tenant (not the job payload's). False when the invocation was no
 * longer pending.
 */
export async function scheduleRetry(client: Queryable, job: InvocationJob, attempt: number, failure: Json, delayMs: number): Promise<boolean> {
  const { rows } = await client.query({
    name: 'praxis_schedule_retry_v3',
    text: `with inv as (update praxis.invocations set attempts = greatest(attempts, $3), failure = $4 where tenant_id = $1 and id = $2 and status = 'pending' returning tenant_id, instance_id, pool, rule, function),
           attempt as (insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
             select inv.tenant_id, inv.instance_id, i.revision, 'invocation.retrying', inv.rule,
               jsonb_build_object('invocationId', $2::text, 'function', inv.function, 'attempt', $3::int, 'failure', $4::jsonb, 'retryInMs', $5::int)
             from inv join praxis.instances i on i.tenant_id = inv.tenant_id and i.id = inv.instance_id)
           select graphile_worker.add_job(${dueTaskSql('inv.tenant_id')}, json_build_object('t', inv.tenant_id, 'i', $2::text), run_at := now() + $5 * interval '1 millisecond', max_attempts := 25, priority := -32768)
           from inv`,
    values: [job.tenant_id, job.id, attempt, JSON.stringify(failure), delayMs],
  })
  return rows.length > 0
}

const ENQUEUE_PARAMS = { tenant: 'text', invocation: 'uuid' } as const
type P = typeof ENQUEUE_PARAMS

const ENQUEUE_PARTS: Part<P>[] = [
  ['inv', (p) => `
  select v.id, 1 as ord, v.pool, v.priority, s.service || coalesce('/' || v.fairness_key, '') as flow,
    json_build_object('tenant_id', v.tenant_id, 'id', v.id, 'instance_id', v.instance_id, 'rule', v.rule, 'function', v.function, 'pool', v.pool, 'input', v.input,
      'call_key', v.call_key, 'priority', v.priority, 'retry', v.retry, 'timeout_ms', v.timeout_ms, 'attempts', v.attempts) as payload
  from praxis.invocations v join praxis.instances s on s.tenant_id = v.tenant_id and s.id = v.instance_id
  where v.tenant_id = ${p.tenant} and v.id = ${p.invocation} and v.status = 'pending'`],
  ...fairParts<P>((p) => p.tenant, 'inv'),
  ['jobs', (p) => `
  insert into graphile_worker._private_jobs (task_id, payload, priority, run_at, flags)
  select t.id, inv.payload, ${jobPriority('inv.priority')}, placed.run_at, ${jobFlags('inv.pool')}
  from inv join graphile_worker._private_tasks t on t.identifier = ${invokeTaskSql(p.tenant, 'inv.pool')} join placed on placed.id = inv.id
  returning id`],
]

const ENQUEUE = statement('praxis_enqueue_due', ENQUEUE_PARAMS, ENQUEUE_PARTS, () => `select (select count(*) from inv)::int as pending, (select count(*) from jobs)::int as jobs`)

/**
 * A due job's work: adds a pending invocation's job at its flow's fair place and wakes the
 * workers. 'done' when the invocation is no longer pending (nothing to run).
 */
export async function enqueueDue(pool: pg.Pool, tenantId: string, invocationId: string): Promise<'queued' | 'done'> {
  const { rows } = await pool.query<{ pending: number; jobs: number }>({ name: ENQUEUE.name, text: ENQUEUE.text, values: ENQUEUE.values({ tenant: tenantId, invocation: invocationId }) })
  const { pending, jobs } = rows[0]!
  if (pending === 0) return 'done'
  if (jobs === 0) throw new Error(`invocation ${invocationId} is pending but its pool's queue has no task row: run the step that called it again`)
  await wakeWorkers(pool)
  return 'queued'
}

/**
 * Raises a waiting job of `tenantId`'s invoke queues to `priority` at the head of the tenant's fair
 * queue, and wakes the workers. For a deferred call's job when its deadline comes close (it has
 * waited its turn already: placed by its flow's virtual time, it would sort behind every call its
 * flow made meanwhile), and for a job that failed outside the function when its delay is over
 * (graphile-worker's own retry puts it at a wall-clock time, behind the whole virtual-time
 * backlog). 'done' when the job is gone (it ran: a deferred call found idle capacity) or is not
 * the tenant's; 'locked' when it is still locked (a worker is running it, or has not yet handed it
 * back).
 */
export async function promoteJob(pool: pg.Pool, tenantId: string, jobId: string, priority: number): Promise<'promoted' | 'locked' | 'done'> {
  const { rows } = await pool.query<{ locked: boolean; promoted: boolean }>(
    `with job as (
       select j.id, j.locked_at is not null as locked from graphile_worker._private_jobs j
       where j.id = $2 and j.task_id in (select t.id from graphile_worker._private_tasks t where left(t.identifier, length(${invokeTaskSql('$1::text', "''")})) = ${invokeTaskSql('$1::text', "''")})),
     up as (
       update graphile_worker._private_jobs j set priority = least(greatest($3::int, -32768), ${DEFERRED_PRIORITY - 1}), run_at = praxis.fair_now($1)
       from job where j.id = job.id and not job.locked returning j.id)
     select job.locked, exists (select 1 from up) as promoted from job`,
    [tenantId, jobId, priority])
  const row = rows[0]
  if (!row) return 'done'
  if (row.promoted) await wakeWorkers(pool)
  return row.promoted ? 'promoted' : 'locked'
}

/**
 * A job failed outside the function (graphile-worker retries it): a due job puts it back at the
 * head of the tenant's fair queue after `delayMs` (the invocation's retry policy's delay), instead
 * of graphile-worker's wall-clock backoff of seconds to hours behind every job in the backlog.
 */
export async function requeueWhenDue(pool: pg.Pool, tenantId: string, job: { id: string; priority: number }, invocationId: string, delayMs: number): Promise<void> {
  await pool.query(
    `select graphile_worker.add_job(${dueTaskSql('$1::text')}, json_build_object('t', $1::text, 'i', $2::text, 'job', $3::text, 'priority', $4::int, 'requeue', true),
       run_at := now() + $5 * interval '1 millisecond', max_attempts := 25, priority := -32768)`,
    [tenantId, invocationId, job.id, job.priority, Math.max(50, delayMs)])
}
