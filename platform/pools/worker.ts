/**
 * A worker process's job runner for one tenant: graphile-worker tasks for that tenant's queues of
 * the function pools it serves (and its evaluate and child-start jobs), a heartbeat, and a sweeper
 * that releases a dead worker's jobs after its lease instead of graphile-worker's 4 hours.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { run, type Runner, type Task, type WorkerEvents } from 'graphile-worker'
import type pg from 'pg'
import type { Logger } from 'pino'
import { CHILD_POOL, qualifiedPool, type FunctionDefinition } from '../../sdk/index.js'
import type { Limits } from '../config.js'
import { BundleCache, Evaluator } from '../engine/index.js'
import { evaluateTask, invokeTask, parseInvocationJob, parsePayload } from '../queue/index.js'
import { quietLogger, type EagerJob, type InvocationJob } from '../store/index.js'
import { runInvocation, startChild } from './invoke.js'

export interface WorkerOptions {
  pool: pg.Pool
  log: Logger
  /**
   * The tenant this worker serves: it takes that tenant's jobs only (function handlers are tenant
   * code), and fails any job whose payload names another tenant without running it.
   */
  tenantId: string
  /** Functions this worker can run; it serves every pool they name. */
  functions: readonly FunctionDefinition[]
  /** Also run evaluate jobs (instances whose fused step found them busy). Default true. */
  evaluate?: boolean
  /** Jobs run at once. */
  concurrency: number
  /** A worker silent for this long is dead. */
  leaseMs: number
  /** graphile-worker localQueue size; -1 (off) by default, lowest latency. */
  localQueueSize?: number
  /** Limits on rule code and what it asks for (platform/config.ts); each defaults there. */
  limits?: Partial<Limits>
  /** Run the next invocation a step enqueues at once when this worker serves it. Default true. */
  eager?: boolean
}

export interface WorkerHandle {
  readonly id: string
  /** The tenant whose jobs it runs. */
  readonly tenantId: string
  /** Counts since start. */
  readonly stats: Record<'succeeded' | 'failed' | 'retry-scheduled' | 'duplicate' | 'evaluations' | 'eager' | 'refused', number>
  stop(): Promise<void>
}

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const tenantId = options.tenantId
  // Throws for anything that is not a tenant id (a worker serves exactly one tenant).
  evaluateTask(tenantId)
  const { rowCount } = await options.pool.query('select 1 from praxis.tenants where id = $1', [tenantId])
  if (!rowCount) throw new Error(`tenant ${tenantId} does not exist: create it (and its API key) first`)
  const id = `praxis-worker-${randomBytes(6).toString('hex')}`
  const log = options.log.child({ workerId: id, tenantId })
  const evaluator = new Evaluator(options.pool, new BundleCache({ limits: options.limits ?? {} }))
  // eager: invocations this worker ran by eager dispatch (also counted by outcome).
  // refused: jobs naming another tenant, failed for good without running.
  const stats = { succeeded: 0, failed: 0, 'retry-scheduled': 0, duplicate: 0, evaluations: 0, eager: 0, refused: 0 }
  // By queue and name: two services may both have a function of one name.
  const byName = new Map<string, FunctionDefinition>()
  const keyOf = (pool: string, name: string): string => `${pool}\u0000${name}`
  for (const fn of options.functions) {
    const key = keyOf(qualifiedPool(fn), fn.name)
    if (byName.has(key)) throw new Error(`two functions named ${fn.name} serve pool ${qualifiedPool(fn)}; function names must be unique in a service`)
    byName.set(key, fn)
  }
  const pools = [...new Set(options.functions.map((f) => qualifiedPool(f)))].sort()
  const deps = { pool: options.pool, evaluator, log }

  // Eager dispatch: a step may lock the next invocation to this worker in its own commit; the
  // worker then runs it at once instead of waiting for the queue to hand it over. At most
  // `concurrency` eager chains run besides graphile-worker's own jobs (a task reserves a slot when
  // its result is written; a chain keeps its own); none start or continue once stopping.
  const eagerEnabled = (options.eager ?? true) && options.concurrency > 0
  const eagerChains = new Set<Promise<void>>()
  let eagerSlots = 0
  let stopping = false
  const eager = { owner: id, tenantId, pools }
  const functionFor = (pool: string, name: string): FunctionDefinition => {
    const fn = byName.get(keyOf(pool, name))
    if (!fn) throw new Error(`PRX_FUNCTION_UNKNOWN: this worker serves pool ${pool} but has no function ${name}; deploy a worker with the service's current functions.ts`)
    return fn
  }
  const runEager = (first: EagerJob): void => {
    const chain = (async () => {
      let job: EagerJob | null = first
      const completions = new Set<Promise<unknown>>()
      while (job) {
        const current: EagerJob = job
        try {
          const invocation = parseInvocationJob(current.payload)
          // The write locks only this tenant's jobs to this worker; checked again all the same.
          if (invocation.tenant_id !== tenantId) throw new Error(`PRX_TENANT_MISMATCH: eagerly dispatched job ${current.jobId} is of tenant ${invocation.tenant_id}, this worker serves ${tenantId}`)
          const { outcome, next } = await runInvocation(deps, functionFor(invocation.pool, invocation.function), invocation, current.jobId, () => (stopping ? undefined : eager))
          stats[outcome]++
          stats.eager++
          // Complete it (the fused step usually already has: then this deletes nothing), off the
          // critical path: the next step need not wait for it.
          const completion: Promise<unknown> = options.pool.query('delete from graphile_worker._private_jobs where id = $1 and locked_by = $2', [current.jobId, id])
            .catch((error: Error) => log.warn({ jobId: current.jobId, error: error.message }, 'completing an eagerly dispatched job failed: it stays locked until this worker stops; its invocation is recorded, so if it runs again its result is discarded as a duplicate'))
            .finally(() => completions.delete(completion))
          completions.add(completion)
          job = next
        } catch (error) {
          // Hand it back to the queue, which retries it like any job.
          log.warn({ jobId: current.jobId, error: (error as Error).message }, 'eagerly dispatched invocation failed; returned to the queue')
          await options.pool.query('update graphile_worker._private_jobs set locked_at = null, locked_by = null, run_at = now() + interval \'1 second\' where id = $1 and locked_by = $2', [current.jobId, id]).catch(() => undefined)
          job = null
        }
      }
      await Promise.all([...completions])
    })()
    eagerChains.add(chain)
    void chain.finally(() => {
      eagerChains.delete(chain)
      eagerSlots--
    })
  }

  // Defence in depth: only this tenant's task identifiers are registered, but a job is a row
  // anyone with database access can write. One whose payload names another tenant is failed for
  // good (max_attempts = attempts, so graphile-worker never hands it out again) and never run.
  const refuse = async (job: { id: string; task_identifier: string }, payloadTenant: unknown): Promise<never> => {
    stats.refused++
    log.error({ jobId: job.id, task: job.task_identifier, payloadTenant }, 'refused a job of another tenant: not run, failed for good')
    await options.pool.query('update graphile_worker._private_jobs set max_attempts = greatest(attempts, 1) where id = $1', [job.id])
    throw new Error(`PRX_TENANT_MISMATCH: job ${job.id} on ${job.task_identifier} names tenant ${JSON.stringify(payloadTenant)}; this worker serves ${tenantId} and never runs another tenant's job`)
  }
  /** Records a fatal failure of an invocation whose job failed its last attempt. */
  const giveUp = async (invocation: InvocationJob, job: { id: string; attempts: number }, error: Error): Promise<'failed' | 'duplicate'> => {
    const attempts = invocation.attempts + 1
    const message = `its job failed ${job.attempts} times outside the function (last: ${error.message}); the platform gave up on it`
    log.warn({ invocationId: invocation.id, function: invocation.function, attempts: job.attempts, error: error.message }, 'invocation job failed its last attempt; recording a fatal failure')
    const recorded = await evaluator.recordResult(invocation, { status: 'failed', failure: { kind: 'fatal', message, attempts }, attempts }, evaluator.snapshot(invocation), job.id)
    return recorded === null ? 'duplicate' : 'failed'
  }

  const taskList: Record<string, Task> = {}
  for (const pool of pools) {
    taskList[invokeTask(tenantId, pool)] = async (payload, helpers) => {
      const invocation = parseInvocationJob(payload)
      if (invocation.tenant_id !== tenantId) return refuse(helpers.job, invocation.tenant_id)
      let reserved = false
      const reserve = (): typeof eager | undefined => {
        if (!eagerEnabled || stopping || eagerSlots >= options.concurrency) return undefined
        eagerSlots++
        reserved = true
        return eager
      }
      let handedOver = false
      try {
        const { outcome, next } = await runInvocation(deps, functionFor(pool, invocation.function), invocation, helpers.job.id, reserve)
        stats[outcome]++
        if (next) {
          runEager(next)
          handedOver = true
        }
      } catch (error) {
        // Not the handler (it has its own retries): the function missing here, the sandbox, the
        // database. graphile-worker retries the job; on its last attempt the invocation fails for
        // good through the normal path, so it never stays pending with its instance waiting.
        if (helpers.job.attempts < helpers.job.max_attempts) throw error
        stats[await giveUp(invocation, helpers.job, error as Error)]++
      } finally {
        if (reserved && !handedOver) eagerSlots--
      }
    }
  }
  if (options.evaluate ?? true) {
    taskList[invokeTask(tenantId, CHILD_POOL)] = async (payload, helpers) => {
      const invocation = parseInvocationJob(payload)
      if (invocation.tenant_id !== tenantId) return refuse(helpers.job, invocation.tenant_id)
      stats[await startChild(deps, invocation, helpers.job.id, helpers.job.attempts >= helpers.job.max_attempts)]++
    }
    taskList[evaluateTask(tenantId)] = async (payload, helpers) => {
      const { t, i } = parsePayload(payload)
      if (t !== tenantId) return refuse(helpers.job, t)
      if (await evaluator.evaluatePending(t, i, { nowait: false })) stats.evaluations++
    }
  }

  // This worker's own id locks eagerly dispatched jobs: the sweeper releases them too.
  const lockIds = new Set<string>([id])
  const events: WorkerEvents = new EventEmitter() as WorkerEvents
  events.on('pool:create', ({ workerPool }) => lockIds.add(workerPool.id))
  events.on('worker:create', ({ worker }) => lockIds.add(worker.workerId))
  await options.pool.query('insert into praxis.workers (id, tenant_id, pools) values ($1, $2, $3)', [id, tenantId, pools])

  const runner: Runner = await run({
    pgPool: options.pool,
    concurrency: options.concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    taskList,
    logger: quietLogger,
    events,
    preset: { worker: { ...(options.localQueueSize && options.localQueueSize > 1 ? { localQueue: { size: options.localQueueSize } } : {}) } },
  })

  const beat = async (): Promise<void> => {
    const { rowCount } = await options.pool.query('update praxis.workers set heartbeat_at = now(), lock_ids = $2 where id = $1', [id, [...lockIds]])
    if (!rowCount && !stopping) {
      // Swept: this worker stalled past its lease and its jobs were released to others. Register
      // again, or from now on it would run unprotected (and, should it die, its jobs would stay
      // locked for graphile-worker's 4 hours).
      await options.pool.query('insert into praxis.workers (id, tenant_id, pools, lock_ids) values ($1, $2, $3, $4) on conflict (id) do update set heartbeat_at = now()', [id, tenantId, pools, [...lockIds]])
      log.warn({ leaseMs: options.leaseMs }, 'this worker missed its lease (stalled?) and was swept: its running jobs may run again elsewhere; registered again')
    }
    await sweepDeadWorkers(options.pool, options.leaseMs, log)
  }
  await beat()
  const heartbeat = setInterval(() => void beat().catch((error: Error) => log.warn({ error: error.message }, 'heartbeat failed')), Math.max(250, Math.floor(options.leaseMs / 3)))
  heartbeat.unref()
  log.info({ tenantId, tasks: Object.keys(taskList), concurrency: options.concurrency, functions: [...byName.keys()] }, 'worker started')

  return {
    id,
    tenantId,
    stats,
    async stop() {
      stopping = true
      // The heartbeat goes on until the last function returns: a lease that ran out meanwhile
      // would let another worker run the same invocation at the same time.
      await runner.stop()
      while (eagerChains.size > 0) await Promise.all([...eagerChains])
      clearInterval(heartbeat)
      await evaluator.close()
      // Anything still locked by this worker's own id goes back to the queue now, not in 4 hours.
      await options.pool.query('select graphile_worker.force_unlock_workers($1::text[])', [[id]]).catch(() => undefined)
      await options.pool.query('delete from praxis.workers where id = $1', [id]).catch(() => undefined)
    },
  }
}

/**
 * Releases the jobs of workers whose heartbeat is older than the lease, so their invocations run
 * again on a live worker now rather than after graphile-worker's 4-hour lock timeout.
 */
export async function sweepDeadWorkers(pool: pg.Pool, leaseMs: number, log: Logger): Promise<string[]> {
  const { rows } = await pool.query<{ id: string; lock_ids: string[] }>(
    `delete from praxis.workers where heartbeat_at < now() - $1 * interval '1 millisecond' returning id, lock_ids`, [leaseMs])
  for (const row of rows) {
    if (row.lock_ids.length > 0) await pool.query('select graphile_worker.force_unlock_workers($1::text[])', [row.lock_ids])
    log.warn({ deadWorker: row.id }, 'worker missed its lease; its jobs are released to run again')
  }
  return rows.map((r) => r.id)
}
