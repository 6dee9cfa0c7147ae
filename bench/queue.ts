/**
 * Queue benchmark: priority, fair share, fan-out and retry delays of the Praxis queue
 * (platform/queue), each figure next to a baseline measured in the same run, on an embedded
 * PostgreSQL of its own, with real workers (`startWorker`) in this process and instances started
 * as the API starts them (`Evaluator#start`, rule code in the tenant's isolate). The service is
 * bench/fixtures/queue: `flood` calls the no-op `noop` up to 1000 times (the calls one evaluation
 * may make), with a priority and a fairness key; `retried` calls `flaky`, which fails its first
 * attempt. A call's *wait* is from its enqueue commit (the start returned) to its handler's start.
 * Every phase has a tenant of its own (a tenant's queue, fair-share clock and flows are its own).
 *
 *  priority  a high-priority call's wait, SAMPLES times, under a backlog of BACKLOG low-priority
 *            calls being worked by a worker (CONCURRENCY), next to the same call's wait on the
 *            same worker with no backlog; p50 and p99 (of 20 samples, p99 is the largest).
 *  fair      a quiet flow (fairness key 'quiet', one call every QUIET_MS, QUIET calls) while
 *            another key floods (FLOOD calls, queued by starts of 1000 before the quiet calls
 *            begin): the quiet calls' p99 wait next to their p99 with no flood; the flooding key's
 *            throughput next to an unfair run: the same flood and the same quiet calls with fair
 *            share defeated (the quiet calls sent with the flood's own key: one flow, first come
 *            first served). Same work, same platform path: only the order differs, so the ratio is
 *            what fair share costs the flooder (what the platform costs over bare graphile-worker
 *            is the fan-out figure). Fairness is between the keys of one tenant: tenants never
 *            share a queue or a worker. A cross-tenant figure follows: the quiet calls in a tenant
 *            of their own, with their own worker, while another tenant's worker (a child process,
 *            `praxis worker`, as in production) works the same flood in the same database.
 *  fanout    FANOUT no-op calls (Maestro's five-year hourly backfill: 43,800) by starts of 1000,
 *            next to a bare graphile-worker run of as many jobs (add_jobs in batches of 1000, a
 *            no-op task) at the same concurrency: jobs/s of each, from the first enqueue to the
 *            last result recorded (job completed), and the process's peak RSS during each.
 *            Micro-batches are not built: the figure is without them.
 *  retry     `flaky` fails its first attempt (retry: fixed, 100 ms ±20% jitter): the time from
 *            the failure (the throw) to the second attempt's start, next to the delay the worker
 *            scheduled (from the timeline); SAMPLES retries, one at a time, idle worker.
 *
 * Sizes: BENCH_QUEUE_CONCURRENCY (4), BENCH_QUEUE_SAMPLES (20), BENCH_QUEUE_BACKLOG (10000),
 * BENCH_QUEUE_FLOOD (20000), BENCH_QUEUE_QUIET (200), BENCH_QUEUE_QUIET_MS (20),
 * BENCH_QUEUE_FANOUT (43800), BENCH_QUEUE_PHASES (priority,fair,tenants,fanout,retry).
 */
import { spawn, type ChildProcess } from 'node:child_process'
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
const QUIET = Number(process.env.BENCH_QUEUE_QUIET ?? 200)
const QUIET_MS = Number(process.env.BENCH_QUEUE_QUIET_MS ?? 20)
const FANOUT = Number(process.env.BENCH_QUEUE_FANOUT ?? 43_800)
const PHASES = ['priority', 'fair', 'tenants', 'fanout', 'retry'] as const
type Phase = (typeof PHASES)[number]
const phases = new Set((process.env.BENCH_QUEUE_PHASES ?? PHASES.join(',')).split(','))
for (const p of phases) if (!PHASES.includes(p as Phase)) throw new Error(`BENCH_QUEUE_PHASES: no phase ${p}; choose from ${PHASES.join(', ')}`)
/** Calls one start makes (an evaluation may make at most 1000). */
const PER_START = 1000
const SERVICE_DIR = 'bench/fixtures/queue'
const HIGH = 50
const STUCK_MS = 300_000
const log = pino({ level: 'silent' })
const MB = 1024 * 1024

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number): string => n.toLocaleString('en-US')
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

/** Fails with `what` if `promise` takes longer than `ms`. */
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

/** Samples the process's RSS every 20 ms: the peak seen, and the RSS when it began. */
function rssSampler(): { stop(): { startMb: number; peakMb: number } } {
  const startMb = rssMb()
  let peakMb = startMb
  const timer = setInterval(() => { peakMb = Math.max(peakMb, rssMb()) }, 20)
  return { stop: () => { clearInterval(timer); return { startMb, peakMb: Math.max(peakMb, rssMb()) } } }
}

interface Bench {
  pool: pg.Pool
  url: string
  code: string
  hash: string
  manifest: Awaited<ReturnType<typeof readGeneratedManifest>>
  functions: Awaited<ReturnType<typeof loadService>>['functions']
  progress: (line: string) => void
}

/** A tenant with the bench service deployed, the API's evaluator, and (when started) its worker. */
interface Tenant {
  id: string
  evaluator: Evaluator
  flood: { service: string; workflow: string; bundleId: string }
  retried: { service: string; workflow: string; bundleId: string }
  worker: WorkerHandle | null
}

async function openTenant(b: Bench, id: string): Promise<Tenant> {
  await ensureTenant(b.pool, id)
  const bundles = new BundleCache()
  await deployBundle(b.pool, bundles, id, 'queue', b.code, b.hash, b.manifest)
  const target = async (name: string) => {
    const [found, ...others] = await resolveWorkflow(b.pool, id, name)
    if (!found || others.length > 0) throw new Error(`queue bench workflow ${name}: ${others.length + (found ? 1 : 0)} deployed`)
    return found
  }
  return { id, evaluator: new Evaluator(b.pool, bundles), flood: await target('flood'), retried: await target('retried'), worker: null }
}

async function startTenantWorker(b: Bench, t: Tenant): Promise<WorkerHandle> {
  t.worker = await startWorker({ pool: b.pool, log, tenantId: t.id, functions: b.functions, concurrency: CONCURRENCY, leaseMs: 60_000, retention: false })
  return t.worker
}

async function closeTenant(t: Tenant): Promise<void> {
  await t.worker?.stop()
  t.worker = null
  await t.evaluator.close()
}

/** Whether every call of these instances has its result recorded and evaluated (no pending invocation, no unconsumed event). */
async function settled(pool: pg.Pool, tenantId: string, instances: string[]): Promise<{ pending: number; events: number }> {
  const { rows: [r] } = await pool.query<{ pending: number; events: number }>(
    `select (select count(*) from praxis.invocations where tenant_id = $1 and instance_id = any($2::uuid[]) and status = 'pending')::int as pending,
            (select count(*) from praxis.events where tenant_id = $1 and instance_id = any($2::uuid[]) and consumed_at is null)::int as events`, [tenantId, instances])
  return r!
}

async function untilSettled(pool: pg.Pool, tenantId: string, instances: string[], what: string): Promise<void> {
  const end = Date.now() + STUCK_MS
  for (;;) {
    const s = await settled(pool, tenantId, instances)
    if (s.pending === 0 && s.events === 0) return
    if (Date.now() > end) throw new Error(`queue bench: stuck: ${what}: ${s.pending} calls pending, ${s.events} results unevaluated`)
    await sleep(20)
  }
}

/** Waits until `tag` has `n` starts, printing progress. */
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

/** Queues `total` calls of `noop` tagged `tag` by starts of up to 1000 (one after another); returns the instances. */
async function enqueue(b: Bench, t: Tenant, tag: string, total: number, options: { priority?: number; key?: string; label: string }): Promise<string[]> {
  const ids: string[] = []
  let queued = 0
  const stop = ticker(b.progress, () => `  ${options.label}: ${fmt(queued)} of ${fmt(total)} queued, ${fmt(probe.count(tag))} started`)
  try {
    for (let n = 0; queued < total; n++) {
      const count = Math.min(PER_START, total - queued)
      const input = { tag, count, priority: options.priority ?? 0, ...(options.key === undefined ? {} : { key: options.key }) }
      ids.push((await t.evaluator.start(t.id, t.flood, input, null)).id)
      queued += count
    }
  } finally {
    stop()
  }
  return ids
}

/** One call of `noop` (a start of `flood` with count 1): its wait, from the start's commit to the handler's start. */
async function oneCall(t: Tenant, tag: string, options: { priority?: number; key?: string }): Promise<{ wait: Promise<number> }> {
  const started = probe.when(`${tag}#0`)
  await t.evaluator.start(t.id, t.flood, { tag, count: 1, priority: options.priority ?? 0, ...(options.key === undefined ? {} : { key: options.key }) }, null)
  const committed = performance.now()
  return { wait: started.then((at) => at - committed) }
}

/** QUIET calls with `key`, one every QUIET_MS (each start awaited, the next due on the clock); resolves with their waits. */
async function quietCalls(t: Tenant, label: string, key: string): Promise<{ waits: Promise<number[]>; sentMs: number }> {
  const waits: Promise<number>[] = []
  const t0 = performance.now()
  for (let k = 0; k < QUIET; k++) {
    const due = t0 + k * QUIET_MS
    const now = performance.now()
    if (due > now) await sleep(due - now)
    waits.push((await oneCall(t, `${label}-${k}`, { key })).wait)
  }
  return { waits: Promise.all(waits), sentMs: performance.now() - t0 }
}

// ---- priority -----------------------------------------------------------------------------------

async function benchPriority(b: Bench, record: RecordRow): Promise<void> {
  const t = await openTenant(b, 'qprio')
  try {
    await startTenantWorker(b, t)
    b.progress(`[queue] priority: warming up (worker concurrency ${CONCURRENCY})…`)
    const warm = await enqueue(b, t, 'prio-warm', 300, { label: 'warm-up' })
    for (let s = 0; s < 5; s++) await deadline((await oneCall(t, `prio-warm-hi-${s}`, { priority: HIGH })).wait, STUCK_MS, () => 'a warm-up call')
    await untilSettled(b.pool, t.id, warm, 'the warm-up')

    const sample = async (label: string, during: () => number): Promise<{ waits: number[]; backlog: number[] }> => {
      const waits: number[] = []
      const backlog: number[] = []
      for (let s = 0; s < SAMPLES; s++) {
        backlog.push(during())
        waits.push(await deadline((await oneCall(t, `${label}-${s}`, { priority: HIGH })).wait, STUCK_MS, () => `high-priority call ${label}-${s}`))
        // A random gap, so a sample never lines up with the one before.
        await sleep(10 + Math.random() * 20)
      }
      return { waits, backlog }
    }
    b.progress(`[queue] priority: ${SAMPLES} high-priority calls (priority ${HIGH}) on an idle worker…`)
    const idle = await sample('prio-idle', () => 0)

    b.progress(`[queue] priority: queueing a backlog of ${fmt(BACKLOG)} low-priority calls (priority 0) while the worker runs…`)
    const ids = await enqueue(b, t, 'prio-low', BACKLOG, { priority: 0, label: 'backlog' })
    const waiting = (): number => BACKLOG - probe.count('prio-low')
    b.progress(`[queue] priority: ${SAMPLES} high-priority calls under the backlog (${fmt(waiting())} low-priority calls waiting)…`)
    const busy = await sample('prio-busy', waiting)
    const least = Math.min(...busy.backlog)
    b.progress(`  backlog waiting during the samples: ${fmt(least)}–${fmt(Math.max(...busy.backlog))} calls`)
    if (least < 10 * CONCURRENCY) throw new Error(`queue bench: the backlog ran dry during the priority samples (${least} waiting): raise BENCH_QUEUE_BACKLOG`)
    b.progress(`[queue] priority: letting the backlog drain (${fmt(waiting())} left)…`)
    await untilStarted(b, 'prio-low', BACKLOG, 'backlog')
    await untilSettled(b.pool, t.id, ids, 'the priority backlog')

    const p50 = { busy: quantile(busy.waits, 0.5), idle: quantile(idle.waits, 0.5) }
    const p99 = { busy: quantile(busy.waits, 0.99), idle: quantile(idle.waits, 0.99) }
    const under = `under a backlog of ${fmt(BACKLOG)} (≥ ${fmt(least)} waiting), concurrency ${CONCURRENCY}`
    record('queue', `high-priority wait p50, ${under}`, p50.busy, 'ms', p50.idle, { text: '< 20 ms', met: p50.busy < 20 })
    record('queue', `high-priority wait p99 (max of ${SAMPLES}), same`, p99.busy, 'ms', p99.idle, { text: '< 20 ms', met: p99.busy < 20 })
  } finally {
    await closeTenant(t)
  }
}

// ---- fair share ---------------------------------------------------------------------------------

interface FloodRun { quiet: number[]; loudRate: number; loudMs: number }

/**
 * One fair-share run in tenant `t` (its worker started): FLOOD calls with key 'loud' queued, then
 * QUIET calls one every QUIET_MS with `quietKey` ('quiet', or 'loud' to defeat fair share).
 */
async function floodRun(b: Bench, t: Tenant, label: string, quietKey: string): Promise<FloodRun> {
  const loudTag = `${label}-loud`
  const t0 = performance.now()
  const ids = await enqueue(b, t, loudTag, FLOOD, { key: 'loud', label: `${label}: flood` })
  b.progress(`  ${label}: flood queued (${fmt(FLOOD - probe.count(loudTag))} waiting); ${QUIET} quiet calls (key '${quietKey}'), one every ${QUIET_MS} ms…`)
  const quiet = await quietCalls(t, `${label}-quiet`, quietKey)
  b.progress(`  ${label}: quiet calls sent in ${(quiet.sentMs / 1000).toFixed(1)} s; ${fmt(FLOOD - probe.count(loudTag))} flood calls waiting`)
  await untilStarted(b, loudTag, FLOOD, `${label}: flood`)
  await untilSettled(b.pool, t.id, ids, `${label}: the flood`)
  const loudMs = performance.now() - t0
  const waits = await deadline(quiet.waits, STUCK_MS, () => `${label}: quiet calls`)
  return { quiet: waits, loudRate: FLOOD / (loudMs / 1000), loudMs }
}

async function benchFair(b: Bench, record: RecordRow): Promise<void> {
  const fair = await openTenant(b, 'qfair')
  const unfair = await openTenant(b, 'qunfair')
  try {
    for (const t of [fair, unfair]) {
      await startTenantWorker(b, t)
      const warm = await enqueue(b, t, `${t.id}-warm`, 300, { key: 'warm', label: `${t.id} warm-up` })
      await untilSettled(b.pool, t.id, warm, 'the warm-up')
    }
    b.progress(`[queue] fair share: ${QUIET} quiet calls, one every ${QUIET_MS} ms, no flood (worker concurrency ${CONCURRENCY})…`)
    const alone = await deadline((await quietCalls(fair, 'alone', 'quiet')).waits, STUCK_MS, () => 'quiet calls alone')
    b.progress(`[queue] fair share: ${fmt(FLOOD)} calls of key 'loud', and the quiet calls of key 'quiet'…`)
    const withFair = await floodRun(b, fair, 'fair', 'quiet')
    b.progress(`[queue] fair share defeated: the same flood, the quiet calls sent with key 'loud' (one flow: first come, first served)…`)
    const without = await floodRun(b, unfair, 'unfair', 'loud')
    const p99 = { alone: quantile(alone, 0.99), fair: quantile(withFair.quiet, 0.99), unfair: quantile(without.quiet, 0.99) }
    const flood = `${fmt(FLOOD)} calls`
    record('queue', `fair share (keys of one tenant): quiet key's p99 wait while another key floods (${flood}) vs no flood`, p99.fair, 'ms', p99.alone, { text: '≤ 3x', met: p99.fair <= 3 * p99.alone })
    record('queue', `… quiet p50 while flooded vs no flood`, quantile(withFair.quiet, 0.5), 'ms', quantile(alone, 0.5))
    record('queue', `… flooding key's throughput vs fair share defeated (one flow)`, withFair.loudRate, 'jobs/s', without.loudRate, { text: '≥ 0.9x', met: withFair.loudRate >= 0.9 * without.loudRate })
    record('queue', `… quiet p99 wait with fair share defeated vs no flood`, p99.unfair, 'ms', p99.alone)
  } finally {
    await closeTenant(fair)
    await closeTenant(unfair)
  }
}

// ---- fair share between tenants -----------------------------------------------------------------

/** The flooding tenant's worker: `praxis worker` in a child process, as tenants' workers run in production. */
async function childWorker(b: Bench, tenantId: string): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'worker', SERVICE_DIR, '--tenant', tenantId], {
    env: { ...process.env, DATABASE_URL: b.url, PRAXIS_WORKER_CONCURRENCY: String(CONCURRENCY), LOG_LEVEL: 'warn', PRAXIS_RETENTION_SCHEDULE: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await deadline(new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve() })
    void exited.then((code) => reject(new Error(`the flooding tenant's worker exited (${code}) before it was ready: ${stderr}`)))
  }), 60_000, () => `the flooding tenant's worker to start: ${stderr}`)
  return {
    child,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      await deadline(exited, 60_000, () => 'the flooding tenant\'s worker to stop')
    },
  }
}

async function benchTenants(b: Bench, record: RecordRow): Promise<void> {
  const quiet = await openTenant(b, 'qquiet')
  const loud = await openTenant(b, 'qloud')
  let child: Awaited<ReturnType<typeof childWorker>> | undefined
  try {
    await startTenantWorker(b, quiet)
    const warm = await enqueue(b, quiet, 'qquiet-warm', 300, { label: 'quiet tenant warm-up' })
    await untilSettled(b.pool, quiet.id, warm, 'the warm-up')
    b.progress(`[queue] tenants: ${QUIET} quiet calls of tenant qquiet, one every ${QUIET_MS} ms, alone…`)
    const alone = await deadline((await quietCalls(quiet, 'tenant-alone', 'quiet')).waits, STUCK_MS, () => 'quiet calls alone')
    b.progress('[queue] tenants: starting tenant qloud\'s worker (praxis worker, a child process)…')
    child = await childWorker(b, loud.id)
    const warmLoud = await enqueue(b, loud, 'qloud-warm', 300, { label: 'loud tenant warm-up' })
    await untilSettled(b.pool, loud.id, warmLoud, 'the loud tenant\'s warm-up')
    b.progress(`[queue] tenants: tenant qloud floods (${fmt(FLOOD)} calls, its own worker); the quiet calls of tenant qquiet…`)
    const ids = await enqueue(b, loud, 'qloud-flood', FLOOD, { label: 'qloud flood' })
    const t0 = performance.now()
    const sent = await quietCalls(quiet, 'tenant-flooded', 'quiet')
    const during = await deadline(sent.waits, STUCK_MS, () => 'quiet calls while another tenant floods')
    const { pending } = await settled(b.pool, loud.id, ids)
    b.progress(`  quiet calls sent in ${(sent.sentMs / 1000).toFixed(1)} s; tenant qloud still had ${fmt(pending)} calls pending after them`)
    if (pending === 0) throw new Error('queue bench: the other tenant\'s flood ended before the quiet calls did: raise BENCH_QUEUE_FLOOD')
    b.progress(`  stopping tenant qloud's worker (${((performance.now() - t0) / 1000).toFixed(1)} s into the flood) and discarding the rest of its flood…`)
    await child.stop()
    child = undefined
    await discardJobs(b.pool, loud.id)
    const p99 = { alone: quantile(alone, 0.99), during: quantile(during, 0.99) }
    record('queue', `fair share between tenants: quiet tenant's p99 wait while another tenant floods (${fmt(FLOOD)} calls; own workers, one database) vs alone`, p99.during, 'ms', p99.alone, { text: '≤ 3x', met: p99.during <= 3 * p99.alone })
    record('queue', '… quiet tenant\'s p50 while the other floods vs alone', quantile(during, 0.5), 'ms', quantile(alone, 0.5))
  } finally {
    await child?.stop()
    await closeTenant(quiet)
    await closeTenant(loud)
  }
}

/** Removes a tenant's queued jobs (the rest of a flood no worker is to run), through graphile-worker's own API. */
async function discardJobs(pool: pg.Pool, tenantId: string): Promise<void> {
  const utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger })
  try {
    const { rows } = await pool.query<{ id: string }>('select id::text from graphile_worker.jobs where task_identifier like $1', [`praxis.%.${tenantId}%`])
    for (let i = 0; i < rows.length; i += 5000) await utils.completeJobs(rows.slice(i, i + 5000).map((r) => r.id))
  } finally {
    await utils.release()
  }
}

// ---- fan-out ------------------------------------------------------------------------------------

interface Run { rate: number; ms: number; startMb: number; peakMb: number }

async function fanOutPraxis(b: Bench, gc: () => void): Promise<Run> {
  const t = await openTenant(b, 'qfan')
  try {
    await startTenantWorker(b, t)
    const warm = await enqueue(b, t, 'fan-warm', 500, { label: 'warm-up' })
    await untilSettled(b.pool, t.id, warm, 'the warm-up')
    gc()
    const rss = rssSampler()
    b.progress(`[queue] fan-out, Praxis: ${fmt(FANOUT)} no-op calls by ${Math.ceil(FANOUT / PER_START)} starts (worker concurrency ${CONCURRENCY})…`)
    const t0 = performance.now()
    const ids = await enqueue(b, t, 'fan', FANOUT, { label: 'fan-out' })
    await untilStarted(b, 'fan', FANOUT, 'fan-out')
    await untilSettled(b.pool, t.id, ids, 'the fan-out')
    const ms = performance.now() - t0
    const mem = rss.stop()
    const stats = t.worker!.stats
    b.progress(`  ${fmt(stats.succeeded)} succeeded, ${fmt(stats.evaluations)} evaluate jobs (results queued while their instance was busy), ${fmt(stats.duplicate)} duplicates`)
    return { rate: FANOUT / (ms / 1000), ms, ...mem }
  } finally {
    await closeTenant(t)
  }
}

/** The bare graphile-worker side: a no-op task, the Praxis worker's concurrency and poll interval, jobs added by add_jobs in batches of 1000. */
async function fanOutBare(b: Bench, gc: () => void): Promise<Run> {
  let done = 0
  const noop: Task = async () => { done++ }
  const runner = await run({ pgPool: b.pool, concurrency: CONCURRENCY, noHandleSignals: true, pollInterval: 1000, taskList: { bench_noop: noop }, logger: quietLogger })
  const utils = await makeWorkerUtils({ pgPool: b.pool, logger: quietLogger })
  const remaining = async (): Promise<number> => (await b.pool.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs where task_identifier = 'bench_noop'")).rows[0]!.n
  const batch = (from: number, n: number) => Array.from({ length: n }, (_, k) => ({ identifier: 'bench_noop', payload: { tag: 'bare', i: from + k } }))
  const all = async (n: number, label: string): Promise<void> => {
    const target = done + n
    let queued = 0
    const stop = ticker(b.progress, () => `  ${label}: ${fmt(queued)} of ${fmt(n)} queued, ${fmt(done - (target - n))} done`)
    try {
      for (; queued < n; queued += PER_START) await utils.addJobs(batch(queued, Math.min(PER_START, n - queued)))
      const end = Date.now() + STUCK_MS
      while (done < target || (await remaining()) > 0) {
        if (Date.now() > end) throw new Error(`queue bench: stuck: bare ${label}: ${done - (target - n)} of ${n} done`)
        await sleep(done < target ? 5 : 20)
      }
    } finally {
      stop()
    }
  }
  try {
    await all(500, 'bare warm-up')
    gc()
    const rss = rssSampler()
    b.progress(`[queue] fan-out, bare graphile-worker: ${fmt(FANOUT)} no-op jobs by add_jobs in batches of ${PER_START} (concurrency ${CONCURRENCY})…`)
    const t0 = performance.now()
    await all(FANOUT, 'bare fan-out')
    const ms = performance.now() - t0
    return { rate: FANOUT / (ms / 1000), ms, ...rss.stop() }
  } finally {
    await runner.stop()
    await utils.release()
  }
}

async function benchFanOut(b: Bench, record: RecordRow): Promise<void> {
  const gc = hostGc()
  // The bare side first: the process is as small as it gets then; Praxis's side starts from
  // whatever the bare run left (RSS rarely shrinks), and its rise is printed beside its peak.
  const bare = await fanOutBare(b, gc)
  const praxis = await fanOutPraxis(b, gc)
  b.progress(`  fan-out: Praxis ${(praxis.ms / 1000).toFixed(1)} s, bare ${(bare.ms / 1000).toFixed(1)} s; RSS Praxis ${praxis.startMb.toFixed(0)} → ${praxis.peakMb.toFixed(0)} MB, bare ${bare.startMb.toFixed(0)} → ${bare.peakMb.toFixed(0)} MB`)
  record('queue', `fan-out of ${fmt(FANOUT)} no-op calls, concurrency ${CONCURRENCY}, without micro-batches (not built)`, praxis.rate, 'jobs/s', bare.rate)
  record('queue', '… peak RSS of the process during the fan-out', praxis.peakMb, 'MB', bare.peakMb)
  record('queue', '… RSS rise during the fan-out', praxis.peakMb - praxis.startMb, 'MB', bare.peakMb - bare.startMb)
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
      const { rows } = await b.pool.query<{ ms: number }>("select (data->>'retryInMs')::int as ms from praxis.timeline where tenant_id = $1 and instance_id = $2 and kind = 'invocation.retrying'", [t.id, id])
      // The first two warm up.
      if (s >= 0) { observed.push(r - f); scheduled.push(rows[0]!.ms) }
      await sleep(20)
    }
    const over = observed.map((o, i) => o - scheduled[i]!)
    record('queue', `retry delay, failure to next attempt's start, p50 of ${SAMPLES} (configured 100 ms ±20%)`, quantile(observed, 0.5), 'ms', quantile(scheduled, 0.5))
    record('queue', '… observed minus scheduled, p50 / max', quantile(over, 0.5), 'ms', null)
    record('queue', '… observed minus scheduled, max', Math.max(...over), 'ms', null)
  } finally {
    await closeTenant(t)
  }
}

// ---- entry --------------------------------------------------------------------------------------

export async function benchQueue(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-queue-pg')
  await rm(dataDir, { recursive: true, force: true })
  progress('[queue] starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 55000 + (process.pid % 90) })
  let pool: pg.Pool | undefined
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    pool = createPool(server.urlFor('bench'), 40)
    await migrate(pool)
    const { code, hash } = await buildBundle(SERVICE_DIR)
    const b: Bench = { pool, url: server.urlFor('bench'), code, hash, manifest: await readGeneratedManifest(SERVICE_DIR), functions: (await loadService(SERVICE_DIR)).functions, progress }
    const t0 = performance.now()
    const timed = async (phase: Phase, body: () => Promise<void>): Promise<void> => {
      if (!phases.has(phase)) return
      const t = performance.now()
      await body()
      progress(`[queue] ${phase}: ${((performance.now() - t) / 1000).toFixed(0)} s`)
    }
    await timed('priority', () => benchPriority(b, record))
    await timed('fair', () => benchFair(b, record))
    await timed('tenants', () => benchTenants(b, record))
    await timed('fanout', () => benchFanOut(b, record))
    await timed('retry', () => benchRetry(b, record))
    progress(`[queue] done in ${((performance.now() - t0) / 1000).toFixed(0)} s`)
  } finally {
    await pool?.end()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
