/**
 * `npm run bench` — Praxis next to baselines measured in the same run, on an embedded PostgreSQL.
 *
 *  1. per-step latency of one instance (K sequential no-op steps) vs a bare graphile-worker chain
 *     (a job whose task adds the next), per hop;
 *  2. steps per second with W instances at once vs W bare chains;
 *     then both where the fast path is off, each vs its own bare baseline: facts over the invoke
 *     job's 8 KB snapshot limit (16 KB of padding; the bare jobs carry the same 16 KB in their
 *     payload), and fan-ins of 16 calls joined by a rule (per fan-in, and fan-ins per second with
 *     BENCH_FAN_W instances) vs 16 bare jobs counting down a counter row, the last adding the next
 *     16. Each side runs alone: its worker (or bare runner) is started, warmed up with the same work
 *     as the other side's, measured and stopped; Praxis goes first in odd rounds, bare in even ones;
 *  3. match cost: re-evaluating a 1,000-rule workflow after one fact path changes vs a
 *     json-rules-engine run of the same 1,000 rules over the same facts;
 *  4. the rule sandbox (bench/sandbox.ts): one evaluation in a tenant isolate vs the same bundle
 *     run in-process, the memory of a loaded tenant bundle and its cold load;
 *  5. codegen (bench/codegen.ts);
 *  6. retention (bench/retention.ts): table sizes under steady load with the retention purge
 *     running vs without it (its own embedded PostgreSQL; BENCH_RETENTION_N, BENCH_RETENTION_ROUNDS);
 *  7. queue (bench/queue.ts): a 43,800-call fan-out vs bare graphile-worker, a high-priority call's
 *     wait under a backlog vs none, fair share between fairness keys (and tenants) under a flood vs
 *     none and vs fair share defeated, the retry delay vs the scheduled one (its own embedded
 *     PostgreSQL; BENCH_QUEUE_* sizes, listed at its top).
 *  8. cli (bench/cli.ts): whole-process time of `praxis --help`, `praxis start --help`, `praxis
 *     inspect <id>` (against an API in this process) and `praxis start`, next to `node -e 0`
 *     (BENCH_CLI_RUNS; BENCH_CLI_COMPARE=<another checkout> measures its CLI too).
 * The steps bench runs rule code as production does: in the worker's and the API's tenant isolates.
 *
 * `-- --only steps,match,sandbox,codegen` runs some of them (PostgreSQL starts only for steps).
 * `-- --json` prints one JSON object a line: { bench, metric, value, unit, baseline, ratio, target,
 * met }, with ratio = value / baseline (latency under 1 and throughput over 1 favour Praxis);
 * baseline and ratio are null for figures without one, target and met for figures without one.
 * Sizes: BENCH_K (steps, 100), BENCH_W (instances, 16), BENCH_ROUNDS (interleaved rounds, 5),
 * BENCH_FAN_K (fan-ins per instance, 6), BENCH_FAN_W (fan-in instances, 4), BENCH_MATCH_RUNS (200), BENCH_SANDBOX_RUNS (3000).
 */
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { Engine } from 'json-rules-engine'
import { makeWorkerUtils, run, type Task } from 'graphile-worker'
import type pg from 'pg'
import pino from 'pino'
import { EndedInstanceWaiters } from '../platform/api/waiters.js'
import { buildBundle, chain, deployBundle, Evaluator, BundleCache, readGeneratedManifest } from '../platform/engine/index.js'
import { loadTrusted } from '../test/support/trusted-bundle.js'
import { loadService, startWorker } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, quietLogger, startEmbedded, resolveWorkflow, getInstance } from '../platform/store/index.js'
import { readPath } from '../sdk/facts.js'
import { benchCodegen } from './codegen.js'
import { benchSandbox, type Target } from './sandbox.js'
import { benchRetention } from './retention.js'
import { benchQueue } from './queue.js'
import { benchReprocess } from './reprocess.js'
import { benchCli } from './cli.js'
import { stepTimes } from './fixtures/steps/functions.js'

const json = process.argv.includes('--json')
const BENCHES = ['steps', 'match', 'sandbox', 'codegen', 'retention', 'queue', 'reprocess', 'cli']
// `-- --only steps,codegen` runs some of them.
const onlyArg = process.argv.find((a, i) => process.argv[i - 1] === '--only') ?? BENCHES.join(',')
const only = new Set(onlyArg.split(','))
for (const name of only) if (!BENCHES.includes(name)) throw new Error(`--only ${name}: no such benchmark; choose from ${BENCHES.join(', ')}`)
const K = Number(process.env.BENCH_K ?? 100)
const W = Number(process.env.BENCH_W ?? 16)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const FAN_K = Number(process.env.BENCH_FAN_K ?? 6)
const FAN_W = Number(process.env.BENCH_FAN_W ?? 4)
const MATCH_RUNS = Number(process.env.BENCH_MATCH_RUNS ?? 200)
const CONCURRENCY = 8
/** The steps bench's scenarios where the fast path is off: facts over the invoke job's 8 KB
 * snapshot limit, and fan-ins of FAN results joined by a rule. */
const SNAPSHOT_LIMIT = 8192
const PAD_BYTES = 16 * 1024
const FAN = 16
const log = pino({ level: 'silent' })
const rows: { bench: string; metric: string; value: number; unit: string; baseline: number | null; ratio: number | null; target: string | null; met: boolean | null }[] = []
const progress = (line: string): void => { if (!json) process.stderr.write(line + '\n') }

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const intervals = (ts: number[]): number[] => ts.slice(1).map((t, i) => t - ts[i]!)
const record = (bench: string, metric: string, value: number, unit: string, baseline: number | null, target?: Target): void => {
  rows.push({ bench, metric, value: round(value), unit, baseline: baseline === null ? null : round(baseline), ratio: baseline === null ? null : round(value / baseline), target: target?.text ?? null, met: target?.met ?? null })
}
const round = (x: number): number => Math.round(x * 1000) / 1000

async function main(): Promise<void> {
  if (only.has('steps')) {
    const dataDir = path.resolve('.praxis', 'bench-pg')
    await rm(dataDir, { recursive: true, force: true })
    progress('starting embedded PostgreSQL…')
    const server = await startEmbedded({ dataDir, port: 54500 + (process.pid % 400) })
    try {
      await ensureDatabase(server.adminUrl, 'bench')
      const pool = createPool(server.urlFor('bench'), 40)
      await migrate(pool)
      await benchSteps(pool, server.urlFor('bench'))
      await pool.end()
    } finally {
      await server.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
  if (only.has('match')) await benchMatch()
  if (only.has('sandbox')) await benchSandbox(record, progress)
  if (only.has('codegen')) await benchCodegen(record, progress)
  if (only.has('retention')) await benchRetention(record, progress)
  if (only.has('queue')) await benchQueue(record, progress)
  if (only.has('reprocess')) await benchReprocess(record, progress)
  if (only.has('cli')) await benchCli(record, progress)
  if (json) for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
  else printTable()
}

/**
 * The steps bench's scenarios, each run by both sides with the same sizes: `chain`, `length`
 * sequential no-op steps; `large`, the same with PAD_BYTES of state; `fan`, `length` fan-ins of
 * FAN no-op calls each, joined.
 */
type Scenario = 'chain' | 'large' | 'fan'
const SCENARIOS: readonly Scenario[] = ['chain', 'large', 'fan']
/** Start times of each chain's (instance's) calls, and the time from the first start until all ended. */
interface Measured { times: number[][]; elapsedMs: number }
/** One side of the comparison: started for a measurement and stopped after it, so the two sides never run at once. */
interface Side {
  run(scenario: Scenario, chains: number, length: number, label: string): Promise<Measured>
  stop(): Promise<void>
}
const STUCK_MS = 120_000

/**
 * The bare graphile-worker side: one runner with the Praxis worker's pool, concurrency and poll
 * interval. `chain`: each hop's task adds the next hop. `large`: the same, each job carrying the
 * state (PAD_BYTES) in its payload for the next, as a bare application would. `fan`: FAN jobs
 * added at once, each decrementing its chain's counter row; the one that brings it to zero
 * resets it and adds the next FAN jobs at once.
 */
async function startBare(pool: pg.Pool, pad: string): Promise<Side> {
  let current: { times: Map<number, number[]>; remaining: number; done: () => void } | undefined
  const note = (c: number): void => {
    const times = current!.times
    let ts = times.get(c)
    if (!ts) times.set(c, (ts = []))
    ts.push(performance.now())
  }
  const ended = (): void => { if (--current!.remaining === 0) current!.done() }
  const fanJobs = (c: number, r: number, rounds: number) => Array.from({ length: FAN }, () => ({ identifier: 'fan', payload: { c, r, rounds } }))
  const hop: Task = async (payload, helpers) => {
    const p = payload as { c: number; n: number; hops: number; pad?: string }
    note(p.c)
    if (p.n + 1 < p.hops) await helpers.addJob('hop', { ...p, n: p.n + 1 })
    else ended()
  }
  const fan: Task = async (payload, helpers) => {
    const p = payload as { c: number; r: number; rounds: number }
    note(p.c)
    const { rows } = await helpers.withPgClient((client) => client.query<{ pending: number }>('update bench_fan set pending = pending - 1 where c = $1 returning pending', [p.c]))
    if (rows[0]!.pending > 0) return
    if (p.r + 1 === p.rounds) return ended()
    await helpers.withPgClient((client) => client.query('update bench_fan set pending = $2 where c = $1', [p.c, FAN]))
    await helpers.addJobs(fanJobs(p.c, p.r + 1, p.rounds))
  }
  await pool.query('create table if not exists bench_fan (c int primary key, pending int not null)')
  const runner = await run({ pgPool: pool, concurrency: CONCURRENCY, noHandleSignals: true, pollInterval: 1000, taskList: { hop, fan }, logger: quietLogger })
  const utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger })
  return {
    async run(scenario, chains, length, label) {
      const times = new Map<number, number[]>()
      let done!: () => void
      const finished = new Promise<void>((resolve) => { done = resolve })
      current = { times, remaining: chains, done }
      if (scenario === 'fan') await pool.query('insert into bench_fan (c, pending) select c, $2 from generate_series(0, $1 - 1) c on conflict (c) do update set pending = excluded.pending', [chains, FAN])
      const t0 = performance.now()
      for (let c = 0; c < chains; c++) {
        if (scenario === 'fan') await utils.addJobs(fanJobs(c, 0, length))
        else await runner.addJob('hop', { c, n: 0, hops: length, ...(scenario === 'large' ? { pad } : {}) })
      }
      let timer: NodeJS.Timeout | undefined
      const stuck = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`bare ${label} is stuck: ${current?.remaining} of ${chains} chains running`)), STUCK_MS) })
      await Promise.race([finished, stuck]).finally(() => clearTimeout(timer))
      const elapsedMs = performance.now() - t0
      current = undefined
      return { times: Array.from({ length: chains }, (_, c) => times.get(c) ?? []), elapsedMs }
    },
    async stop() {
      await runner.stop()
      await utils.release()
    },
  }
}

interface PraxisContext {
  pool: pg.Pool
  /** The API's: instances start as `POST /instances` starts them, rule code in its tenant isolate. */
  evaluator: Evaluator
  /** The API's long-poll LISTEN: an instance's end is awaited without polling the database. */
  waiters: EndedInstanceWaiters
  targets: Record<Scenario, Awaited<ReturnType<typeof resolveWorkflow>>[number]>
  functions: Awaited<ReturnType<typeof loadService>>['functions']
  pad: string
  /** Summed over the workers started. */
  stats: { succeeded: number; eager: number; evaluations: number }
}

/**
 * The Praxis side: a real worker of the bench tenant (`startWorker`: the fused step, eager
 * dispatch, evaluate jobs), rule code in its tenant isolate (a new worker's first step loads the
 * bundle: the warm-up takes it).
 */
async function startPraxis(ctx: PraxisContext): Promise<Side> {
  const worker = await startWorker({ pool: ctx.pool, log, tenantId: 'bench', functions: ctx.functions, concurrency: CONCURRENCY, leaseMs: 60_000, evaluate: true })
  return {
    async run(scenario, instances, length, label) {
      const input = (run: string): Record<string, unknown> =>
        scenario === 'chain' ? { run, k: length } : scenario === 'large' ? { run, k: length, pad: ctx.pad } : { run, k: length, width: FAN }
      const t0 = performance.now()
      const ids = await Promise.all(Array.from({ length: instances }, async (_, n) => (await ctx.evaluator.start('bench', ctx.targets[scenario], input(`${label}-${n}`), null)).id))
      const deadline = Date.now() + STUCK_MS
      for (const id of ids) {
        const seen: { view?: Awaited<ReturnType<typeof getInstance>> } = {}
        for (;;) {
          // Returns at once when it has ended, else when its end is notified (or after a second).
          await ctx.waiters.wait('bench', id, 1000, async () => (seen.view = await getInstance(ctx.pool, 'bench', id))?.status !== 'running')
          const view = seen.view
          if (view?.status === 'completed') break
          if (view?.status !== 'running') throw new Error(`bench instance ${id} ended ${view?.status}: ${JSON.stringify(view?.error)}`)
          if (Date.now() > deadline) throw new Error(`bench instance ${id} is stuck at revision ${view.revision} with facts ${JSON.stringify(view.facts).slice(0, 500)}`)
        }
      }
      const elapsedMs = performance.now() - t0
      const times = ids.map((_, n) => stepTimes.get(`${label}-${n}`) ?? [])
      for (let n = 0; n < instances; n++) stepTimes.delete(`${label}-${n}`)
      return { times, elapsedMs }
    },
    async stop() {
      await worker.stop()
      for (const key of ['succeeded', 'eager', 'evaluations'] as const) ctx.stats[key] += worker.stats[key]
    },
  }
}

async function benchSteps(pool: pg.Pool, url: string): Promise<void> {
  const { apiKey: _ } = await ensureTenant(pool, 'bench')
  const { code, hash } = await buildBundle('bench/fixtures/steps')
  const bundles = new BundleCache()
  // With its generated manifest, as `praxis deploy` sends it: the host resolves each call against it.
  await deployBundle(pool, bundles, 'bench', 'steps', code, hash, await readGeneratedManifest('bench/fixtures/steps'))
  const evaluator = new Evaluator(pool, bundles)
  const waiters = new EndedInstanceWaiters(url)
  await waiters.start()
  const target = async (name: string) => {
    const [found, ...others] = await resolveWorkflow(pool, 'bench', name)
    if (!found || others.length > 0) throw new Error(`bench workflow ${name}: ${others.length + (found ? 1 : 0)} deployed`)
    return found
  }
  const ctx: PraxisContext = {
    pool, evaluator, waiters,
    targets: { chain: await target('steps'), large: await target('stepsLarge'), fan: await target('fanIn') },
    functions: (await loadService('bench/fixtures/steps')).functions,
    // Random, so neither side's storage compresses it away; both sides carry the same.
    pad: randomBytes((PAD_BYTES * 3) / 4).toString('base64'),
    stats: { succeeded: 0, eager: 0, evaluations: 0 },
  }
  type SideName = 'praxis' | 'bare'
  const start: Record<SideName, () => Promise<Side>> = { praxis: () => startPraxis(ctx), bare: () => startBare(pool, ctx.pad) }
  const length = (s: Scenario): number => (s === 'fan' ? FAN_K : K)
  const width = (s: Scenario): number => (s === 'fan' ? FAN_W : W)
  const warmLength = (s: Scenario): number => (s === 'fan' ? 1 : 20)
  /** Calls of one chain (instance), checked: the fan-in grouping below counts on it. */
  const calls = (s: Scenario, ts: number[], n: number, label: string): number[] => {
    const expected = s === 'fan' ? n * FAN : n
    if (ts.length !== expected) throw new Error(`${label}: ${ts.length} calls, expected ${expected} (a call ran twice or never)`)
    return ts
  }
  // Per step: between consecutive calls. Per fan-in: between the first calls of consecutive
  // fan-ins (all of a fan-in's calls start before the next fan-in's first).
  const latencies = (s: Scenario, ts: number[]): number[] => intervals(s === 'fan' ? [...ts].sort((a, b) => a - b).filter((_, i) => i % FAN === 0) : ts)
  /**
   * Each side runs alone: started (the Praxis worker, or the bare runner), warmed up with the same
   * work on both sides (2 chains of 20 steps, or of 1 fan-in, of the scenario measured next, which
   * also loads the bundle into a new worker's isolate), measured, and stopped before the other starts.
   */
  const alone = async <T>(name: SideName, s: Scenario, label: string, body: (side: Side) => Promise<T>): Promise<T> => {
    const side = await start[name]()
    try {
      await side.run(s, 2, warmLength(s), `${label}-warm`)
      return await body(side)
    } finally {
      await side.stop()
    }
  }

  // Warm both paths of every scenario (JIT, prepared statements, the API's bundle cache and
  // isolate, PostgreSQL's caches) the same way before measuring.
  progress('warming up…')
  for (const s of SCENARIOS) for (const name of ['praxis', 'bare'] as const) await alone(name, s, `warm-${s}-${name}`, (side) => side.run(s, width(s), warmLength(s), `warm-${s}-${name}-many`))
  await pool.query('analyze')
  const { rows: [facts] } = await pool.query<{ bytes: number }>(`select min(octet_length(facts::text))::int as bytes from praxis.instances where tenant_id = 'bench' and workflow = 'stepsLarge'`)
  if (!(facts!.bytes > SNAPSHOT_LIMIT)) throw new Error(`stepsLarge facts are ${facts!.bytes} bytes, within the ${SNAPSHOT_LIMIT}-byte snapshot limit`)

  // Interleaved rounds, samples pooled: this machine is shared and noisy, and a drift during one
  // long run would land on one side of the comparison only. Each scenario's two sides run back to
  // back, Praxis first in odd rounds and the bare side first in even ones.
  const latency = Object.fromEntries(SCENARIOS.map((s) => [s, { praxis: [] as number[], bare: [] as number[] }])) as Record<Scenario, Record<SideName, number[]>>
  const rates = Object.fromEntries(SCENARIOS.map((s) => [s, { praxis: { n: 0, ms: 0 }, bare: { n: 0, ms: 0 } }])) as Record<Scenario, Record<SideName, { n: number; ms: number }>>
  for (let round = 1; round <= ROUNDS; round++) {
    const order: SideName[] = round % 2 === 1 ? ['praxis', 'bare'] : ['bare', 'praxis']
    progress(`[round ${round}/${ROUNDS}] ${order.join(' then ')}: 1 × ${K} and ${W} × ${K} steps; the same with ${PAD_BYTES / 1024} KB facts; 1 × ${FAN_K} and ${FAN_W} × ${FAN_K} fan-ins of ${FAN}…`)
    for (const s of SCENARIOS) {
      for (const name of order) {
        await alone(name, s, `${s}-${name}-${round}`, async (side) => {
          const label = `${s}-${name}-${round}`
          const one = await side.run(s, 1, length(s), `${label}-one`)
          const many = await side.run(s, width(s), length(s), `${label}-many`)
          latency[s][name].push(...latencies(s, calls(s, one.times[0]!, length(s), `${label}-one`)))
          rates[s][name].n += many.times.reduce((n, ts, c) => n + calls(s, ts, length(s), `${label}-many-${c}`).length, 0) / (s === 'fan' ? FAN : 1)
          rates[s][name].ms += many.elapsedMs
        })
      }
    }
  }
  await waiters.stop()
  await evaluator.close()
  progress(`  ${ctx.stats.eager} of ${ctx.stats.succeeded} invocations ran by eager dispatch; ${ctx.stats.evaluations} evaluations by evaluate jobs (of results queued while their instance was busy)`)
  const p50 = (s: Scenario, name: SideName): number => quantile(latency[s][name], 0.5)
  const rate = (s: Scenario, name: SideName): number => rates[s][name].n / (rates[s][name].ms / 1000)
  const p99 = quantile(latency.chain.praxis, 0.99)
  record('steps', 'per-step p50', p50('chain', 'praxis'), 'ms', p50('chain', 'bare'), { text: '≤ 1.6x', met: p50('chain', 'praxis') <= 1.6 * p50('chain', 'bare') })
  record('steps', 'per-step p99', p99, 'ms', quantile(latency.chain.bare, 0.99), { text: '< 10 ms', met: p99 < 10 })
  record('steps', `throughput W=${W}`, rate('chain', 'praxis'), 'steps/s', rate('chain', 'bare'), { text: '≥ 0.5x', met: rate('chain', 'praxis') >= 0.5 * rate('chain', 'bare') })
  const kb = `${PAD_BYTES / 1024} KB facts, no snapshot`
  record('steps', `per-step p50, ${kb}`, p50('large', 'praxis'), 'ms', p50('large', 'bare'))
  record('steps', `throughput W=${W}, ${kb}`, rate('large', 'praxis'), 'steps/s', rate('large', 'bare'))
  record('steps', `per-fan-in p50, ${FAN} calls joined`, p50('fan', 'praxis'), 'ms', p50('fan', 'bare'))
  record('steps', `fan-in throughput W=${FAN_W}`, rate('fan', 'praxis'), 'fan-ins/s', rate('fan', 'bare'))
}

async function benchMatch(): Promise<void> {
  progress(`[match] 1,000 rules, one path changed, ${MATCH_RUNS} runs each…`)
  const { code } = await buildBundle('bench/fixtures/many-rules')
  const bundle = loadTrusted('many-rules', code)
  const workflow = bundle.workflows.get('manyRules')!
  const init = bundle.init('manyRules', {})
  if (!init.ok) throw new Error(init.error.message)
  // Establish the instance's rule state (every match evaluated once), as after its first evaluation.
  const settled = await chain(bundle.run, workflow, { facts: init.facts, ruleState: {}, handlers: [] })
  const change = (n: number) => ({ facts: settled.facts, ruleState: settled.ruleState, handlers: [{ target: { signal: 'set' }, argument: { key: `s${n % 200}`, value: 1 + (n % 3) } }] })

  const engine = new Engine([], { allowUndefinedFacts: true, pathResolver: (value: object, p: string) => readPath(value, p) })
  for (const rule of workflow.rules) engine.addRule({ conditions: rule.condition as never, event: { type: rule.name }, name: rule.name })

  const praxis: number[] = []
  const jre: number[] = []
  for (let n = 0; n < MATCH_RUNS + 20; n++) {
    let t = performance.now()
    await chain(bundle.run, workflow, change(n))
    const a = performance.now() - t
    const facts = { v: { ...(settled.facts.v as Record<string, number>), [`s${n % 200}`]: 1 + (n % 3) } }
    t = performance.now()
    await engine.run({ facts })
    const b = performance.now() - t
    if (n >= 20) { praxis.push(a); jre.push(b) }
  }
  const p50 = { praxis: quantile(praxis, 0.5), jre: quantile(jre, 0.5) }
  record('match', 're-evaluate 1,000 rules after one change, p50', p50.praxis, 'ms', p50.jre, { text: '≥ 5x faster', met: 5 * p50.praxis <= p50.jre })
}

function printTable(): void {
  const header = ['bench', 'metric', 'praxis', 'baseline', 'ratio', 'target']
  const lines = rows.map((r) => [r.bench, r.metric, `${r.value} ${r.unit}`, r.baseline === null ? '' : `${r.baseline} ${r.unit}`, r.ratio === null ? '' : `${r.ratio}x`, r.target === null ? '' : `${r.target}: ${r.met ? 'met' : 'MISSED'}`])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  process.stdout.write(`${fmt(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${lines.map(fmt).join('\n')}\n`)
  process.stdout.write('baselines: a bare graphile-worker chain, each side running alone (steps; its jobs carry the same 16 KB in the 16 KB rows; per fan-in, 16 jobs counting down a counter row, the last adding the next 16); json-rules-engine running all 1,000 rules (match); the same evaluation in-process, unsandboxed (sandbox); type-checking the same service with tsc (codegen)\n')
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`)
  // A failed bench may leave a worker, a pool or isolates holding the event loop open.
  process.exit(1)
})
