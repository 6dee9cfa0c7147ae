/**
 * The step write: one statement that records an evaluation (platform/store's parts) and adds the
 * jobs of the calls it made, fairly placed, with one NOTIFY for a whole fan-out (this module's).
 */
import pg from 'pg'
import { STEP_FIGURES, STEP_PARAMS, STEP_PARTS, stepValues, type EvaluationWrite, type FinishedResult } from '../store/index.js'
import { dueTaskSql } from '../store/index.js'
import { addEvaluateJobSql, DEFERRED_PRIORITY, fairParts, invokeTaskSql, jobFlags, jobPriority, promoteAtSql } from './jobs.js'
import { statement, type Part } from './statement.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/**
 * The optimistic fused step's guard: the revision read, and the invocation results to record with
 * the write (one, or a micro-batch's: all of them, or the write does not apply).
 */
export interface WriteGuard {
  expectedRevision: number
  results: readonly { invocationId: string; result: FinishedResult }[]
  /** The graphile-worker job running these invocations, completed by the same commit … */
  jobId?: string
  /** … if it is still locked by this lock id (a lock lost to the sweeper is another worker's now). */
  lockedBy?: string
  /**
   * Eager dispatch: lock the first new invocation on one of `pools` to `owner`, to run at once;
   * only when the instance belongs to `tenantId`, the tenant the worker serves, and no job of
   * higher priority waits on one of `tasks` (the worker's task identifiers).
   */
  eager?: { owner: string; tenantId: string; pools: string[]; tasks: string[] }
}

/** A job the write locked to the writing worker (eager dispatch): run it, then complete it. */
export interface EagerJob { jobId: string; payload: unknown; runAt?: string }

const PARAMS = {
  ...STEP_PARAMS,
  job: 'bigint',
  lockedBy: 'text',
  eagerOwner: 'text',
  eagerTenant: 'text',
  eagerPools: 'text[]',
  eagerTasks: 'text[]',
} as const

type P = typeof PARAMS

// The queue's parts, after the store's (which end with `inv`, the new invocations, and `parent_ev`).
const QUEUE_PARTS: Part<P>[] = [
  // Task rows are created beforehand (ensureTasks, committed): one committed by another
  // transaction after this statement's snapshot would be invisible here, so a missing one raises
  // (praxis.jobs_missing, 40001) rather than leave an invocation without its job. The task is the
  // instance's tenant's queue for the pool: a pool never names another tenant's.
  ['tasks', (p) => `select id, identifier from graphile_worker._private_tasks where identifier in (select ${invokeTaskSql(p.tenant, 'pool')} from inv)`],
  // The new invocations in the order they were called (the order the insert returns them in).
  ['called', () => `select inv.*, row_number() over () as ord from inv`],
  ...fairParts<P>((p) => p.tenant, 'called'),
  // Eager dispatch: with an owner, the job of the first new invocation on a pool the writing
  // worker serves is inserted already locked by it, and the worker runs it at once, with no NOTIFY,
  // fetch or commit between the two steps; only when the worker serves this instance's tenant (a
  // worker never holds, let alone runs, another tenant's job), not for a deferred call (it waits
  // for idle capacity), and not when a job of higher priority waits for the worker: the chain then
  // gives way, and the call goes through the queue.
  ['eligible', (p) => `
  select inv.id, row_number() over (order by inv.priority desc, inv.ord) as n from called inv
  where ${p.eagerOwner} is not null and ${p.eagerTenant} = ${p.tenant} and inv.pool = any(${p.eagerPools}) and inv.defer_until is null
    and not exists (select 1 from graphile_worker._private_jobs w
      where w.is_available and w.run_at <= now() and w.priority < ${jobPriority('inv.priority')}
        and w.task_id in (select t.id from graphile_worker._private_tasks t where t.identifier = any(${p.eagerTasks})))`],
  // Micro-batches: invocations the host numbered alike (one callEach's, of one rule, function,
  // pool, priority and flow) share a job; any other has a job of its own.
  ['grouped', () => `select c.*, coalesce('b' || c.batch_no::text, c.id::text) as grp from called c`],
  // Invoke jobs go straight into graphile-worker 0.17's job table (no key, no queue; flags naming
  // the pool and service, for the workers' concurrency caps): the rows add_jobs would write (see
  // jobs.ts). The payload is the first invocation's; a batch's adds `items`, every invocation's id,
  // input and key. A job is placed at its first item's fair place. A deferred call's job waits at
  // the lowest priority (it runs when nothing else does) until `promoted` raises it. An eagerly
  // locked job counts its attempt as get_job would, so a run lost with its worker counts as one.
  ['jobs', (p) => `
  insert into graphile_worker._private_jobs (task_id, payload, priority, run_at, flags, attempts, locked_at, locked_by)
  select tasks.id,
    (jsonb_build_object('tenant_id', ${p.tenant}, 'id', (array_agg(g.id order by g.ord))[1], 'instance_id', ${p.instance}, 'rule', min(g.rule), 'function', min(g.function), 'pool', g.pool,
      'input', (array_agg(g.input order by g.ord))[1], 'call_key', (array_agg(g.call_key order by g.ord))[1], 'priority', max(g.priority), 'retry', (array_agg(g.retry))[1],
      'timeout_ms', max(g.timeout_ms), 'attempts', 0,
      -- The instance as this evaluation leaves it, so the worker need not read it (small facts
      -- only), when this is the evaluation's only job: of a fan-out's jobs, all but the first to
      -- finish would find the instance moved, so their optimistic step would run rule code for
      -- nothing and fail (then take the locked path); without a snapshot the worker reads the
      -- instance while the function runs, and its revision is usually current when it writes.
      'snapshot', case when octet_length(${p.facts}::text) <= 8192 and (select count(distinct grp) from grouped) = 1 then jsonb_build_object('revision', (select revision from inst), 'service', (select service from inst),
        'workflow', (select workflow from inst), 'status', ${p.status}, 'facts', ${p.facts}, 'facts_version', (select facts_version from inst), 'rule_state', ${p.ruleState}, 'bundle_id', ${p.bundle}::text, 'active_bundle_id', ${p.bundle}::text) end)
    || case when count(*) > 1 then jsonb_build_object('items', jsonb_agg(jsonb_build_object('id', g.id, 'input', g.input, 'call_key', g.call_key) order by g.ord)) else '{}' end)::json,
    case when bool_or(g.defer_until is not null) then ${DEFERRED_PRIORITY} else ${jobPriority('max(g.priority)')} end, min(placed.run_at), ${jobFlags('g.pool')},
    case when bool_or(e.n = 1) then 1 else 0 end, case when bool_or(e.n = 1) then now() end, case when bool_or(e.n = 1) then ${p.eagerOwner} end
  from grouped g join tasks on tasks.identifier = ${invokeTaskSql(p.tenant, 'g.pool')} join placed on placed.id = g.id left join eligible e on e.id = g.id
  group by g.grp, g.pool, tasks.id
  returning id, locked_by, payload, run_at`],
  // A deferred call's job is raised to its own priority when its deadline comes close, by a due
  // job then (retry.ts, promoteJob).
  ['promoted', (p) => `
  select graphile_worker.add_job(${dueTaskSql(p.tenant)}, json_build_object('t', ${p.tenant}, 'i', inv.id::text, 'job', jobs.id::text, 'priority', ${jobPriority('inv.priority')}),
    run_at := ${promoteAtSql('inv.defer_until')}, max_attempts := 25, priority := -32768)
  from jobs join inv on inv.id = (jobs.payload->>'id')::uuid where inv.defer_until is not null`],
  // One 'jobs:insert' NOTIFY wakes the workers, as add_jobs would.
  ['woken', () => `select pg_notify('jobs:insert', '{"r":' || random()::text || ',"count":' || count(*)::text || '}') from jobs where locked_by is null having count(*) > 0`],
  ['parent_job', (p) => `select ${addEvaluateJobSql(p.tenant, 'instance_id')} as job from parent_ev`],
  // The fused step completes its own job in the same commit (a queue-less job, as invoke jobs are):
  // the worker's later completion then deletes nothing and writes no WAL, so a step costs one
  // durable commit, and a crash after it cannot run the function again.
  ['done', (p) => `
  delete from graphile_worker._private_jobs where ${p.job} is not null and id = ${p.job} and job_queue_id is null and locked_by = ${p.lockedBy} and exists (select 1 from inst) returning id`],
]

const WRITE = statement('praxis_step_write', PARAMS, [...STEP_PARTS, ...QUEUE_PARTS], () => `
select ${STEP_FIGURES},
  (select count(*) from jobs)::int as jobs, (select count(*) from woken) as woken, (select count(*) from done)::int as completed,
  (select json_build_object('jobId', id::text, 'payload', payload, 'runAt', run_at) from jobs where locked_by is not null limit 1) as eager, (select count(*) from parent_job)::int as parents,
  (select count(*) from promoted)::int as deferred,
  case when (select count(*) from jobs) <> (select count(distinct grp) from grouped) then praxis.jobs_missing() end as stranded`)

/** The step write's text (for tests and EXPLAIN). */
export const STEP_WRITE_SQL = WRITE.text

/**
 * Writes an evaluation's results. With a guard, returns 'duplicate' when the invocation was no
 * longer pending and 'moved' when the instance changed since it was read, has events queued, or is
 * locked by another evaluation (nothing written).
 */
export async function writeEvaluation(target: Queryable | pg.Pool, w: EvaluationWrite, guard?: WriteGuard): Promise<{ revision: number; invocations: number; consumed: number; eager: EagerJob | null } | 'duplicate' | 'moved'> {
  const eager = guard?.eager
  // Given the pool (the optimistic fused step holds no connection while rule code runs), take one
  // for the statement alone: pg-pool's query() destroys its connection when the statement fails,
  // and a guarded write fails whenever the instance moved or is busy (40001, 55P03) — on every
  // fan-out result but the first; a new connection cost ~85 ms, measured.
  const client = target instanceof pg.Pool ? await target.connect() : target
  let broken: Error | undefined
  try {
    const { rows } = await client.query<{ revision: number | null; invocations: number; consumed: number; finished: number; eager: EagerJob | null; deferred: number }>({
      name: WRITE.name,
      text: WRITE.text,
      values: WRITE.values({
        ...stepValues(w, guard),
        job: guard?.jobId ?? null,
        lockedBy: guard?.lockedBy ?? null,
        eagerOwner: eager?.owner ?? null,
        eagerTenant: eager?.tenantId ?? null,
        eagerPools: eager?.pools ?? [],
        eagerTasks: eager?.tasks ?? [],
      }),
    })
    const row = rows[0]!
    if (guard && row.finished === 0) return 'duplicate'
    if (row.revision === null) return 'moved'
    return { revision: row.revision, invocations: row.invocations, consumed: row.consumed, eager: row.eager }
  } catch (error) {
    // 40001: the instance moved (or a job's task row was missing); 55P03: its lock is busy.
    const code = (error as { code?: string }).code
    if (guard && (code === '40001' || code === '55P03')) return 'moved'
    broken = error as Error
    throw error
  } finally {
    if (client !== target) (client as pg.PoolClient).release(broken)
  }
}
