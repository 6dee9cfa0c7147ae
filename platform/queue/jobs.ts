/**
 * The graphile-worker SQL Praxis writes itself, in one place: direct job inserts (the step write's
 * parts, a retry's due job), completion, hand-back and release of locks, and the start-up check
 * that the job table is the one this SQL was written for.
 *
 * Praxis inserts invoke jobs straight into graphile-worker 0.17's job table (the rows `add_jobs`
 * would write, without its five statements) inside the step's own statement. That is a contract
 * with graphile-worker's private schema: `checkQueueSchema` refuses to start on another schema
 * version, and test/queue-contract.test.ts checks that a job inserted here behaves exactly like one
 * from `add_jobs` (fetched, retried, failed and completed the same way).
 */
import pg from 'pg'
import { evaluateTaskSql, invokeTask, invokeTaskSql } from '../store/index.js'
import type { Params, ParamTypes } from './statement.js'

/** graphile-worker's schema migration this SQL is written for (0.17.x: 000019). */
export const QUEUE_SCHEMA_VERSION = 19

/**
 * Refuses to run against a graphile-worker schema other than the one Praxis's direct job SQL was
 * written for: a newer graphile-worker may change the job table under it.
 */
export async function checkQueueSchema(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ version: number | null }>(
    `select (select max(id) from graphile_worker.migrations) as version where to_regclass('graphile_worker.migrations') is not null`)
  const version = rows[0]?.version ?? null
  if (version === null) throw new Error('graphile-worker\'s schema is missing from this database: run the migrations first (praxis dev, or migrate() from platform/store)')
  if (version !== QUEUE_SCHEMA_VERSION) {
    throw new Error(`graphile-worker's schema is at migration ${version}, but Praxis writes jobs for migration ${QUEUE_SCHEMA_VERSION} (graphile-worker 0.17): `
      + 'install the graphile-worker version in package.json, or update platform/queue/jobs.ts and its contract test for the new schema')
  }
}

// ---- Fair share -------------------------------------------------------------------------------

/** Virtual time one job costs its flow, in microseconds. */
export const JOB_COST = 1000

/**
 * The fair-share parts over a CTE `source` of new jobs with columns `id`, `flow`, `priority` and
 * `ord` (their order within a priority: the order they were called in):
 *
 *   clock   the tenant's virtual clock (the head of its queue)
 *   demand  jobs per flow
 *   flows   each flow's virtual time moved past its new jobs: from max(clock, its last) on
 *   placed  each job's run_at: its flow's start plus its rank in the flow (by priority, then ord)
 *
 * `flows` takes the flow rows' locks until commit: jobs of one flow are placed one writer at a time.
 */
export function fairParts<P extends ParamTypes>(tenant: (p: Params<P>) => string, source: string): [string, (p: Params<P>) => string][] {
  return [
    ['clock', (p) => `select coalesce((select vt from praxis.fair_clock where tenant_id = ${tenant(p)}), 0) as vt`],
    ['demand', () => `select flow, count(*)::bigint as n from ${source} group by flow`],
    ['flows', (p) => `
  insert into praxis.fair_flows as f (tenant_id, flow, vt)
  select ${tenant(p)}, d.flow, (select vt from clock) + d.n * ${JOB_COST} from demand d
  on conflict (tenant_id, flow) do update set vt = greatest(f.vt, (select vt from clock)) + (excluded.vt - (select vt from clock))
  returning flow, vt`],
    ['placed', () => `
  select s.id, praxis.fair_run_at(f.vt - (d.n - row_number() over (partition by s.flow order by s.priority desc, s.ord)) * ${JOB_COST}) as run_at
  from ${source} s join flows f on f.flow = s.flow join demand d on d.flow = s.flow`],
  ]
}

/**
 * The flags of an invoke job on `pool` (a SQL expression): a worker whose pool or service is at its
 * concurrency cap skips jobs with them (graphile-worker's forbiddenFlags; platform/pools/caps.ts).
 */
export const jobFlags = (pool: string): string => `jsonb_build_object('pool:' || ${pool}, true, 'service:' || split_part(${pool}, ':', 1), true)`

/** graphile-worker's priority of a call's priority (higher runs first; graphile-worker's lower does). */
export const jobPriority = (priority: string): string => `least(greatest(-${priority}, -32768), 32767)`

/**
 * graphile-worker's priority of a deferred call's job while it may still wait: the lowest, so a
 * worker takes it only when no other job of its queues is ready (idle capacity).
 */
export const DEFERRED_PRIORITY = 32767

/**
 * When a deferred call's job is raised to its own priority (a SQL timestamptz): shortly before its
 * deadline, by a tenth of the wait it was given, at least a second (graphile-worker finds a job
 * that comes due by polling, every second) and at most a minute.
 */
export const promoteAtSql = (deadline: string): string =>
  `(${deadline} - least(greatest((${deadline} - now()) / 10, interval '1 second'), interval '1 minute'))`

/** Publishes the virtual time of a job a worker started: the tenant's clock never goes back. */
export async function advanceClock(pool: pg.Pool, tenantId: string, runAt: Date): Promise<void> {
  await pool.query(
    `insert into praxis.fair_clock as c (tenant_id, vt) values ($1, greatest(0, floor(extract(epoch from ($2::timestamptz - timestamptz '2000-01-01 00:00:00+00')) * 1000000)::bigint))
     on conflict (tenant_id) do update set vt = greatest(c.vt, excluded.vt) where excluded.vt > c.vt`, [tenantId, runAt])
}

/** Whether a job's run_at is a virtual time (fair-share placed), not a wall-clock time. */
export const isVirtual = (runAt: Date): boolean => runAt.getTime() < VIRTUAL_LIMIT
// Virtual run_at values are 2000-01-01 plus at most a few years of job costs.
const VIRTUAL_LIMIT = Date.UTC(2020, 0, 1)

// ---- Jobs -------------------------------------------------------------------------------------

/** An evaluate job for one of `tenant`'s instances, at the head of the tenant's queue (SQL expression). */
export const addEvaluateJobSql = (tenant: string, instance: string): string =>
  `graphile_worker.add_job(${evaluateTaskSql(tenant)}, json_build_object('t', ${tenant}, 'i', ${instance}::text), max_attempts := 25, run_at := praxis.fair_now(${tenant}))`

/** The same as a job_spec row for add_jobs (a batch). */
export const evaluateJobSpecSql = (tenant: string, instance: string): string =>
  `row(${evaluateTaskSql(tenant)}, json_build_object('t', ${tenant}, 'i', ${instance}), null, praxis.fair_now(${tenant}), 25, null, 0, null)::graphile_worker.job_spec`

/**
 * Creates graphile-worker task rows for `tenantId`'s invoke queues of `pools`, committed, so a
 * step write can find them; each queue once per `known` set (it holds task identifiers). It runs
 * on a connection of its own, not one from the pool: its callers may hold pooled connections in
 * open transactions, and waiting for another from an exhausted pool would deadlock them.
 */
export async function ensureTasks(pool: pg.Pool, tenantId: string, pools: readonly string[], known: Set<string>): Promise<void> {
  const missing = [...new Set(pools.map((p) => invokeTask(tenantId, p)))].filter((t) => !known.has(t))
  if (missing.length === 0) return
  const client = new pg.Client(pool.options)
  await client.connect()
  try {
    await client.query('insert into graphile_worker._private_tasks (identifier) select unnest($1::text[]) on conflict do nothing', [missing])
  } finally {
    await client.end()
  }
  for (const t of missing) known.add(t)
}

/** Completes a job this worker still holds (a lock lost to the sweeper is someone else's now). */
export async function completeJob(pool: pg.Pool, jobId: string, lockedBy: string): Promise<void> {
  await pool.query('delete from graphile_worker._private_jobs where id = $1 and locked_by = $2', [jobId, lockedBy])
}

/** Hands a job this worker holds back to the queue, in its place (its run_at is kept). */
export async function releaseJob(pool: pg.Pool, jobId: string, lockedBy: string): Promise<void> {
  await pool.query('update graphile_worker._private_jobs set locked_at = null, locked_by = null where id = $1 and locked_by = $2', [jobId, lockedBy])
}

/** Fails a job for good: graphile-worker never hands it out again. */
export async function failJobForGood(pool: pg.Pool, jobId: string): Promise<void> {
  await pool.query('update graphile_worker._private_jobs set max_attempts = greatest(attempts, 1) where id = $1', [jobId])
}

/** Releases every job locked by these lock ids (a dead worker's, or a stopping one's own). */
export async function forceUnlock(pool: pg.Pool, lockIds: readonly string[]): Promise<void> {
  if (lockIds.length > 0) await pool.query('select graphile_worker.force_unlock_workers($1::text[])', [lockIds])
}

/**
 * Releases jobs locked to `owner` (eager dispatch) for longer than `olderThanMs` that it is not
 * running: a chain whose handle was lost after its commit would otherwise hold its job until the
 * worker stops. Returns how many.
 */
export async function releaseStrayJobs(pool: pg.Pool, owner: string, running: readonly string[], olderThanMs: number): Promise<number> {
  const { rowCount } = await pool.query(
    `update graphile_worker._private_jobs set locked_at = null, locked_by = null
     where locked_by = $1 and not (id = any($2::bigint[])) and locked_at < now() - $3 * interval '1 millisecond'`, [owner, running, olderThanMs])
  return rowCount ?? 0
}

/** Wakes the workers when jobs were added (as add_jobs does), e.g. when a delayed job comes due. */
export async function wakeWorkers(pool: pg.Pool): Promise<void> {
  await pool.query(`select pg_notify('jobs:insert', '{"count":1}')`)
}

/** Task identifiers as SQL, for the step's parts. */
export { invokeTaskSql }
