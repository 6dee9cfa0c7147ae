/**
 * `npm run bench` — Praxis next to baselines measured in the same run, on an embedded PostgreSQL.
 *
 *  1. per-step latency of one instance (K sequential no-op steps) vs a bare graphile-worker chain
 *     (a job whose task adds the next), per hop;
 *  2. steps per second with W instances at once vs W bare chains;
 *  3. match cost: re-evaluating a 1,000-rule workflow after one fact path changes vs a
 *     json-rules-engine run of the same 1,000 rules over the same facts.
 *
 * `-- --only steps,match,codegen` runs some of them.
 * `-- --json` prints one JSON object a line: { bench, metric, value, unit, baseline, ratio }, with
 * ratio = value / baseline (latency under 1 and throughput over 1 favour Praxis).
 * Sizes: BENCH_K (steps, 100), BENCH_W (instances, 16), BENCH_ROUNDS (interleaved rounds, 5),
 * BENCH_MATCH_RUNS (200).
 */
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { Engine } from 'json-rules-engine'
import { run, type Task } from 'graphile-worker'
import pino from 'pino'
import { buildBundle, chain, deployBundle, loadBundle, Evaluator, BundleCache } from '../platform/engine/index.js'
import { loadService, startWorker } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, quietLogger, startEmbedded, resolveWorkflow, getInstance } from '../platform/store/index.js'
import { readPath } from '../sdk/facts.js'
import { benchCodegen } from './codegen.js'
import { stepTimes } from './fixtures/steps/functions.js'

const json = process.argv.includes('--json')
const BENCHES = ['steps', 'match', 'codegen']
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
const rows: { bench: string; metric: string; value: number; unit: string; baseline: number; ratio: number }[] = []
const progress = (line: string): void => { if (!json) process.stderr.write(line + '\n') }

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const intervals = (ts: number[]): number[] => ts.slice(1).map((t, i) => t - ts[i]!)
const record = (bench: string, metric: string, value: number, unit: string, baseline: number): void => {
  rows.push({ bench, metric, value: round(value), unit, baseline: round(baseline), ratio: round(value / baseline) })
}
const round = (x: number): number => Math.round(x * 1000) / 1000

async function main(): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-pg')
  await rm(dataDir, { recursive: true, force: true })
  progress('starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 54500 + (process.pid % 400) })
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    const pool = createPool(server.urlFor('bench'), 40)
    await migrate(pool)
    if (only.has('steps')) await benchSteps(pool)
    await pool.end()
    if (only.has('match')) await benchMatch()
    if (only.has('codegen')) await benchCodegen(record, progress)
  } finally {
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
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
  await deployBundle(pool, 'bench', 'steps', code, hash)
  const evaluator = new Evaluator(pool, new BundleCache())

  // Warm both paths (JIT, prepared statements, bundle cache, the measured worker's rule sandbox
  // thread) before measuring: a new worker's first step starts its sandbox thread (~0.7 s).
  progress('warming up…')
  await bareChains(pool, 2, 50)
  const { functions } = await loadService('bench/fixtures/steps')
  const w = await startWorker({ pool, log, functions, concurrency: CONCURRENCY, leaseMs: 60_000, evaluate: true })
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
  record('steps', 'per-step p50', quantile(steps, 0.5), 'ms', quantile(hops, 0.5))
  record('steps', 'per-step p99', quantile(steps, 0.99), 'ms', quantile(hops, 0.99))
  record('steps', `throughput W=${W}`, rates.praxis.n / (rates.praxis.ms / 1000), 'steps/s', rates.bare.n / (rates.bare.ms / 1000))
  await evaluator.close()
}

async function benchMatch(): Promise<void> {
  progress(`[match] 1,000 rules, one path changed, ${MATCH_RUNS} runs each…`)
  const { code } = await buildBundle('bench/fixtures/many-rules')
  const bundle = loadBundle('many-rules', code)
  const workflow = bundle.workflows.get('manyRules')!
  const init = bundle.runtime.init('manyRules', {})
  if (!init.ok) throw new Error(init.error.message)
  // Establish the instance's rule state (every match evaluated once), as after its first evaluation.
  const settled = await chain(bundle, workflow, { facts: init.facts, ruleState: {}, handlers: [] })
  const change = (n: number) => ({ facts: settled.facts, ruleState: settled.ruleState, handlers: [{ target: { signal: 'set' }, argument: { key: `s${n % 200}`, value: 1 + (n % 3) } }] })

  const engine = new Engine([], { allowUndefinedFacts: true, pathResolver: (value: object, p: string) => readPath(value, p) })
  for (const rule of workflow.rules) engine.addRule({ conditions: rule.condition as never, event: { type: rule.name }, name: rule.name })

  const praxis: number[] = []
  const jre: number[] = []
  for (let n = 0; n < MATCH_RUNS + 20; n++) {
    let t = performance.now()
    await chain(bundle, workflow, change(n))
    const a = performance.now() - t
    const facts = { v: { ...(settled.facts.v as Record<string, number>), [`s${n % 200}`]: 1 + (n % 3) } }
    t = performance.now()
    await engine.run({ facts })
    const b = performance.now() - t
    if (n >= 20) { praxis.push(a); jre.push(b) }
  }
  record('match', 're-evaluate 1,000 rules after one change, p50', quantile(praxis, 0.5), 'ms', quantile(jre, 0.5))
}

function printTable(): void {
  const header = ['bench', 'metric', 'praxis', 'baseline', 'ratio']
  const lines = rows.map((r) => [r.bench, r.metric, `${r.value} ${r.unit}`, `${r.baseline} ${r.unit}`, `${r.ratio}x`])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  process.stdout.write(`${fmt(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${lines.map(fmt).join('\n')}\n`)
  process.stdout.write('baselines: a bare graphile-worker chain (steps); json-rules-engine running all 1,000 rules (match); type-checking the same service with tsc (codegen)\n')
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 1
})
