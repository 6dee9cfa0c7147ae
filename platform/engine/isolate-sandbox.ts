/**
 * The rule sandbox on isolated-vm: one V8 isolate per (tenant, bundle version), kept warm in an LRU.
 *
 * An isolate is a separate V8 heap: rule code in it reaches no host object (only strings cross),
 * its heap is capped (`memoryMb`), and every call has a time limit. Calls are asynchronous: the
 * isolate runs on isolated-vm's own threads, so the host's event loop never waits for rule code.
 * A call that overruns its time or memory disposes of the isolate (its state is suspect); the next
 * call loads the bundle again. Calls queued on that isolate meanwhile are retried on the new one,
 * so an overrun blames only the evaluation that caused it.
 *
 * Loading: the engine script (engine-script.ts) runs first, then the bundle's code, then its
 * self-description goes to the host (`setup`), whose answer (the indexed workflows) is set up
 * inside, and finally the built-ins and global are frozen. V8's code cache makes later loads of the
 * engine script, and of a bundle loaded before, cheaper.
 */
import { PraxisError } from '../errors.js'
import { engineScript } from './engine-script.js'
import { SandboxError, type RuleSandbox, type SandboxCall, type SandboxCode, type SandboxLimits } from './sandbox.js'

/**
 * The part of isolated-vm this file uses. isolated-vm builds per Node version: 5.0.4 on Node 20
 * and 22, 7.x on Node 24 (package.json installs each as an optional alias; npm skips the one that
 * does not fit), so the types are declared here rather than taken from either package.
 */
interface Script { run(context: Context, options: { timeout: number }): Promise<unknown>; cachedData?: CachedData }
interface Reference { apply(receiver: undefined, args: unknown[], options: { timeout: number; result?: { promise?: boolean } }): Promise<unknown>; get(name: string, options: { reference: true }): Promise<Reference> }
interface Context { global: Reference }
type CachedData = object
interface Isolate {
  readonly isDisposed: boolean
  createContext(): Promise<Context>
  compileScript(code: string, options: { filename: string; cachedData?: CachedData; produceCachedData?: boolean }): Promise<Script>
  dispose(): void
}
interface Ivm { Isolate: new (options: { memoryLimit: number }) => Isolate }

let ivmModule: Promise<Ivm> | undefined
/** isolated-vm for this Node version, loaded on first use (CLI commands that run no rule code never load it). */
function loadIvm(): Promise<Ivm> {
  const major = Number(process.versions.node.split('.')[0])
  const candidates = major >= 24 ? ['isolated-vm-node24', 'isolated-vm-node20'] : ['isolated-vm-node20', 'isolated-vm-node24']
  ivmModule ??= (async () => {
    const failures: string[] = []
    for (const name of candidates) {
      try {
        const m = await import(name) as { default?: Ivm } & Ivm
        return m.default ?? m
      } catch (error) {
        failures.push(`${name}: ${(error as Error).message.split('\n')[0]}`)
      }
    }
    ivmModule = undefined
    throw new Error(`the rule sandbox (isolated-vm) could not load on Node ${process.versions.node} (${failures.join('; ')}): run \`npm install\` with this Node version (20, 22 or 24), which builds it; it needs python3, make and a C++ compiler`)
  })()
  return ivmModule
}

interface Loaded {
  isolate: Isolate
  refs: Record<SandboxCall, Reference>
  /** Calls in flight. */
  busy: number
  /** Evicted from the LRU while busy: dispose of it when the last call returns. */
  evicted: boolean
  /** Disposed of after an overrun: calls still queued on it run again on a new isolate. */
  dead: boolean
}

export class IsolateSandbox implements RuleSandbox {
  readonly #loaded = new Map<string, Promise<Loaded>>()
  /** V8 code cache per script (the engine's under '', bundles' by key). */
  readonly #codeCache = new Map<string, CachedData>()
  #closed = false

  constructor(readonly limits: SandboxLimits) {}

  async load(code: SandboxCode): Promise<void> {
    await this.#get(code)
  }

  async call(code: SandboxCode, fn: SandboxCall, request: string): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const loaded = await this.#get(code)
      loaded.busy++
      try {
        const result = await loaded.refs[fn].apply(undefined, [request], { timeout: this.limits.evaluationMs, result: { promise: fn === 'chain' } })
        if (typeof result !== 'string') throw new SandboxError('PRX_RULE_THREW', 'the rule sandbox answered without JSON text (the bundle replaced the engine?)')
        return result
      } catch (error) {
        // Disposed of because of another call's overrun while this one waited its turn: not this
        // call's fault, so it runs again on a fresh isolate (bounded: each retry follows an overrun).
        if (loaded.dead && !ownFailure(error) && attempt < MAX_REQUEUES) continue
        const failure = classify(error, loaded.isolate, this.limits, 'call')
        if (failure.code === 'PRX_RULE_TIMEOUT' || failure.code === 'PRX_RULE_MEMORY') this.#discard(code.key, loaded)
        throw failure
      } finally {
        loaded.busy--
        if (loaded.busy === 0 && (loaded.evicted || loaded.dead)) dispose(loaded.isolate)
      }
    }
  }

  async forget(key: string): Promise<void> {
    const entry = this.#loaded.get(key)
    if (!entry) return
    this.#loaded.delete(key)
    const loaded = await entry.catch(() => null)
    if (!loaded) return
    loaded.evicted = true
    if (loaded.busy === 0) dispose(loaded.isolate)
  }

  async close(): Promise<void> {
    this.#closed = true
    const all = [...this.#loaded.values()]
    this.#loaded.clear()
    for (const entry of all) {
      const loaded = await entry.catch(() => null)
      if (loaded) dispose(loaded.isolate)
    }
  }

  /** Isolates loaded now (for tests and metrics). */
  get size(): number {
    return this.#loaded.size
  }

  #get(code: SandboxCode): Promise<Loaded> {
    if (this.#closed) throw new Error('the rule sandbox is closed')
    const hit = this.#loaded.get(code.key)
    if (hit) {
      this.#loaded.delete(code.key)
      this.#loaded.set(code.key, hit)
      return hit
    }
    const loading = this.#open(code)
    this.#loaded.set(code.key, loading)
    loading.catch(() => {
      if (this.#loaded.get(code.key) === loading) this.#loaded.delete(code.key)
    })
    this.#evict()
    return loading
  }

  #evict(): void {
    for (const [key, entry] of this.#loaded) {
      if (this.#loaded.size <= this.limits.capacity) break
      this.#loaded.delete(key)
      void entry.then((loaded) => {
        loaded.evicted = true
        if (loaded.busy === 0) dispose(loaded.isolate)
      }, () => undefined)
    }
  }

  #discard(key: string, loaded: Loaded): void {
    loaded.dead = true
    const entry = this.#loaded.get(key)
    void entry?.then((current) => {
      if (current === loaded && this.#loaded.get(key) === entry) this.#loaded.delete(key)
    }, () => undefined)
    dispose(loaded.isolate)
  }

  async #open(code: SandboxCode): Promise<Loaded> {
    const ivm = await loadIvm()
    const engine = await engineScript()
    const isolate = new ivm.Isolate({ memoryLimit: this.limits.memoryMb })
    const deadline = Date.now() + this.limits.loadMs
    const timeout = (): number => Math.max(1, deadline - Date.now())
    try {
      const context = await isolate.createContext()
      await this.#compile(isolate, '', engine, 'praxis-engine.js').then((s) => s.run(context, { timeout: timeout() }))
      const api = await context.global.get('__praxisEngine', { reference: true })
      const ref = (name: string): Promise<Reference> => api.get(name, { reference: true })
      const [describe, setupRef, init, checkSignal, chain] = await Promise.all(['describe', 'setup', 'init', 'checkSignal', 'chain'].map((name) => ref(name)))
      await this.#compile(isolate, code.key, code.code, `${code.service}.bundle.js`).then((s) => s.run(context, { timeout: timeout() }))
      const description = await describe!.apply(undefined, [], { timeout: timeout() })
      if (typeof description !== 'string') throw new PraxisError('PRX_BUNDLE_INVALID', 'the bundle did not describe itself: build it with `praxis deploy <service-dir>`')
      await setupRef!.apply(undefined, [code.setup(description)], { timeout: timeout() })
      return { isolate, refs: { init: init!, checkSignal: checkSignal!, chain: chain! }, busy: 0, evicted: false, dead: false }
    } catch (error) {
      const failure = error instanceof PraxisError ? error : classify(error, isolate, this.limits, 'load')
      dispose(isolate)
      if (failure instanceof PraxisError) throw failure
      throw new PraxisError('PRX_BUNDLE_INVALID', `the bundle of ${code.service} failed to load: ${failure.message}`, { details: { code: failure.code } })
    }
  }

  async #compile(isolate: Isolate, key: string, source: string, filename: string): Promise<Script> {
    const cached = this.#codeCache.get(key)
    const script = await isolate.compileScript(source, { filename, ...(cached ? { cachedData: cached } : { produceCachedData: true }) })
    // isolated-vm sets `cachedData` on the script when asked to produce it.
    const produced = script.cachedData
    if (!cached && produced) {
      this.#codeCache.set(key, produced)
      if (this.#codeCache.size > this.limits.capacity * 4) this.#codeCache.delete(this.#codeCache.keys().next().value!)
    }
    return script
  }
}

function dispose(isolate: Isolate): void {
  try {
    if (!isolate.isDisposed) isolate.dispose()
  } catch {
    // already gone
  }
}

/** How many times a call may be run again after other calls' overruns disposed of its isolate. */
const MAX_REQUEUES = 100
const TIMED_OUT = /timed out/i
const OUT_OF_MEMORY = /memory limit|allocation failed|out of memory/i

/** True when the error is this call's own overrun (not a dispose caused by another call). */
function ownFailure(error: unknown): boolean {
  const message = String((error as Error)?.message ?? error)
  return TIMED_OUT.test(message) || OUT_OF_MEMORY.test(message)
}

function classify(error: unknown, isolate: Isolate, limits: SandboxLimits, phase: 'load' | 'call'): SandboxError {
  if (error instanceof SandboxError) return error
  const message = String((error as Error)?.message ?? error).slice(0, 1000)
  if (TIMED_OUT.test(message)) {
    const ms = phase === 'load' ? limits.loadMs : limits.evaluationMs
    return new SandboxError('PRX_RULE_TIMEOUT', phase === 'load'
      ? `its top-level code ran longer than ${ms} ms (an endless loop?)`
      : `rule code ran longer than ${ms} ms in one evaluation (an endless loop?)`)
  }
  if (OUT_OF_MEMORY.test(message) || isolate.isDisposed) {
    return new SandboxError('PRX_RULE_MEMORY', `rule code used more than the sandbox's ${limits.memoryMb} MB memory cap (${message})`)
  }
  return new SandboxError('PRX_RULE_THREW', `rule code threw: ${message}`)
}
