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
import type { Limits, RetentionSettings } from '../config.js'
import { BundleCache, Evaluator, walkReprocessing } from '../engine/index.js'
import {
  advanceClock, checkQueueSchema, completeJob, dueTask, enqueueDue, evaluateTask, failJobForGood, forceUnlock, invokeTask, isVirtual,
  parseDuePayload, parseInvocationJob, parseInvocations, parsePayload, promoteJob, reprocessTask, requeueWhenDue, backoffDelay, releaseJob, releaseStrayJobs, type EagerJob,
} from '../queue/index.js'
import { purgeTenant, quietLogger, retentionCronItems, retentionSettings, retentionTask, type InvocationJob } from '../store/index.js'
import { Caps, checkCaps, type CapsOptions } from './caps.js'
import { runInvocations, startChild, type InvokeOutcome, type RunningJob } from './invoke.js'

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
  /**
   * Retention (platform/store/retention.ts): the tenant's purge of finished data, a cron job this
   * worker schedules and runs; its defaults, schedule, batch and budget, each defaulting to
   * platform/config.ts's DEFAULT_RETENTION. `false` (or a null schedule): no retention job here.
   */
  retention?: Partial<RetentionSettings> | false
  /** Run the next invocation a step enqueues at once when this worker serves it. Default true. */
  eager?: boolean
  /**
   * An eager chain runs in the slot of the job that started it, and returns to the queue after
   * this many steps or milliseconds (default 32 steps, 500 ms), so a long sequential workflow
   * takes its turn with the rest of the queue.
   */
  eagerChain?: { steps?: number; ms?: number }
  /** Concurrency caps per service and per pool in this process, nested inside `concurrency` (caps.ts). */
  caps?: CapsOptions
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
  await checkQueueSchema(options.pool)
  checkCaps(options.caps ?? {}, options.concurrency)
  const caps = new Caps(options.caps)
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

  // The tenant's fair-share clock: the latest virtual time this worker started a job at, published
  // every 100 ms (not per job: one shared row written by every step would serialise them).
  let startedVt = 0
  let publishedVt = 0
  const started = (runAt: Date | string | undefined): void => {
    const at = runAt === undefined ? NaN : new Date(runAt).getTime()
    if (isVirtual(new Date(at)) && at > startedVt) startedVt = at
  }
  const publishClock = async (): Promise<void> => {
    if (startedVt <= publishedVt) return
    const vt = startedVt
    await advanceClock(options.pool, tenantId, new Date(vt))
    publishedVt = vt
  }

  // Eager dispatch: a step may lock the next invocation to this worker in its own commit; the
  // worker then runs it at once, in the slot of the job that began the chain (so eager chains
  // stay within `concurrency`), instead of waiting for the queue to hand it over. A chain asks
  // for its next job only while it is within its bounds, no higher-priority job waits (the write
  // checks) and the worker is not stopping; otherwise the next call goes through the queue.
  const eagerEnabled = (options.eager ?? true) && options.concurrency > 0
  const chainSteps = options.eagerChain?.steps ?? 32
  const chainMs = options.eagerChain?.ms ?? 500
  let stopping = false
  // Eagerly locked jobs this worker is running (the rest locked to its id are strays: released).
  const runningEager = new Set<string>()
  const eager = { owner: id, tenantId, pools, tasks: [] as string[] }
  // The next job may be locked eagerly only on a pool with room under its caps once the current
  // step (of `current`) gives its place back.
  const chainBudget = (chain: { steps: number; since: number }, current: string) => (): typeof eager | undefined => {
    if (!eagerEnabled || stopping || chain.steps >= chainSteps || Date.now() - chain.since >= chainMs) return undefined
    return caps.active ? { ...eager, pools: pools.filter((p) => caps.fits(p, current)) } : eager
  }
  const functionFor = (pool: string, name: string): FunctionDefinition => {
    const fn = byName.get(keyOf(pool, name))
    if (!fn) throw new Error(`PRX_FUNCTION_UNKNOWN: this worker serves pool ${pool} but has no function ${name}; deploy a worker with the service's current functions.ts`)
    return fn
  }
  /** Runs a job's invocations: one, or a micro-batch's. */
  const runJob = async (invocations: InvocationJob[], running: RunningJob, budget: () => typeof eager | undefined): Promise<{ outcomes: InvokeOutcome[]; next: EagerJob | null }> => {
    const head = invocations[0]!
    return runInvocations(deps, functionFor(head.pool, head.function), invocations, running, budget)
  }
  const count = (outcomes: readonly InvokeOutcome[]): void => {
    for (const outcome of outcomes) stats[outcome]++
  }
  /** Runs an eager chain from `first` to its end, in the calling task's slot. */
  const runChain = async (first: EagerJob, chain: { steps: number; since: number }): Promise<void> => {
    let job: EagerJob | null = first
    const completions: Promise<unknown>[] = []
    while (job) {
      const current: EagerJob = job
      runningEager.add(current.jobId)
      try {
        started(current.runAt)
        const invocations = parseInvocations(current.payload)
        const invocation = invocations[0]!
        // The write locks only this tenant's jobs to this worker; checked again all the same.
        if (invocation.tenant_id !== tenantId) throw new Error(`PRX_TENANT_MISMATCH: eagerly dispatched job ${current.jobId} is of tenant ${invocation.tenant_id}, this worker serves ${tenantId}`)
        chain.steps++
        const free = await caps.acquire(invocation.pool)
        let ran: { outcomes: InvokeOutcome[]; next: EagerJob | null }
        try {
          ran = await runJob(invocations, { id: current.jobId, lockedBy: id, attempts: 1 }, chainBudget(chain, invocation.pool))
        } finally {
          free()
        }
        const { next } = ran
        count(ran.outcomes)
        stats.eager += ran.outcomes.length
        // Complete it (the fused step usually already has: then this deletes nothing), off the
        // critical path: the next step need not wait for it.
        completions.push(completeJob(options.pool, current.jobId, id)
          .catch((error: Error) => log.warn({ jobId: current.jobId, error: error.message }, 'completing an eagerly dispatched job failed: it is released when this worker next beats; its invocation is recorded, so if it runs again its result is discarded as a duplicate')))
        job = next
      } catch (error) {
        // Hand it back to the queue, in its place; graphile-worker retries it like any job.
        log.warn({ jobId: current.jobId, error: (error as Error).message }, 'eagerly dispatched invocation failed; returned to the queue')
        await releaseJob(options.pool, current.jobId, id).catch(() => undefined)
        job = null
      } finally {
        runningEager.delete(current.jobId)
      }
    }
    await Promise.all(completions)
  }

  // Defence in depth: only this tenant's task identifiers are registered, but a job is a row
  // anyone with database access can write. One whose payload names another tenant is failed for
  // good (max_attempts = attempts, so graphile-worker never hands it out again) and never run.
  const refuse = async (job: { id: string; task_identifier: string }, payloadTenant: unknown): Promise<never> => {
    stats.refused++
    log.error({ jobId: job.id, task: job.task_identifier, payloadTenant }, 'refused a job of another tenant: not run, failed for good')
    await failJobForGood(options.pool, job.id)
    throw new Error(`PRX_TENANT_MISMATCH: job ${job.id} on ${job.task_identifier} names tenant ${JSON.stringify(payloadTenant)}; this worker serves ${tenantId} and never runs another tenant's job`)
  }
  /** Records a fatal failure of an invocation whose job failed its last attempt. */
  const giveUp = async (invocations: InvocationJob[], job: { id: string; attempts: number }, running: RunningJob, error: Error): Promise<InvokeOutcome[]> => {
    const message = `its job failed ${job.attempts} times outside the function (last: ${error.message}); the platform gave up on it`
    log.warn({ invocationIds: invocations.map((i) => i.id), function: invocations[0]!.function, attempts: job.attempts, error: error.message }, 'invocation job failed its last attempt; recording a fatal failure')
    const items = invocations.map((invocation) => {
      const attempts = invocation.attempts + 1
      return { job: invocation, result: { status: 'failed' as const, failure: { kind: 'fatal' as const, message, attempts }, attempts } }
    })
    const recorded = await evaluator.recordResults(items, evaluator.snapshot(invocations[0]!), running)
    return items.map(() => recorded === null ? 'duplicate' : 'failed')
  }

  const taskList: Record<string, Task> = {}
  for (const pool of pools) {
    taskList[invokeTask(tenantId, pool)] = async (payload, helpers) => {
      const invocations = parseInvocations(payload)
      const invocation = invocations[0]!
      if (invocation.tenant_id !== tenantId) return refuse(helpers.job, invocation.tenant_id)
      started(helpers.job.run_at)
      const running = runningJob(helpers.job)
      const chain = { steps: 0, since: Date.now() }
      let next: EagerJob | null
      // A job fetched in the instant before its pool's cap filled waits here for a place.
      const free = await caps.acquire(pool)
      try {
        // The job's own pool, whatever its payload says.
        const ran = await runJob(invocations.map((i) => ({ ...i, pool })), running, chainBudget(chain, pool))
        count(ran.outcomes)
        next = ran.next
      } catch (error) {
        // Not the handler (it has its own retries): the function missing here, the sandbox, the
        // database. graphile-worker retries the job; on its last attempt the invocation fails for
        // good through the normal path, so it never stays pending with its instance waiting.
        if (helpers.job.attempts < helpers.job.max_attempts) {
          const delayMs = backoffDelay(invocation.retry, helpers.job.attempts)
          log.warn({ jobId: helpers.job.id, invocationId: invocation.id, attempts: helpers.job.attempts, delayMs, error: (error as Error).message }, 'invocation job failed outside the function; it runs again after the retry policy\'s delay')
          // graphile-worker hands the job back with a wall-clock run_at, behind the whole backlog;
          // a due job puts it back at the head of the tenant's queue after the policy's delay.
          await requeueWhenDue(options.pool, tenantId, { id: helpers.job.id, priority: helpers.job.priority }, invocation.id, delayMs)
            .catch((e: Error) => log.warn({ jobId: helpers.job.id, error: e.message }, 'scheduling the job\'s return to the queue failed: graphile-worker\'s own backoff applies'))
          throw error
        }
        count(await giveUp(invocations, helpers.job, running, error as Error))
        return
      } finally {
        free()
      }
      // The chain holds this job's slot: graphile-worker fetches nothing new for it meanwhile.
      if (next) await runChain(next, chain)
    }
  }
  if (options.evaluate ?? true) {
    taskList[invokeTask(tenantId, CHILD_POOL)] = async (payload, helpers) => {
      const invocation = parseInvocationJob(payload)
      if (invocation.tenant_id !== tenantId) return refuse(helpers.job, invocation.tenant_id)
      started(helpers.job.run_at)
      stats[await startChild(deps, invocation, runningJob(helpers.job), helpers.job.attempts >= helpers.job.max_attempts)]++
    }
    // A deploy's walk over old work (always on): batches until its run is done or superseded;
    // stopping between batches leaves the job to be retried, resuming at the run's cursor.
    taskList[reprocessTask(tenantId)] = async (payload, helpers) => {
      const { t, i } = parsePayload(payload)
      if (t !== tenantId) return refuse(helpers.job, t)
      const batches = await walkReprocessing(options.pool, t, i, { shouldStop: () => stopping || helpers.abortSignal.aborted })
      log.info({ reprocessing: i, batches }, 'reprocessing run walked')
    }
    taskList[evaluateTask(tenantId)] = async (payload, helpers) => {
      const { t, i } = parsePayload(payload)
      if (t !== tenantId) return refuse(helpers.job, t)
      started(helpers.job.run_at)
      if (await evaluator.evaluatePending(t, i, { nowait: false })) stats.evaluations++
    }
  }
  // A retry come due: add the invocation's job at its flow's fair place; or a deferred call's
  // deadline come close: raise its job to its own priority (any worker of the tenant does: it only
  // writes a job row).
  taskList[dueTask(tenantId)] = async (payload, helpers) => {
    const due = parseDuePayload(payload)
    if (due.t !== tenantId) return refuse(helpers.job, due.t)
    if (due.job === undefined) {
      await enqueueDue(options.pool, due.t, due.i)
      return
    }
    const promoted = await promoteJob(options.pool, due.t, due.job, due.priority)
    // A failed job not yet handed back (graphile-worker fails it just after the task throws): try
    // again shortly (this due job is retried). A locked deferred job is running: nothing to do.
    if (promoted === 'locked' && due.requeue) throw new Error(`job ${due.job} is still locked: its return to the queue is tried again`)
  }
  // Retention: the tenant's purge of finished data, run by the cron item passed to run() below
  // (one job per schedule across the tenant's workers); it stops between batches when stopping.
  const retention = options.retention === false ? null : retentionSettings(options.retention)
  if (retention?.schedule) {
    taskList[retentionTask(tenantId)] = async (_payload, helpers) => {
      await purgeTenant(options.pool, tenantId, retention, { log, shouldStop: () => stopping || helpers.abortSignal.aborted })
    }
  }
  eager.tasks = Object.keys(taskList)

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
    // The retention cron item (none without retention; never a crontab file from the working folder).
    parsedCronItems: retentionCronItems(tenantId, retention ?? { schedule: null }),
    logger: quietLogger,
    events,
    // Jobs of a pool or service at its cap are not fetched (they carry its flags).
    ...(caps.active ? { forbiddenFlags: () => caps.forbidden() } : {}),
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
    // Jobs locked to this worker's own id that it is not running (a chain lost after its commit)
    // go back to the queue rather than wait for it to stop.
    const strays = await releaseStrayJobs(options.pool, id, [...runningEager], options.leaseMs)
    if (strays > 0) log.warn({ strays }, 'released eagerly dispatched jobs this worker held but was not running')
    await sweepDeadWorkers(options.pool, options.leaseMs, log)
  }
  await beat()
  const clock = setInterval(() => void publishClock().catch((error: Error) => log.warn({ error: error.message }, 'publishing the fair-share clock failed')), 100)
  clock.unref()
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
      // (Eager chains run inside graphile-worker's tasks: they end before it stops.)
      await runner.stop()
      clearInterval(heartbeat)
      clearInterval(clock)
      await publishClock().catch(() => undefined)
      await evaluator.close()
      // Anything still locked by this worker's own id goes back to the queue now, not in 4 hours.
      await forceUnlock(options.pool, [id]).catch(() => undefined)
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
    await forceUnlock(pool, row.lock_ids)
    log.warn({ deadWorker: row.id }, 'worker missed its lease; its jobs are released to run again')
  }
  return rows.map((r) => r.id)
}

/** The job graphile-worker handed a task: its id, the lock it holds, and how often it was handed out. */
function runningJob(job: { id: string; locked_by: string | null; attempts: number }): RunningJob {
  return { id: job.id, lockedBy: job.locked_by ?? '', attempts: job.attempts }
}
