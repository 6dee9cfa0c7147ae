/**
 * Sandbox benchmark: what running rule code in a tenant isolate (isolated-vm) costs, next to the
 * same bundle run in-process without a boundary (test/support/trusted-bundle.ts, node:vm), in the
 * same run.
 *
 * The evaluation is a realistic step of examples/video-encoding (5 rules): an `encodeChunk`
 * result arrives for an instance of a 60-chunk video with 24 chunks encoded (~2 KB of facts); its
 * reaction records the chunk URI, and `assemble`'s match is evaluated again (still false).
 *
 *  - unsandboxed: `chain()` in this process over the trusted bundle (no JSON of the request or the
 *    answer, only the bundle runtime's own per-section JSON, which the isolate does too);
 *  - sandboxed: what Evaluator#chain does: JSON.stringify the request, `sandbox.call(…, 'chain')`
 *    (the async hop to isolated-vm's thread, JSON.parse and chain and JSON.stringify inside the
 *    isolate), then checkChainResult on the answer (JSON.parse and the host's checks).
 * Both run alternately, one evaluation each, in interleaved rounds after a warm-up, so drift on
 * this shared machine lands on both sides. Breakdown rows time the parts of the added cost
 * separately: an empty `chain` call (the hop alone) in the same loop, and again back to back (the
 * isolate's thread still awake), the host's JSON.stringify of the request, checkChainResult
 * (JSON.parse of the answer and the host's checks), the rest (derived: inside the isolate); and, on isolated-vm alone, an echo function called asynchronously (what
 * the sandbox does) vs synchronously on the host thread (applySync), after host work as in a step.
 *
 * Then memory: RSS before and after loading 100 tenants' copies of the bundle (100 isolates),
 * per loaded bundle, and the time of each of those cold loads (engine code cache warm).
 */
import { readFile } from 'node:fs/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import type { Json } from '../sdk/index.js'
import type { ManifestFunction } from '../sdk/manifest.js'
import { buildBundle, BundleCache, chain, checkChainResult, IsolateSandbox, type ChainInput, type HandlerRun } from '../platform/engine/index.js'
import type { CatalogLookup } from '../platform/engine/checks.js'
import { loadTrusted } from '../test/support/trusted-bundle.js'

export interface Target { text: string; met: boolean }
export type RecordRow = (bench: string, metric: string, value: number, unit: string, baseline: number | null, target?: Target) => void

const SERVICE = 'examples/video-encoding'
const WORKFLOW = 'encodeVideo'
const CHUNKS = 60
const ENCODED = 24
const TENANTS = 100
const RUNS = Number(process.env.BENCH_SANDBOX_RUNS ?? 3000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const WARMUP = 500

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const us = (ms: number): number => ms * 1000
const p50Of = (xs: number[]): number => quantile(xs, 0.5)

/** The host's garbage collector, when V8 lets us have it (for steadier RSS readings). */
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

const rssMb = (): number => process.memoryUsage().rss / (1024 * 1024)

/** Spins for `ms` (host work between two calls, as in a step). */
const busy = (ms: number): void => {
  const end = performance.now() + ms
  while (performance.now() < end) { /* host work */ }
}

interface RawReference { apply(receiver: undefined, args: unknown[], options: { timeout: number }): Promise<unknown>; applySync(receiver: undefined, args: unknown[], options: { timeout: number }): unknown }
interface RawIvm {
  Isolate: new (options: { memoryLimit: number }) => {
    createContext(): Promise<{ global: { get(name: string, options: { reference: true }): Promise<RawReference> } }>
    compileScript(code: string): Promise<{ run(context: unknown): Promise<unknown> }>
    dispose(): void
  }
}

/** isolated-vm itself: an echo function called async (as the sandbox does) vs sync, after `idleMs` of host work each time. */
async function rawCalls(runs: number, idleMs: number): Promise<{ async: number; sync: number }> {
  const name = Number(process.versions.node.split('.')[0]) >= 24 ? 'isolated-vm-node24' : 'isolated-vm-node20'
  const m = await import(name) as { default?: RawIvm } & RawIvm
  const ivm = m.default ?? m
  const isolate = new ivm.Isolate({ memoryLimit: 16 })
  try {
    const context = await isolate.createContext()
    await (await isolate.compileScript('globalThis.echo = (s) => s')).run(context)
    const echo = await context.global.get('echo', { reference: true })
    const asyncMs: number[] = []
    const syncMs: number[] = []
    for (let n = 0; n < runs + 200; n++) {
      busy(idleMs)
      let t = performance.now()
      await echo.apply(undefined, ['{}'], { timeout: 1000 })
      const a = performance.now() - t
      busy(idleMs)
      t = performance.now()
      echo.applySync(undefined, ['{}'], { timeout: 1000 })
      const b = performance.now() - t
      if (n >= 200) { asyncMs.push(a); syncMs.push(b) }
    }
    return { async: quantile(asyncMs, 0.5), sync: quantile(syncMs, 0.5) }
  } finally {
    isolate.dispose()
  }
}

export async function benchSandbox(record: RecordRow, progress: (line: string) => void): Promise<void> {
  progress(`[sandbox] building ${SERVICE}…`)
  const { code } = await buildBundle(SERVICE)
  const trusted = loadTrusted('video-encoding', code)
  const workflow = trusted.workflows.get(WORKFLOW)!
  const manifest = JSON.parse(await readFile(`${SERVICE}/generated/manifest.json`, 'utf8')) as { service: string; functions: ManifestFunction[] }
  const catalog = { functions: new Map(manifest.functions.map((f) => [f.name, f])), workflows: new Set([WORKFLOW]) }
  const lookup: CatalogLookup = async (service) => (service === manifest.service ? catalog : null)

  // The instance as it is after its split and 24 encoded chunks, built with the trusted bundle.
  const init = trusted.init(WORKFLOW, { source: 's3://media-ingest/uploads/2025/06/customer-4711/keynote-recording-final.mov', recipe: 'h264-1080p', durationSeconds: CHUNKS * 30 })
  if (!init.ok) throw new Error(init.error.message)
  const call = (id: string, input: Json): Json => ({ id, input, key: null, attempts: 1 })
  const source = init.facts.source as string
  const encodeReaction = (chunk: number): HandlerRun => ({
    target: { rule: 'encode', section: 'reaction' },
    argument: { uri: `${source}.h264-1080p.chunk-${String(chunk).padStart(4, '0')}.mp4` },
    call: call(`01J${String(chunk).padStart(23, '0')}`, { source, chunk, recipe: 'h264-1080p' }),
  })
  let state = await chain(trusted.run, workflow, { facts: init.facts, ruleState: {}, handlers: [] })
  state = await chain(trusted.run, workflow, { facts: state.facts, ruleState: state.ruleState, handlers: [{ target: { rule: 'split', section: 'reaction' }, argument: { chunks: CHUNKS }, call: call('01J-split', { source, recipe: 'h264-1080p', durationSeconds: CHUNKS * 30, chunkSeconds: 30 }) }] })
  state = await chain(trusted.run, workflow, { facts: state.facts, ruleState: state.ruleState, handlers: Array.from({ length: ENCODED }, (_, n) => encodeReaction(n)) })
  const factsBytes = Buffer.byteLength(JSON.stringify(state.facts))
  /** The measured evaluation: the result of chunk ENCODED + n % (CHUNKS - ENCODED - 1). */
  const input = (n: number): ChainInput => ({ facts: state.facts, ruleState: state.ruleState, handlers: [encodeReaction(ENCODED + (n % (CHUNKS - ENCODED - 1)))] })
  const requestOf = (n: number): string => JSON.stringify({ workflow: WORKFLOW, input: input(n), now: Date.now(), seed: n })
  const sample = await chain(trusted.run, workflow, input(0))
  if (sample.firings !== 0 || sample.calls.length !== 0 || Object.keys(sample.facts.chunks as object).length !== ENCODED + 1) throw new Error('the sandbox bench evaluation is not the step it means to measure')

  const bundles = new BundleCache({ limits: { sandboxCapacity: TENANTS + 28 } })
  try {
    progress(`[sandbox] facts ${factsBytes} bytes; first load into a new sandbox…`)
    let t = performance.now()
    const bundle = await bundles.load('sandbox-bench', 'video-encoding', code)
    const firstLoadMs = performance.now() - t
    const sandboxed = async (n: number): Promise<void> => {
      const text = await bundles.sandbox.call(bundle.sandbox, 'chain', requestOf(n))
      const result = await checkChainResult(text, workflow, 'video-encoding', bundles.limits, lookup)
      if (result.firings !== 0) throw new Error('the sandboxed evaluation differs from the unsandboxed one')
    }
    // The hop alone: a chain call with nothing to do (no handlers, every rule state known).
    const emptyRequest = JSON.stringify({ workflow: WORKFLOW, input: { facts: {}, ruleState: state.ruleState, handlers: [] }, now: 0, seed: 0 })
    const answer = await bundles.sandbox.call(bundle.sandbox, 'chain', requestOf(0))
    if (JSON.stringify((JSON.parse(answer) as { facts: unknown }).facts) !== JSON.stringify(sample.facts)) throw new Error('the sandboxed evaluation answers other facts than the unsandboxed one')
    const answerBytes = Buffer.byteLength(answer)
    const requestBytes = Buffer.byteLength(requestOf(0))

    progress(`[sandbox] warming up (${WARMUP} evaluations each)…`)
    for (let n = 0; n < WARMUP; n++) {
      await chain(trusted.run, workflow, input(n))
      await sandboxed(n)
      await bundles.sandbox.call(bundle.sandbox, 'chain', emptyRequest)
      JSON.stringify({ workflow: WORKFLOW, input: input(n), now: n, seed: n })
      await checkChainResult(answer, workflow, 'video-encoding', bundles.limits, lookup)
    }

    const plain: number[] = []
    const boxed: number[] = []
    const hop: number[] = []
    const json: number[] = []
    const checks: number[] = []
    const perRound = Math.ceil(RUNS / ROUNDS)
    for (let round = 0; round < ROUNDS; round++) {
      progress(`[sandbox] [round ${round + 1}/${ROUNDS}] ${perRound} evaluations, unsandboxed and sandboxed alternately…`)
      for (let i = 0; i < perRound; i++) {
        const n = round * perRound + i
        t = performance.now()
        await chain(trusted.run, workflow, input(n))
        plain.push(performance.now() - t)
        t = performance.now()
        await sandboxed(n)
        boxed.push(performance.now() - t)
        t = performance.now()
        await bundles.sandbox.call(bundle.sandbox, 'chain', emptyRequest)
        hop.push(performance.now() - t)
        const request = input(n)
        t = performance.now()
        JSON.stringify({ workflow: WORKFLOW, input: request, now: n, seed: n })
        json.push(performance.now() - t)
        t = performance.now()
        await checkChainResult(answer, workflow, 'video-encoding', bundles.limits, lookup)
        checks.push(performance.now() - t)
      }
    }
    progress('[sandbox] the hop back to back, and isolated-vm alone…')
    const hopAwake: number[] = []
    for (let n = 0; n < 1200; n++) {
      t = performance.now()
      await bundles.sandbox.call(bundle.sandbox, 'chain', emptyRequest)
      if (n >= 200) hopAwake.push(performance.now() - t)
    }
    const raw = await rawCalls(1000, p50Of(plain))
    const p50 = { plain: quantile(plain, 0.5), boxed: quantile(boxed, 0.5) }
    const added = us(p50.boxed - p50.plain)
    record('sandbox', `one evaluation, p50 (${factsBytes} B facts; sandboxed vs in-process)`, us(p50.boxed), 'µs', us(p50.plain))
    record('sandbox', 'one evaluation, p99', us(quantile(boxed, 0.99)), 'µs', us(quantile(plain, 0.99)))
    record('sandbox', 'added per evaluation, p50', added, 'µs', null, { text: '≤ 100 µs', met: added <= 100 })
    record('sandbox', '  of which: empty chain call (the hop), p50', us(quantile(hop, 0.5)), 'µs', null)
    record('sandbox', '    the same call back to back (isolate thread awake), p50', us(quantile(hopAwake, 0.5)), 'µs', null)
    record('sandbox', '    isolated-vm alone: echo, async apply vs applySync, p50', us(raw.async), 'µs', us(raw.sync))
    record('sandbox', `  of which: host JSON.stringify of the request (${requestBytes} B), p50`, us(quantile(json, 0.5)), 'µs', null)
    record('sandbox', `  of which: checkChainResult (JSON.parse of the ${answerBytes} B answer + checks), p50`, us(quantile(checks, 0.5)), 'µs', null)
    // What is left is inside the isolate: its JSON.parse of the request and stringify of the
    // answer, and chaining there instead of here (medians do not subtract exactly: an estimate).
    const rest = added - us(quantile(hop, 0.5) + quantile(json, 0.5) + quantile(checks, 0.5))
    record('sandbox', '  the rest: in the isolate (its JSON in and out, chaining there; derived)', rest, 'µs', null)

    // Memory and cold loads: 100 tenants' copies of the bundle, one isolate each.
    const gc = hostGc()
    gc()
    const before = rssMb()
    const loads: number[] = []
    progress(`[sandbox] loading ${TENANTS} tenants' copies of the bundle (RSS ${Math.round(before)} MB)…`)
    for (let i = 0; i < TENANTS; i++) {
      t = performance.now()
      await bundles.load(`tenant-${String(i).padStart(3, '0')}`, 'video-encoding', code)
      loads.push(performance.now() - t)
      if ((i + 1) % 10 === 0) progress(`[sandbox]   ${i + 1}/${TENANTS} loaded, RSS ${Math.round(rssMb())} MB`)
    }
    gc()
    const after = rssMb()
    const isolates = bundles.sandbox instanceof IsolateSandbox ? bundles.sandbox.size : NaN
    if (isolates !== TENANTS + 1) throw new Error(`expected ${TENANTS + 1} isolates loaded, found ${isolates}`)
    progress(`[sandbox]   RSS ${Math.round(before)} → ${Math.round(after)} MB with ${isolates} isolates`)
    record('sandbox', `RSS per loaded tenant bundle (${TENANTS} tenants, ${isolates} isolates: +${Math.round(after - before)} MB)`, (after - before) / TENANTS, 'MB', null)
    record('sandbox', `cold load of one bundle (${Math.round(code.length / 1024)} KB), p50 (new tenant, engine code cache warm)`, quantile(loads, 0.5), 'ms', null)
    record('sandbox', 'first load into a new sandbox (no code cache yet)', firstLoadMs, 'ms', null)
  } finally {
    await bundles.close()
  }
}
