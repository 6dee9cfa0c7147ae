/**
 * `npm run bench` — Praxis next to baselines measured in the same run, on an embedded PostgreSQL.
 *
 *  1. per-step latency of one instance (K sequential no-op steps) vs a bare graphile-worker chain
 *     (a job whose task adds the next), per hop;
 *  2. steps per second with W instances at once vs W bare chains;
 *  3. match cost: re-evaluating a 1,000-rule workflow after one fact path changes vs a
 *     json-rules-engine run of the same 1,000 rules over the same facts;
 *  4. the rule sandbox (bench/sandbox.ts): one evaluation in a tenant isolate vs the same bundle
 *     run in-process, the memory of a loaded tenant bundle and its cold load;
 *  5. codegen (bench/codegen.ts).
 * The steps bench runs rule code as production does: in the worker's and the API's tenant isolates.
 *
 * `-- --only steps,match,sandbox,codegen` runs some of them (PostgreSQL starts only for steps).
 * `-- --json` prints one JSON object a line: { bench, metric, value, unit, baseline, ratio, target,
 * met }, with ratio = value / baseline (latency under 1 and throughput over 1 favour Praxis);
 * baseline and ratio are null for figures without one, target and met for figures without one.
 * Sizes: BENCH_K (steps, 100), BENCH_W (instances, 16), BENCH_ROUNDS (interleaved rounds, 5),
 * BENCH_MATCH_RUNS (200), BENCH_SANDBOX_RUNS (3000).
 */
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { Engine } from 'json-rules-engine'
import { run, type Task } from 'graphile-worker'
import pino from 'pino'
import { buildBundle, chain, deployBundle, Evaluator, BundleCache, readGeneratedManifest } from '../platform/engine/index.js'
import { loadTrusted } from '../test/support/trusted-bundle.js'
import { loadService, startWorker } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, quietLogger, startEmbedded, resolveWorkflow, getInstance } from '../platform/store/index.js'
import { readPath } from '../sdk/facts.js'
import { benchCodegen } from './codegen.js'
import { benchSandbox, type Target } from './sandbox.js'
import { stepTimes } from './fixtures/steps/functions.js'

const json = process.argv.includes('--json')
const BENCHES = ['steps', 'match', 'sandbox', 'codegen']
// `-- --only steps,codegen` runs some of them.
const onlyArg = process.argv.find((a, i) => process.argv[i - 1] === '--only') ?? BENCHES.join(',')
const only = new Set(onlyArg.split(','))
for (const name of only) if (!BENCHES.includes(name)) throw new Error(`--only ${name}: no such benchmark; choose from ${BENCHES.join(', ')}`)
const K = Number(process.env.BENCH_K ?? 100)
const W = Number(process.env.BENCH_W ?? 16)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const MATCH_RUNS = Number(process.env.BENCH_MATCH_RUNS ?? 200)
const CONCURRENCY = 8
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
      await benchSteps(pool)
      await pool.end()
    } finally {
      await server.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
  if (only.has('match')) await benchMatch()
  if (only.has('sandbox')) await benchSandbox(record, progress)
  if (only.has('codegen')) await benchCodegen(record, progress)
  if (json) for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
  else printTable()
}

/** A bare graphile-worker chain: each hop's task adds the next hop. */
async function bareChains(pool: import('pg').Pool, chains: number, hops: number): Promise<{ times: Map<number, number[]>; elapsedMs: number }> {
  const times = new Map<number, number[]>()
  let remaining = chains
  let done!: () => void
  const finished = new Promise<void>((resolve) => { done = resolve })
  const hop: Task = async (payload, helpers) => {
    const { c, n } = payload as { c: number; n: number }
    let ts = times.get(c)
    if (!ts) times.set(c, (ts = []))
    ts.push(performance.now())
    if (n + 1 < hops) await helpers.addJob('hop', { c, n: n + 1 })
    else if (--remaining === 0) done()
  }
  const runner = await run({ pgPool: pool, concurrency: CONCURRENCY, noHandleSignals: true, pollInterval: 1000, taskList: { hop }, logger: quietLogger })
  const t0 = performance.now()
  for (let c = 0; c < chains; c++) await runner.addJob('hop', { c, n: 0 })
  await finished
  const elapsedMs = performance.now() - t0
  await runner.stop()
  return { times, elapsedMs }
}

async function praxisRuns(pool: import('pg').Pool, evaluator: Evaluator, tenant: string, instances: number, k: number, label: string): Promise<{ times: number[][]; elapsedMs: number }> {
  const [target] = await resolveWorkflow(pool, tenant, 'steps')
  const t0 = performance.now()
  const ids = await Promise.all(Array.from({ length: instances }, async (_, n) => (await evaluator.start(tenant, target!, { run: `${label}-${n}`, k }, null)).id))
  const deadline = Date.now() + 120_000
  for (const id of ids) {
    for (;;) {
      const view = await getInstance(pool, tenant, id)
      if (view?.status === 'completed') break
      if (view?.status !== 'running') throw new Error(`bench instance ${id} ended ${view?.status}: ${JSON.stringify(view?.error)}`)
      if (Date.now() > deadline) throw new Error(`bench instance ${id} is stuck at revision ${view.revision} with facts ${JSON.stringify(view.facts)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const elapsedMs = performance.now() - t0
  return { times: ids.map((_, n) => stepTimes.get(`${label}-${n}`) ?? []), elapsedMs }
}

async function benchSteps(pool: import('pg').Pool): Promise<void> {
  const { apiKey: _ } = await ensureTenant(pool, 'bench')
  const { code, hash } = await buildBundle('bench/fixtures/steps')
  const bundles = new BundleCache()
  // With its generated manifest, as `praxis deploy` sends it: the host resolves each call against it.
  await deployBundle(pool, bundles, 'bench', 'steps', code, hash, await readGeneratedManifest('bench/fixtures/steps'))
  const evaluator = new Evaluator(pool, bundles)

  // Warm both paths (JIT, prepared statements, bundle cache, the tenant isolates) before
  // measuring: rule code runs in the bundle's isolate in the API's BundleCache (start) and in the
  // worker's (each step), and a new worker's first step loads the bundle into its isolate.
  progress('warming up…')
  await bareChains(pool, 2, 50)
  const { functions } = await loadService('bench/fixtures/steps')
  const w = await startWorker({ pool, log, tenantId: 'bench', functions, concurrency: CONCURRENCY, leaseMs: 60_000, evaluate: true })
  await praxisRuns(pool, evaluator, 'bench', 2, 50, 'warm')
  await praxisRuns(pool, evaluator, 'bench', W, 20, 'warm-many')
  await pool.query('analyze')

  // Interleaved rounds, samples pooled: this machine is shared and noisy, and a drift during one
  // long run would land on one side of the comparison only.
  const hops: number[] = []
  const steps: number[] = []
  const rates = { bare: { n: 0, ms: 0 }, praxis: { n: 0, ms: 0 } }
  for (let round = 0; round < ROUNDS; round++) {
    progress(`[round ${round + 1}/${ROUNDS}] 1 × ${K} and ${W} × ${K}, bare chain then praxis…`)
    const bare1 = await bareChains(pool, 1, K)
    const one = await praxisRuns(pool, evaluator, 'bench', 1, K, `one${round}`)
    const bareW = await bareChains(pool, W, K)
    const many = await praxisRuns(pool, evaluator, 'bench', W, K, `many${round}`)
    hops.push(...intervals(bare1.times.get(0)!))
    steps.push(...intervals(one.times[0]!))
    rates.bare.n += [...bareW.times.values()].reduce((n, ts) => n + ts.length, 0)
    rates.bare.ms += bareW.elapsedMs
    rates.praxis.n += many.times.reduce((n, ts) => n + ts.length, 0)
    rates.praxis.ms += many.elapsedMs
  }
  await w.stop()
  progress(`  ${w.stats.eager} of ${w.stats.succeeded} invocations ran by eager dispatch`)
  const p50 = { praxis: quantile(steps, 0.5), bare: quantile(hops, 0.5) }
  const p99 = quantile(steps, 0.99)
  const rate = { praxis: rates.praxis.n / (rates.praxis.ms / 1000), bare: rates.bare.n / (rates.bare.ms / 1000) }
  record('steps', 'per-step p50', p50.praxis, 'ms', p50.bare, { text: '≤ 1.6x', met: p50.praxis <= 1.6 * p50.bare })
  record('steps', 'per-step p99', p99, 'ms', quantile(hops, 0.99), { text: '< 10 ms', met: p99 < 10 })
  record('steps', `throughput W=${W}`, rate.praxis, 'steps/s', rate.bare, { text: '≥ 0.5x', met: rate.praxis >= 0.5 * rate.bare })
  await evaluator.close()
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
  process.stdout.write('baselines: a bare graphile-worker chain (steps); json-rules-engine running all 1,000 rules (match); the same evaluation in-process, unsandboxed (sandbox); type-checking the same service with tsc (codegen)\n')
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`)
  // A failed bench may leave a worker, a pool or isolates holding the event loop open.
  process.exit(1)
})
