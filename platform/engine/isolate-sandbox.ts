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
  /** The last call queued: calls run one at a time, so a call's time limit starts when it does. */
  tail: Promise<unknown>
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
        const turn = loaded.tail.then(() => this.#run(code, loaded, fn, request))
        loaded.tail = turn.catch(() => undefined)
        return await turn
      } catch (error) {
        // Disposed of because of another call's overrun while this one waited its turn: not this
        // call's fault, so it runs again on a fresh isolate (bounded: each retry follows an overrun).
        if (error === REQUEUE && attempt < MAX_REQUEUES) continue
        throw error === REQUEUE ? new Error('the rule sandbox kept losing its isolate to other calls\' overruns; try again') : error
      } finally {
        loaded.busy--
        if (loaded.busy === 0 && (loaded.evicted || loaded.dead)) dispose(loaded.isolate)
      }
    }
  }

  /**
   * One call on its isolate, which runs nothing else meanwhile. The host keeps its own clock: a
   * call past its limit (even one whose promise never settles) is a timeout, whatever rule code
   * says; an isolate that isolated-vm disposed of during the call ran out of memory; anything else
   * rule code threw. Errors are told apart by what the host saw, never by their text alone.
   */
  async #run(code: SandboxCode, loaded: Loaded, fn: SandboxCall, request: string): Promise<string> {
    if (loaded.dead || loaded.isolate.isDisposed) throw REQUEUE
    const limit = this.limits.evaluationMs
    const started = performance.now()
    let timer: NodeJS.Timeout | undefined
    const overrun = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(HOST_TIMEOUT), limit + HOST_GRACE_MS)
    })
    try {
      const result = await Promise.race([loaded.refs[fn].apply(undefined, [request], { timeout: limit, result: { promise: fn === 'chain' } }), overrun])
      if (typeof result !== 'string') throw new SandboxError('PRX_RULE_THREW', 'the rule sandbox answered without JSON text (the bundle replaced the engine?)')
      return result
    } catch (error) {
      if (error instanceof SandboxError) throw error
      if (this.#closed) throw new Error('the rule sandbox closed during the call')
      const elapsed = performance.now() - started
      if (error === HOST_TIMEOUT || (elapsed >= limit * 0.9 && TIMED_OUT.test(messageOf(error)))) {
        this.#discard(code.key, loaded)
        throw new SandboxError('PRX_RULE_TIMEOUT', `rule code ran longer than ${limit} ms in one evaluation (an endless loop?)`)
      }
      if (loaded.isolate.isDisposed && !loaded.dead && !loaded.evicted) {
        this.#discard(code.key, loaded)
        throw new SandboxError('PRX_RULE_MEMORY', `rule code used more than the sandbox's ${this.limits.memoryMb} MB memory cap`)
      }
      if (loaded.dead || loaded.isolate.isDisposed) throw REQUEUE
      throw new SandboxError('PRX_RULE_THREW', `rule code threw: ${messageOf(error)}`)
    } finally {
      clearTimeout(timer)
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
      const [describe, setupRef, init, checkSignal, migrate, chain] = await Promise.all(['describe', 'setup', 'init', 'checkSignal', 'migrate', 'chain'].map((name) => ref(name)))
      await this.#compile(isolate, code.key, code.code, `${code.service}.bundle.js`).then((s) => s.run(context, { timeout: timeout() }))
      const description = await describe!.apply(undefined, [], { timeout: timeout() })
      if (typeof description !== 'string') throw new PraxisError('PRX_BUNDLE_INVALID', 'the bundle did not describe itself: build it with `praxis deploy <service-dir>`')
      await setupRef!.apply(undefined, [code.setup(description)], { timeout: timeout() })
      return { isolate, refs: { init: init!, checkSignal: checkSignal!, migrate: migrate!, chain: chain! }, busy: 0, evicted: false, dead: false, tail: Promise.resolve() }
    } catch (error) {
      const failure = error instanceof PraxisError ? error : loadFailure(error, isolate, this.limits)
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
/** How long past its limit the host waits for a call before it disposes of the isolate itself. */
const HOST_GRACE_MS = 250
const HOST_TIMEOUT = Symbol('host timeout')
const REQUEUE = Symbol('requeue')
const messageOf = (error: unknown): string => String((error as Error)?.message ?? error).slice(0, 1000)
const TIMED_OUT = /timed out/i
const OUT_OF_MEMORY = /memory limit|allocation failed|out of memory/i

/** Why loading a bundle failed (the deploy is refused either way; this only names the reason). */
function loadFailure(error: unknown, isolate: Isolate, limits: SandboxLimits): SandboxError {
  const message = messageOf(error)
  if (TIMED_OUT.test(message)) return new SandboxError('PRX_RULE_TIMEOUT', `its top-level code ran longer than ${limits.loadMs} ms (an endless loop?)`)
  if (OUT_OF_MEMORY.test(message) || isolate.isDisposed) return new SandboxError('PRX_RULE_MEMORY', `it used more than the sandbox's ${limits.memoryMb} MB memory cap (${message})`)
  return new SandboxError('PRX_RULE_THREW', `rule code threw: ${message}`)
}
