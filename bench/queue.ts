/**
 * Queue benchmark: fan-out, priority, fair share and retry delay of the Praxis queue
 * (platform/queue), each figure next to a baseline measured in the same run, on an embedded
 * PostgreSQL of its own, with real workers (`startWorker`) in this process and instances started
 * as the API starts them (`Evaluator#start`: rule code in the tenant's isolate). The workers have a
 * pool of their own (CONCURRENCY + 4 connections, as a `praxis worker` process has), the API
 * another: they are separate processes in production. The service is bench/fixtures/queue:
 * `flood` calls the no-op `noop` `count` (≤ 1000, the calls one evaluation may make) times with a
 * priority and a fairness key; `retried` calls `flaky`, which fails its first attempt. A call's
 * *wait* is from its enqueue commit (its start returned) to its handler's start. Each phase has
 * tenants of its own (a tenant's queue, fair-share clock and flows are its own); whatever a phase
 * leaves queued is discarded (graphile-worker's complete_jobs) before the next: backlogs are
 * measured over windows, not drained, so that the run takes minutes. After a backlog is queued
 * the database is ANALYZEd (as autovacuum soon would), on both sides of every comparison.
 *
 *  fanout    FANOUT no-op calls (Maestro's five-year hourly backfill: 43,800) queued by starts of
 *            1000 with no worker running, then worked for FANOUT_WINDOW_S by a worker of
 *            CONCURRENCY: calls started per second (after the first 100) next to a bare
 *            graphile-worker run of as many jobs (add_jobs in batches of 1000, a no-op task, same
 *            concurrency, pool and poll interval); the enqueue rates; the process's peak RSS during
 *            each side (bare first; this phase runs first, while the process is smallest). Then
 *            the same calls with no fan-out (SINGLES instances of one call each), next to the same
 *            bare figure. The fan-out is measured twice: a job and a step per call, and in
 *            micro-batches of BATCH (`callEach(…, { batchSize })`; `noop` has no batch handler, so
 *            its handler runs once per item, and every item's result is recorded in its step).
 *  priority  a high-priority call's wait, SAMPLES times (one at a time, random gaps), under a
 *            backlog of BACKLOG low-priority calls (starts of 1000) being worked by a worker of
 *            CONCURRENCY, next to the same call's wait on the same worker with no backlog; p50
 *            and p99 (of 20 samples, p99 is the largest).
 *  fair      between the fairness keys of one tenant (tenants never share a queue or a worker): a
 *            quiet key's calls, one due every QUIET_MS (QUIET calls, each its own instance,
 *            started on time as independent clients would), while another key's FLOOD calls are
 *            queued and being worked, next to the same quiet calls with no flood: p99 and p50
 *            wait. The flooding key's throughput (calls started per second over FAIR_WINDOW_S from
 *            the end of its enqueue; the quiet calls are sent in its first seconds) next to an
 *            unfair run: the same flood and quiet calls, fair share defeated by sending the quiet
 *            calls with the flood's own key (one flow: first come, first served), in a tenant and
 *            worker of its own. Same work, same path: only the order differs, so the ratio is what
 *            fair share costs the flooder (the platform's cost over bare graphile-worker is the
 *            fan-out's figure).
 *  tenants   the same quiet calls in a tenant of their own (its worker in this process) while
 *            another tenant's TENANT_FLOOD calls are worked by that tenant's worker, `praxis worker` in a
 *            child process as in production, on the same database; next to the quiet calls alone.
 *  retry     `flaky` fails its first attempt (retry: fixed 100 ms, ±20% jitter): the time from the
 *            failure (its throw) to the second attempt's start, next to the delay the worker
 *            scheduled (from the timeline); SAMPLES retries one at a time on an idle worker.
 *
 * Sizes: BENCH_QUEUE_CONCURRENCY (4), BENCH_QUEUE_SAMPLES (20), BENCH_QUEUE_BACKLOG (10000),
 * BENCH_QUEUE_FLOOD (20000), BENCH_QUEUE_QUIET (100), BENCH_QUEUE_QUIET_MS (100),
 * BENCH_QUEUE_FAIR_WINDOW_S (10), BENCH_QUEUE_TENANT_FLOOD (5000), BENCH_QUEUE_FANOUT (43800),
 * BENCH_QUEUE_FANOUT_WINDOW_S (15), BENCH_QUEUE_BATCH (100),
 * BENCH_QUEUE_SINGLES (2000; worked for half the fan-out's window), BENCH_QUEUE_WORKER_POOL
 * (CONCURRENCY + 4), BENCH_QUEUE_PHASES (some of fanout,priority,fair,tenants,retry).
 */
import { spawn } from 'node:child_process'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { makeWorkerUtils, run, type Task } from 'graphile-worker'
import type pg from 'pg'
import pino from 'pino'
import { BundleCache, buildBundle, deployBundle, Evaluator, readGeneratedManifest } from '../platform/engine/index.js'
import { loadService, startWorker, type WorkerHandle } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, quietLogger, resolveWorkflow, startEmbedded } from '../platform/store/index.js'
import { probe } from './fixtures/queue/functions.js'
import type { RecordRow } from './sandbox.js'

const CONCURRENCY = Number(process.env.BENCH_QUEUE_CONCURRENCY ?? 4)
const SAMPLES = Number(process.env.BENCH_QUEUE_SAMPLES ?? 20)
const BACKLOG = Number(process.env.BENCH_QUEUE_BACKLOG ?? 10_000)
const FLOOD = Number(process.env.BENCH_QUEUE_FLOOD ?? 20_000)
const TENANT_FLOOD = Number(process.env.BENCH_QUEUE_TENANT_FLOOD ?? 5000)
// A quiet key asks for a small part of the worker: one call every 100 ms (10/s), about a tenth of
// what a flooded worker of concurrency 4 starts here. At one every 20 ms (50/s) the "quiet" key
// asked for as much as its fair half of the worker, and its waits measured the worker's capacity
// (queues grew whenever the flooded worker ran under ~100 starts/s), not fair share.
const QUIET = Number(process.env.BENCH_QUEUE_QUIET ?? 100)
const QUIET_MS = Number(process.env.BENCH_QUEUE_QUIET_MS ?? 100)
const FAIR_WINDOW_MS = 1000 * Number(process.env.BENCH_QUEUE_FAIR_WINDOW_S ?? 10)
const FANOUT = Number(process.env.BENCH_QUEUE_FANOUT ?? 43_800)
const FANOUT_WINDOW_MS = 1000 * Number(process.env.BENCH_QUEUE_FANOUT_WINDOW_S ?? 15)
const SINGLES = Number(process.env.BENCH_QUEUE_SINGLES ?? 2000)
const BATCH = Number(process.env.BENCH_QUEUE_BATCH ?? 100)
const SINGLES_WINDOW_MS = FANOUT_WINDOW_MS / 2
const WORKER_POOL = Number(process.env.BENCH_QUEUE_WORKER_POOL ?? CONCURRENCY + 4)
const PHASES = ['fanout', 'priority', 'fair', 'tenants', 'retry'] as const
type Phase = (typeof PHASES)[number]
const phases = new Set((process.env.BENCH_QUEUE_PHASES ?? PHASES.join(',')).split(','))
for (const p of phases) if (!PHASES.includes(p as Phase)) throw new Error(`BENCH_QUEUE_PHASES: no phase ${p}; choose from ${PHASES.join(', ')}`)
/** Calls one start makes (an evaluation may make at most 1000). */
const PER_START = 1000
const SERVICE_DIR = 'bench/fixtures/queue'
/** The high-priority call's priority; the backlog's is 0. */
const HIGH = 50
/** Calls a side runs before its measuring window opens (the worker's first steps load its tenant's bundle). */
const WINDOW_AFTER = 100
const STUCK_MS = 120_000
const log = pino({ level: 'silent' })
const MB = 1024 * 1024

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const rssMb = (): number => process.memoryUsage.rss() / MB

/** The host's garbage collector when V8 lets us have it (steadier RSS readings), as in sandbox.ts. */
function hostGc(): () => void {
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as unknown
    if (typeof gc === 'function') return gc as () => void
  } catch {
    // not available: RSS is read without a collection first
  }
  return () => undefined
}

/** Fails with `what()` if `promise` takes longer than `ms`. */
async function deadline<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const stuck = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`queue bench: stuck: ${what()}`)), ms) })
  try {
    return await Promise.race([promise, stuck])
  } finally {
    clearTimeout(timer)
  }
}

/** Prints `line()` every 2 s until stopped. */
function ticker(progress: (line: string) => void, line: () => string): () => void {
  const timer = setInterval(() => progress(line()), 2000)
  return () => clearInterval(timer)
}

/** Samples the process's RSS every 20 ms: the peak, and the RSS when sampling began. */
function rssSampler(): { stop(): { startMb: number; peakMb: number } } {
  const startMb = rssMb()
  let peakMb = startMb
  const timer = setInterval(() => { peakMb = Math.max(peakMb, rssMb()) }, 20)
  return { stop: () => { clearInterval(timer); return { startMb, peakMb: Math.max(peakMb, rssMb()) } } }
}

interface Bench {
  /** The workers' pool, as a `praxis worker` process has (concurrency + 4; BENCH_QUEUE_WORKER_POOL), and the bare runner's. */
  pool: pg.Pool
  /** The API's pool (starts, deploys) and the bench's own queries: the API is another process in production. */
  api: pg.Pool
  url: string
  code: string
  hash: string
  manifest: Awaited<ReturnType<typeof readGeneratedManifest>>
  functions: Awaited<ReturnType<typeof loadService>>['functions']
  progress: (line: string) => void
}

/** A tenant with the bench service deployed, the API's evaluator, and (once started) its worker. */
interface Tenant {
  id: string
  evaluator: Evaluator
  flood: { service: string; workflow: string; bundleId: string }
  retried: { service: string; workflow: string; bundleId: string }
  worker: WorkerHandle | null
}

async function openTenant(b: Bench, id: string): Promise<Tenant> {
  await ensureTenant(b.api, id)
  const bundles = new BundleCache()
  await deployBundle(b.api, bundles, id, 'queue', b.code, b.hash, b.manifest)
  const target = async (name: string) => {
    const [found, ...others] = await resolveWorkflow(b.api, id, name)
    if (!found || others.length > 0) throw new Error(`queue bench workflow ${name}: ${others.length + (found ? 1 : 0)} deployed`)
    return found
  }
  return { id, evaluator: new Evaluator(b.api, bundles), flood: await target('flood'), retried: await target('retried'), worker: null }
}

async function startTenantWorker(b: Bench, t: Tenant): Promise<WorkerHandle> {
  t.worker = await startWorker({ pool: b.pool, log, tenantId: t.id, functions: b.functions, concurrency: CONCURRENCY, leaseMs: 60_000, retention: false })
  return t.worker
}

/** Stops the tenant's worker and evaluator, and discards what it left queued. */
async function closeTenant(b: Bench, t: Tenant): Promise<void> {
  await t.worker?.stop()
  t.worker = null
  await t.evaluator.close()
  await discardJobs(b.api, `praxis.%.${t.id}%`)
}

/** Removes queued jobs of the task identifiers matching `like` (a backlog no worker is to run), through graphile-worker's own API. */
async function discardJobs(pool: pg.Pool, like: string): Promise<void> {
  const utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger })
  try {
    const { rows } = await pool.query<{ id: string }>('select id::text from graphile_worker.jobs where task_identifier like $1', [like])
    for (let i = 0; i < rows.length; i += 5000) await utils.completeJobs(rows.slice(i, i + 5000).map((r) => r.id))
  } finally {
    await utils.release()
  }
}

/**
 * Refreshes the planner's statistics after a backlog was queued into tables that were small or
 * empty (a fresh database), as autovacuum soon would on a server in use: without it, jobs queued
 * faster than autovacuum looks are fetched by plans made for an empty table (the bare
 * graphile-worker side ran at 52 jobs/s that way, 300–1,300 with statistics). Both sides get it.
 */
async function analyze(b: Bench): Promise<void> {
  await b.api.query('analyze')
}

/** Waits until `probe.count(tag)` reaches `n`, printing progress. */
async function untilStarted(b: Bench, tag: string, n: number, label: string): Promise<void> {
  const end = Date.now() + STUCK_MS
  const stop = ticker(b.progress, () => `  ${label}: ${fmt(probe.count(tag))} of ${fmt(n)} started`)
  try {
    while (probe.count(tag) < n) {
      if (Date.now() > end) throw new Error(`queue bench: stuck: ${label}: ${probe.count(tag)} of ${n} calls of ${tag} started`)
      await sleep(5)
    }
  } finally {
    stop()
  }
}

/** Queues `total` calls of `noop` tagged `tag` by starts of up to 1000, one after another; returns the time it took. */
async function enqueue(b: Bench, t: Tenant, tag: string, total: number, options: { priority?: number; key?: string; batch?: number; label: string }): Promise<number> {
  let queued = 0
  const t0 = performance.now()
  const stop = ticker(b.progress, () => `  ${options.label}: ${fmt(queued)} of ${fmt(total)} queued, ${fmt(probe.count(tag))} started`)
  try {
    while (queued < total) {
      const count = Math.min(PER_START, total - queued)
      await t.evaluator.start(t.id, t.flood, { tag, count, priority: options.priority ?? 0, ...(options.key === undefined ? {} : { key: options.key }), ...(options.batch === undefined ? {} : { batch: options.batch }) }, null)
      queued += count
    }
  } finally {
    stop()
  }
  return performance.now() - t0
}

/** One call of `noop` (a start of `flood` with count 1); `wait`: from the start's commit to the handler's start. */
async function oneCall(t: Tenant, tag: string, options: { priority?: number; key?: string }): Promise<{ wait: Promise<number> }> {
  const started = probe.when(`${tag}#0`)
  await t.evaluator.start(t.id, t.flood, { tag, count: 1, priority: options.priority ?? 0, ...(options.key === undefined ? {} : { key: options.key }) }, null)
  const committed = performance.now()
  return { wait: started.then((at) => at - committed) }
}

/** Warms a tenant's worker up: 20 single calls (its isolate loads its bundle), then a flood of 20. */
async function warmUp(b: Bench, t: Tenant): Promise<void> {
  for (let s = 0; s < 20; s++) await deadline((await oneCall(t, `${t.id}-warm-${s}`, {})).wait, STUCK_MS, () => `${t.id}: a warm-up call`)
  await enqueue(b, t, `${t.id}-warm`, 20, { label: `${t.id} warm-up` })
  await untilStarted(b, `${t.id}-warm`, 20, `${t.id} warm-up`)
}

/**
 * QUIET calls with `key`, one due every QUIET_MS, each started on time whether or not the ones
 * before have returned (as independent clients would; at most 32 starts in flight). `settle`
 * resolves with the waits of the calls that started by `within` ms after it is called.
 */
async function quietCalls(t: Tenant, label: string, key: string): Promise<{ settle(within: number): Promise<number[]>; started(): number; sentMs: number }> {
  const waits: number[] = []
  const pending: Promise<void>[] = []
  const inFlight = new Set<Promise<unknown>>()
  const t0 = performance.now()
  for (let k = 0; k < QUIET; k++) {
    const due = t0 + k * QUIET_MS
    const now = performance.now()
    if (due > now) await sleep(due - now)
    while (inFlight.size >= 32) await Promise.race(inFlight)
    const call = oneCall(t, `${label}-${k}`, { key })
    inFlight.add(call)
    void call.finally(() => inFlight.delete(call)).catch(() => undefined)
    pending.push(call.then((c) => c.wait).then((w) => { waits.push(w) }))
  }
  await Promise.all(inFlight)
  const sentMs = performance.now() - t0
  return {
    sentMs,
    started: () => waits.length,
    async settle(within) {
      await Promise.race([Promise.all(pending), sleep(within)])
      return [...waits]
    },
  }
}

// ---- priority -----------------------------------------------------------------------------------

async function benchPriority(b: Bench, record: RecordRow): Promise<void> {
  const t = await openTenant(b, 'qprio')
  try {
    await startTenantWorker(b, t)
    b.progress(`[queue] priority: warming up (worker concurrency ${CONCURRENCY})…`)
    await warmUp(b, t)
    for (let s = 0; s < 5; s++) await deadline((await oneCall(t, `prio-warm-hi-${s}`, { priority: HIGH })).wait, STUCK_MS, () => 'a warm-up call')

    const sample = async (label: string, waiting: () => number): Promise<{ waits: number[]; backlog: number[] }> => {
      const waits: number[] = []
      const backlog: number[] = []
      for (let s = 0; s < SAMPLES; s++) {
        backlog.push(waiting())
        waits.push(await deadline((await oneCall(t, `${label}-${s}`, { priority: HIGH })).wait, STUCK_MS, () => `high-priority call ${label}-${s}`))
        // A random gap, so that no sample lines up with the one before.
        await sleep(10 + Math.random() * 20)
      }
      return { waits, backlog }
    }
    b.progress(`[queue] priority: ${SAMPLES} high-priority calls (priority ${HIGH}) on the idle worker…`)
    const idle = await sample('prio-idle', () => 0)

    b.progress(`[queue] priority: queueing ${fmt(BACKLOG)} low-priority calls (priority 0, starts of ${PER_START}) while the worker runs…`)
    const enqueueMs = await enqueue(b, t, 'prio-low', BACKLOG, { priority: 0, label: 'backlog' })
    await analyze(b)
    const waiting = (): number => BACKLOG - probe.count('prio-low')
    b.progress(`  queued in ${secs(enqueueMs)}; ${SAMPLES} high-priority calls under the backlog (${fmt(waiting())} low-priority calls waiting)…`)
    const busy = await sample('prio-busy', waiting)
    const least = Math.min(...busy.backlog)
    b.progress(`  low-priority calls waiting during the samples: ${fmt(least)}–${fmt(Math.max(...busy.backlog))}; discarding the rest of the backlog`)
    if (least < 10 * CONCURRENCY) throw new Error(`queue bench: the backlog ran dry during the priority samples (${least} waiting): raise BENCH_QUEUE_BACKLOG`)

    const p50 = { busy: quantile(busy.waits, 0.5), idle: quantile(idle.waits, 0.5) }
    const p99 = { busy: quantile(busy.waits, 0.99), idle: quantile(idle.waits, 0.99) }
    record('queue', `priority: high-priority call's wait p50 under ${fmt(BACKLOG)} low-priority calls (≥ ${fmt(least)} waiting; concurrency ${CONCURRENCY}) vs no backlog`, p50.busy, 'ms', p50.idle, { text: '< 20 ms', met: p50.busy < 20 })
    record('queue', `… p99${SAMPLES < 100 ? ` (the largest of ${SAMPLES})` : ''}`, p99.busy, 'ms', p99.idle, { text: '< 20 ms', met: p99.busy < 20 })
  } finally {
    await closeTenant(b, t)
  }
}

// ---- fair share ---------------------------------------------------------------------------------

interface FloodRun {
  /** Waits of the quiet calls that started within the window (or soon after, when fair). */
  quiet: number[]
  /** Flooding calls started per second over the window. */
  loudRate: number
  /** All calls (flooding and quiet) started per second over the window. */
  allRate: number
  enqueueMs: number
}

/**
 * One flood run in a tenant of its own: FLOOD calls of key 'loud' queued while its worker runs,
 * then the window: QUIET calls with `quietKey` sent at its start, the flood's starts counted over it.
 */
async function floodRun(b: Bench, tenantId: string, quietKey: string): Promise<FloodRun> {
  const t = await openTenant(b, tenantId)
  try {
    await startTenantWorker(b, t)
    await warmUp(b, t)
    const loud = `${tenantId}-loud`
    const enqueueMs = await enqueue(b, t, loud, FLOOD, { key: 'loud', label: `${tenantId}: flood` })
    await analyze(b)
    b.progress(`  ${tenantId}: flood queued in ${secs(enqueueMs)} (${fmt(FLOOD - probe.count(loud))} waiting); ${QUIET} quiet calls of key '${quietKey}', one every ${QUIET_MS} ms, and a ${secs(FAIR_WINDOW_MS)} window…`)
    const w0 = performance.now()
    const from = probe.count(loud)
    const quiet = await quietCalls(t, `${tenantId}-quiet`, quietKey)
    const rest = FAIR_WINDOW_MS - (performance.now() - w0)
    if (rest > 0) await sleep(rest)
    const windowMs = performance.now() - w0
    const started = probe.count(loud) - from
    const quietStarted = quiet.started()
    if (FLOOD - probe.count(loud) < 10 * CONCURRENCY) throw new Error(`queue bench: the flood ran dry within the window (${tenantId}): raise BENCH_QUEUE_FLOOD`)
    // Fair: every quiet call starts (wait for the stragglers, up to a minute); defeated: they wait behind the flood.
    const waits = await quiet.settle(quietKey === 'quiet' ? 60_000 : 0)
    b.progress(`  ${tenantId}: ${fmt(started)} flood calls started in ${secs(windowMs)}; ${waits.length} of ${QUIET} quiet calls started (sent in ${secs(quiet.sentMs)}); ${fmt(FLOOD - probe.count(loud))} flood calls left, discarded`)
    return { quiet: waits, loudRate: started / (windowMs / 1000), allRate: (started + quietStarted) / (windowMs / 1000), enqueueMs }
  } finally {
    await closeTenant(b, t)
  }
}

async function benchFair(b: Bench, record: RecordRow): Promise<void> {
  const alone = await (async () => {
    const t = await openTenant(b, 'qalone')
    try {
      await startTenantWorker(b, t)
      await warmUp(b, t)
      b.progress(`[queue] fair share: ${QUIET} quiet calls, one every ${QUIET_MS} ms, no flood (worker concurrency ${CONCURRENCY})…`)
      const quiet = await quietCalls(t, 'alone', 'quiet')
      const waits = await quiet.settle(STUCK_MS)
      if (waits.length < QUIET) throw new Error(`queue bench: ${QUIET - waits.length} quiet calls with no flood never started`)
      return waits
    } finally {
      await closeTenant(b, t)
    }
  })()
  b.progress(`[queue] fair share: ${fmt(FLOOD)} calls of key 'loud'; the quiet calls with key 'quiet'…`)
  const fair = await floodRun(b, 'qfair', 'quiet')
  b.progress('[queue] fair share defeated: the same, the quiet calls sent with key \'loud\' (one flow: first come, first served)…')
  const unfair = await floodRun(b, 'qunfair', 'loud')
  if (fair.quiet.length < QUIET) throw new Error(`queue bench: ${QUIET - fair.quiet.length} of the quiet calls did not start within a minute of the window's end while another key flooded`)
  const p99 = { alone: quantile(alone, 0.99), fair: quantile(fair.quiet, 0.99) }
  record('queue', `fair share (keys of one tenant): quiet key's p99 wait while another key floods (${fmt(FLOOD)} queued) vs no flood`, p99.fair, 'ms', p99.alone, { text: '≤ 3x', met: p99.fair <= 3 * p99.alone })
  record('queue', '… quiet key\'s p50 wait, the same', quantile(fair.quiet, 0.5), 'ms', quantile(alone, 0.5))
  record('queue', `… flooding key's throughput vs fair share defeated (one flow), over ${secs(FAIR_WINDOW_MS)}`, fair.loudRate, 'calls/s', unfair.loudRate, { text: '≥ 0.9x', met: fair.loudRate >= 0.9 * unfair.loudRate })
  record('queue', '… all calls (flood and quiet) started/s over the window, fair vs defeated', fair.allRate, 'calls/s', unfair.allRate)
  record('queue', `… with fair share defeated: quiet calls started within the window, of ${QUIET} (fair: all, the last ${secs(Math.max(...fair.quiet))} after its commit)`, unfair.quiet.length, 'calls', null)
}

/** Waits until no job of the task identifiers matching `like` is queued. */
async function untilQueueEmpty(b: Bench, like: string, label: string): Promise<void> {
  const end = Date.now() + STUCK_MS
  for (;;) {
    const { rows: [r] } = await b.api.query<{ n: number }>('select count(*)::int as n from graphile_worker.jobs where task_identifier like $1', [like])
    if (r!.n === 0) return
    if (Date.now() > end) throw new Error(`queue bench: stuck: ${label}: ${r!.n} jobs queued`)
    await sleep(50)
  }
}

// ---- fair share between tenants -----------------------------------------------------------------

/** A tenant's worker as production runs it: `praxis worker` in a child process. */
async function childWorker(b: Bench, tenantId: string): Promise<{ stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'worker', SERVICE_DIR, '--tenant', tenantId], {
    env: { ...process.env, DATABASE_URL: b.url, PRAXIS_WORKER_CONCURRENCY: String(CONCURRENCY), LOG_LEVEL: 'warn', PRAXIS_RETENTION_SCHEDULE: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await deadline(exited, 60_000, () => `${tenantId}'s worker process to stop`)
  }
  try {
    await deadline(new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve() })
      void exited.then((code) => reject(new Error(`${tenantId}'s worker process exited (${code}) before it was ready: ${stderr}`)))
    }), 60_000, () => `${tenantId}'s worker process to start: ${stderr}`)
  } catch (error) {
    await stop().catch(() => undefined)
    throw error
  }
  return { stop }
}

async function benchTenants(b: Bench, record: RecordRow): Promise<void> {
  const quiet = await openTenant(b, 'qquiet')
  const loud = await openTenant(b, 'qloud')
  let child: Awaited<ReturnType<typeof childWorker>> | undefined
  try {
    await startTenantWorker(b, quiet)
    await warmUp(b, quiet)
    b.progress(`[queue] tenants: ${QUIET} quiet calls of tenant qquiet, one every ${QUIET_MS} ms, alone…`)
    const alone = await (await quietCalls(quiet, 'tenant-alone', 'quiet')).settle(STUCK_MS)
    b.progress('[queue] tenants: starting tenant qloud\'s worker (`praxis worker`, a child process)…')
    child = await childWorker(b, loud.id)
    const warm = await enqueue(b, loud, 'qloud-warm', 50, { label: 'qloud warm-up' })
    await untilQueueEmpty(b, 'praxis.invoke.qloud.%', 'qloud warm-up')
    b.progress(`[queue] tenants: tenant qloud queues ${fmt(TENANT_FLOOD)} calls (its worker running, warmed up by 50 calls queued in ${secs(warm)}); then the quiet calls of tenant qquiet…`)
    const enqueueMs = await enqueue(b, loud, 'qloud-flood', TENANT_FLOOD, { label: 'qloud flood' })
    await analyze(b)
    const { rows: [before] } = await b.api.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs where task_identifier like 'praxis.invoke.qloud.%'")
    const sent = await quietCalls(quiet, 'tenant-flooded', 'quiet')
    const during = await sent.settle(STUCK_MS)
    const { rows: [after] } = await b.api.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs where task_identifier like 'praxis.invoke.qloud.%'")
    b.progress(`  qloud's flood queued in ${secs(enqueueMs)}; quiet calls sent in ${secs(sent.sentMs)}; qloud's queue went from ${fmt(before!.n)} to ${fmt(after!.n)} jobs meanwhile; stopping its worker, discarding the rest`)
    if (after!.n < 10 * CONCURRENCY) throw new Error('queue bench: the other tenant\'s flood ran dry before the quiet calls ended: raise BENCH_QUEUE_TENANT_FLOOD')
    if (during.length < QUIET) throw new Error(`queue bench: ${QUIET - during.length} quiet calls never started while another tenant flooded`)
    const p99 = { alone: quantile(alone, 0.99), during: quantile(during, 0.99) }
    record('queue', `between tenants: quiet tenant's p99 wait while another tenant floods (${fmt(TENANT_FLOOD)} queued; own workers, one database) vs alone`, p99.during, 'ms', p99.alone, { text: '≤ 3x', met: p99.during <= 3 * p99.alone })
    record('queue', '… quiet tenant\'s p50 wait, the same', quantile(during, 0.5), 'ms', quantile(alone, 0.5))
  } finally {
    await child?.stop()
    await closeTenant(b, quiet)
    await closeTenant(b, loud)
  }
}

// ---- fan-out ------------------------------------------------------------------------------------

/** One side of the fan-out: enqueue time, calls started per second over the window, RSS. */
interface Side { enqueueMs: number; rate: number; started: number; windowMs: number; startMb: number; peakMb: number }

/**
 * Counts `count()` over `ms` once WINDOW_AFTER calls have started; the window closes
 * early when fewer than 10 × CONCURRENCY calls are left (a side that would run dry within it).
 */
async function window(b: Bench, label: string, count: () => number, total: number, ms: number): Promise<{ started: number; windowMs: number }> {
  const end = Date.now() + STUCK_MS
  while (count() < WINDOW_AFTER) {
    if (Date.now() > end) throw new Error(`queue bench: stuck: ${label}: ${count()} calls started`)
    await sleep(5)
  }
  const from = count()
  const w0 = performance.now()
  const stop = ticker(b.progress, () => `  ${label}: ${fmt(count() - from)} started in ${secs(performance.now() - w0)}`)
  while (performance.now() - w0 < ms && total - count() > 10 * CONCURRENCY) await sleep(20)
  stop()
  const windowMs = performance.now() - w0
  const started = count() - from
  if (windowMs < ms) b.progress(`  ${label}: ${fmt(total - count())} calls left after ${secs(windowMs)}: the window closed early`)
  return { started, windowMs }
}

/** The Praxis side of the fan-out, without micro-batches or (`batch`) with them. */
async function fanOutPraxis(b: Bench, gc: () => void, batch?: number): Promise<Side> {
  const t = await openTenant(b, batch ? 'qfanb' : 'qfan')
  const tag = batch ? 'fanb' : 'fan'
  const label = batch ? `fan-out in micro-batches of ${batch}, Praxis` : 'fan-out, Praxis'
  try {
    // Warmed as the bare side is: a worker runs some calls first (its isolate loads the bundle).
    await startTenantWorker(b, t)
    await warmUp(b, t)
    await t.worker!.stop()
    t.worker = null
    gc()
    const rss = rssSampler()
    b.progress(`[queue] ${label}: queueing ${fmt(FANOUT)} no-op calls by ${Math.ceil(FANOUT / PER_START)} starts, no worker running…`)
    const enqueueMs = await enqueue(b, t, tag, FANOUT, { label, ...(batch ? { batch } : {}) })
    await analyze(b)
    b.progress(`  queued in ${secs(enqueueMs)}; a worker (concurrency ${CONCURRENCY}) for ${secs(FANOUT_WINDOW_MS)}…`)
    const worker = await startTenantWorker(b, t)
    const w = await window(b, label, () => probe.count(tag), FANOUT, FANOUT_WINDOW_MS)
    const mem = rss.stop()
    b.progress(`  worker: ${fmt(worker.stats.succeeded)} succeeded, ${fmt(worker.stats.evaluations)} evaluate jobs (results queued while their instance was busy); discarding the rest`)
    return { enqueueMs, rate: w.started / (w.windowMs / 1000), ...w, ...mem }
  } finally {
    await closeTenant(b, t)
  }
}

/**
 * The same no-op calls with no fan-out: SINGLES instances of one call each (16 starts at a time,
 * no worker running), then a worker for half the fan-out's window. Each result is then its
 * instance's only one, so every step takes the optimistic fused path; in the fan-out, all results
 * after an instance's first find it moved since their job's snapshot and take the locked path.
 */
async function singlesPraxis(b: Bench): Promise<Side> {
  const t = await openTenant(b, 'qsingle')
  try {
    await startTenantWorker(b, t)
    await warmUp(b, t)
    await t.worker!.stop()
    t.worker = null
    b.progress(`[queue] no fan-out, Praxis: queueing ${fmt(SINGLES)} instances of one no-op call each, no worker running…`)
    let queued = 0
    const stop = ticker(b.progress, () => `  single calls: ${fmt(queued)} of ${fmt(SINGLES)} queued`)
    const t0 = performance.now()
    try {
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (queued < SINGLES) {
          queued++
          await t.evaluator.start(t.id, t.flood, { tag: 'single', count: 1 }, null)
        }
      }))
    } finally {
      stop()
    }
    const enqueueMs = performance.now() - t0
    await analyze(b)
    b.progress(`  queued in ${secs(enqueueMs)}; a worker (concurrency ${CONCURRENCY}) for ${secs(SINGLES_WINDOW_MS)}…`)
    await startTenantWorker(b, t)
    const w = await window(b, 'no fan-out, Praxis', () => probe.count('single'), SINGLES, SINGLES_WINDOW_MS)
    return { enqueueMs, rate: w.started / (w.windowMs / 1000), ...w, startMb: 0, peakMb: 0 }
  } finally {
    await closeTenant(b, t)
  }
}

/** The bare graphile-worker side: a no-op task, the Praxis worker's concurrency and poll interval; jobs added by add_jobs in batches of 1000 before the runner starts. */
async function fanOutBare(b: Bench, gc: () => void): Promise<Side> {
  let done = 0
  const noop: Task = async () => { done++ }
  const utils = await makeWorkerUtils({ pgPool: b.api, logger: quietLogger })
  const add = async (n: number): Promise<void> => {
    for (let queued = 0; queued < n; queued += PER_START) {
      await utils.addJobs(Array.from({ length: Math.min(PER_START, n - queued) }, (_, k) => ({ identifier: 'bench_noop', payload: { tag: 'bare', i: queued + k } })))
    }
  }
  const runner = async () => run({ pgPool: b.pool, concurrency: CONCURRENCY, noHandleSignals: true, pollInterval: 1000, taskList: { bench_noop: noop }, logger: quietLogger })
  try {
    // Warm-up: as many calls as the Praxis side's, through a runner of their own.
    await add(40)
    const warm = await runner()
    while (done < 40) await sleep(5)
    await warm.stop()
    done = 0
    gc()
    const rss = rssSampler()
    b.progress(`[queue] fan-out, bare graphile-worker: queueing ${fmt(FANOUT)} no-op jobs by add_jobs in batches of ${PER_START}, no runner running…`)
    const t0 = performance.now()
    await add(FANOUT)
    const enqueueMs = performance.now() - t0
    await analyze(b)
    b.progress(`  queued in ${secs(enqueueMs)}; a runner (concurrency ${CONCURRENCY}) for ${secs(FANOUT_WINDOW_MS)}…`)
    const r = await runner()
    try {
      const w = await window(b, 'fan-out, bare', () => done, FANOUT, FANOUT_WINDOW_MS)
      return { enqueueMs, rate: w.started / (w.windowMs / 1000), ...w, ...rss.stop() }
    } finally {
      await r.stop()
    }
  } finally {
    await utils.release()
    await discardJobs(b.api, 'bench_noop')
  }
}

async function benchFanOut(b: Bench, record: RecordRow): Promise<void> {
  const gc = hostGc()
  gc()
  const before = rssMb()
  // The bare side first, while the process is smallest; each side's rise is printed beside its peak.
  const bare = await fanOutBare(b, gc)
  const praxis = await fanOutPraxis(b, gc)
  const batched = await fanOutPraxis(b, gc, BATCH)
  const singles = await singlesPraxis(b)
  b.progress(`  RSS: ${fmt(before)} MB before the phase; bare ${fmt(bare.startMb)} → ${fmt(bare.peakMb)} MB, then Praxis ${fmt(praxis.startMb)} → ${fmt(praxis.peakMb)} MB, then Praxis in batches ${fmt(batched.startMb)} → ${fmt(batched.peakMb)} MB`)
  const n = fmt(FANOUT)
  record('queue', `fan-out: ${n} no-op calls queued, calls started/s over ${secs(FANOUT_WINDOW_MS)} (concurrency ${CONCURRENCY}), in micro-batches of ${BATCH}`, batched.rate, 'calls/s', bare.rate, { text: '≥ 0.5x', met: batched.rate >= 0.5 * bare.rate })
  record('queue', '… without micro-batches (a job and a step per call)', praxis.rate, 'calls/s', bare.rate)
  record('queue', `… the same calls with no fan-out: ${fmt(SINGLES)} instances of one call each, calls started/s over ${secs(singles.windowMs)}`, singles.rate, 'calls/s', bare.rate)
  record('queue', `… enqueue of the ${n} (starts of 1000 vs add_jobs batches of 1000)`, FANOUT / (praxis.enqueueMs / 1000), 'calls/s', FANOUT / (bare.enqueueMs / 1000))
  record('queue', `… enqueue of the ${n} in micro-batches of ${BATCH}`, FANOUT / (batched.enqueueMs / 1000), 'calls/s', FANOUT / (bare.enqueueMs / 1000))
  record('queue', '… peak RSS of the process during each side (enqueue and window; the bare side ran first), without micro-batches', praxis.peakMb, 'MB', bare.peakMb)
  record('queue', `… the same, in micro-batches of ${BATCH}`, batched.peakMb, 'MB', bare.peakMb)
  record('queue', `… the same, above the process's RSS before the phase (${fmt(before)} MB), without and in micro-batches`, Math.max(praxis.peakMb, batched.peakMb) - before, 'MB', bare.peakMb - before)
}

// ---- retry delay --------------------------------------------------------------------------------

async function benchRetry(b: Bench, record: RecordRow): Promise<void> {
  const t = await openTenant(b, 'qretry')
  try {
    await startTenantWorker(b, t)
    b.progress(`[queue] retry: ${SAMPLES} calls of flaky (fails its first attempt; retry fixed 100 ms ±20%), one at a time…`)
    const observed: number[] = []
    const scheduled: number[] = []
    for (let s = -2; s < SAMPLES; s++) {
      const tag = `retry-${s}`
      const failed = probe.when(`${tag}#fail`)
      const retried = probe.when(`${tag}#retry`)
      const { id } = await t.evaluator.start(t.id, t.retried, { tag }, null)
      const [f, r] = await deadline(Promise.all([failed, retried]), 60_000, () => `retry ${tag}`)
      const { rows } = await b.api.query<{ ms: number }>("select (data->>'retryInMs')::int as ms from praxis.timeline where tenant_id = $1 and instance_id = $2 and kind = 'invocation.retrying'", [t.id, id])
      // The first two warm up.
      if (s >= 0) { observed.push(r - f); scheduled.push(rows[0]!.ms) }
      await sleep(20)
    }
    const over = observed.map((o, i) => o - scheduled[i]!)
    record('queue', `retry delay: failure to the next attempt's start, p50 of ${SAMPLES} (configured 100 ms ±20%), vs the delay scheduled`, quantile(observed, 0.5), 'ms', quantile(scheduled, 0.5))
    record('queue', '… observed minus scheduled, p50', quantile(over, 0.5), 'ms', null)
    record('queue', '… observed minus scheduled, largest', Math.max(...over), 'ms', null)
  } finally {
    await closeTenant(b, t)
  }
}

// ---- entry --------------------------------------------------------------------------------------

export async function benchQueue(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-queue-pg')
  await rm(dataDir, { recursive: true, force: true })
  progress('[queue] starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 55000 + (process.pid % 90) })
  let pool: pg.Pool | undefined
  let api: pg.Pool | undefined
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    pool = createPool(server.urlFor('bench'), WORKER_POOL)
    api = createPool(server.urlFor('bench'), 30)
    await migrate(api)
    const { code, hash } = await buildBundle(SERVICE_DIR)
    const b: Bench = { pool, api, url: server.urlFor('bench'), code, hash, manifest: await readGeneratedManifest(SERVICE_DIR), functions: (await loadService(SERVICE_DIR)).functions, progress }
    const t0 = performance.now()
    const timed = async (phase: Phase, body: () => Promise<void>): Promise<void> => {
      if (!phases.has(phase)) return
      const t = performance.now()
      await body()
      progress(`[queue] ${phase}: ${secs(performance.now() - t)}`)
    }
    // The fan-out first: its RSS figures are read while the process is smallest.
    await timed('fanout', () => benchFanOut(b, record))
    await timed('priority', () => benchPriority(b, record))
    await timed('fair', () => benchFair(b, record))
    await timed('tenants', () => benchTenants(b, record))
    await timed('retry', () => benchRetry(b, record))
    progress(`[queue] done in ${secs(performance.now() - t0)}`)
  } finally {
    await pool?.end()
    await api?.end()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
