/**
 * The engine's half of a tenant's isolate. This file is bundled (with chain.ts, conditions.ts and
 * json-rules-engine) into one script that runs in every isolate *before* the tenant's bundle, so it
 * sees the pristine built-ins. It:
 * - first (isolate-prelude.ts) removes what rule code must not have and installs the logical
 *   clock and seeded random;
 * - exposes `__praxisEngine`, whose functions the host calls (one call per evaluation, JSON in and
 *   out) after the bundle has loaded and the built-ins and global have been frozen.
 * Nothing here is trusted by the host: tenant code shares this isolate and can tamper with it, so
 * every answer is checked on the host (checks.ts). It only has to be correct for honest bundles.
 */
// First: hardening and the logical clock, before any library below initialises.
import { setClock, TIMERS } from './isolate-prelude.js'
import type { BundleRuntime, RunRequest, RunResult } from '../../sdk/runtime.js'
import { readPath } from '../../sdk/facts.js'
import { chain, type ChainInput } from './chain.js'
import { indexWorkflow, type LoadedWorkflow, type WorkflowSpec } from './workflow.js'

const g = globalThis as unknown as Record<string, unknown>
const { parse, stringify } = JSON
const EngineError = Error

/** Answers longer than this never leave the isolate (set by the host at setup; a string's length cannot be faked). */
let maxAnswer = 32 * 1024 * 1024
function capped(text: unknown): string {
  if (typeof text !== 'string') throw new EngineError('the bundle answered something other than JSON text')
  if (text.length > maxAnswer) throw new EngineError(`the answer is ${text.length} characters long, more than the ${maxAnswer} the host accepts: facts, calls and results are too large`)
  return text
}

const workflows = new Map<string, LoadedWorkflow>()
let runtime: BundleRuntime | undefined
const bundle = (): BundleRuntime => {
  runtime ??= g.__praxis as BundleRuntime | undefined
  if (!runtime || typeof runtime.run !== 'function') throw new Error('the bundle did not set globalThis.__praxis: build it with `praxis deploy <service-dir>`')
  return runtime
}
let maxFactsBytes = Infinity
let maxInputBytes = Infinity
/**
 * Runs a section (objects in and out when the bundle's runtime offers it, else its JSON protocol).
 * Facts a section grows past the size limit, and call inputs past theirs, fail here, before the
 * engine copies them about (the host checks the final answer again); measuring stops at the
 * limit, so it costs little.
 */
const run = (request: RunRequest): RunResult => {
  const runtime = bundle()
  const result = typeof runtime.execute === 'function' ? runtime.execute(request) : parse(runtime.run(stringify(request))) as RunResult
  if (!result.ok) return result
  if (result.changes.length > 0) {
    let bytes = 0
    for (const path of result.changes) bytes += approxBytes(readPath(result.facts, path), maxFactsBytes - bytes)
    if (bytes > maxFactsBytes) return { ok: false, error: { code: 'PRX_LIMIT_FACTS', message: `a rule section set more than ${maxFactsBytes} bytes of facts (PRAXIS_MAX_FACTS_BYTES): keep large data out of facts (store it, keep a reference)` } }
  }
  for (const call of result.calls) {
    if (approxBytes(call.input, maxInputBytes) > maxInputBytes) return { ok: false, error: { code: 'PRX_LIMIT_INPUT', message: `a rule section calls ${call.function} with an input of more than ${maxInputBytes} bytes (PRAXIS_MAX_INPUT_BYTES): pass a reference to large data instead` } }
  }
  return result
}

/** About how many bytes `value` takes as JSON; stops counting once past `budget`. */
function approxBytes(value: unknown, budget: number): number {
  let bytes = 0
  const stack: unknown[] = [value]
  while (stack.length > 0 && bytes <= budget) {
    const v = stack.pop()
    if (typeof v === 'string') bytes += v.length + 2
    else if (typeof v === 'object' && v !== null) {
      for (const [key, child] of Object.entries(v)) {
        bytes += key.length + 4
        stack.push(child)
      }
      bytes += 2
    } else bytes += 8
  }
  return bytes
}

/**
 * Deep-freezes every object reachable from the global: built-ins, their prototypes, the global
 * itself, so no evaluation can leave state for the next. A writable property of a prototype becomes
 * an accessor whose setter defines the property on the receiver, for the few names code commonly
 * assigns on its own objects (`this.name` in an Error subclass: the "override mistake"), so such code
 * keeps working on frozen prototypes.
 */
const OVERRIDABLE = new Set<PropertyKey>(['constructor', 'name', 'message', 'toString', 'toLocaleString', 'valueOf', 'toJSON', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable', Symbol.toStringTag])
/**
 * Only these prototypes get accessors: an accessor for `constructor` on Array, Promise or RegExp
 * prototypes would take V8 off its fast paths for every array, await and regular expression.
 */
const TAMED = new Set<unknown>([Object.prototype, Function.prototype, Error.prototype, EvalError.prototype, RangeError.prototype, ReferenceError.prototype, SyntaxError.prototype, TypeError.prototype, URIError.prototype])

function freezeAll(): void {
  const seen = new Set<unknown>()
  const stack: { value: unknown; prototype: boolean }[] = [globalThis, ...hiddenIntrinsics()].map((value) => ({ value, prototype: false }))
  while (stack.length > 0) {
    const { value, prototype } = stack.pop()!
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null || seen.has(value)) continue
    seen.add(value)
    for (const key of Reflect.ownKeys(value)) {
      const descriptor = Reflect.getOwnPropertyDescriptor(value, key)
      if (!descriptor) continue
      if (prototype && descriptor.writable && descriptor.configurable && OVERRIDABLE.has(key) && TAMED.has(value)) tame(value, key, descriptor)
      stack.push({ value: descriptor.value, prototype: key === 'prototype' }, { value: descriptor.get, prototype: false }, { value: descriptor.set, prototype: false })
    }
    stack.push({ value: Reflect.getPrototypeOf(value), prototype: true })
    Object.freeze(value)
  }
}

/** Built-ins no property path from the global reaches: iterator and generator prototypes, the async and generator function constructors. */
function hiddenIntrinsics(): unknown[] {
  const found: unknown[] = []
  const protoOf = (value: unknown): unknown => {
    try {
      return Reflect.getPrototypeOf(value as object)
    } catch {
      return null
    }
  }
  const samples: unknown[] = [
    [][Symbol.iterator](), new Map()[Symbol.iterator](), new Set()[Symbol.iterator](), ''[Symbol.iterator](), /x/[Symbol.matchAll](''),
    (function* () {})(), (async function* () {})(), function* () {}, async function () {}, async function* () {}, new Uint8Array(0),
  ]
  for (const sample of samples) {
    let value = protoOf(sample)
    for (let i = 0; i < 3 && value; i++) {
      found.push(value, (value as { constructor?: unknown }).constructor)
      value = protoOf(value)
    }
  }
  found.push(protoOf(Uint8Array))
  return found
}

function tame(holder: object, key: PropertyKey, descriptor: PropertyDescriptor): void {
  const value: unknown = descriptor.value
  Object.defineProperty(holder, key, {
    get: () => value,
    set(this: unknown, next: unknown) {
      if (this === holder) throw new TypeError(`Cannot assign to read only property ${String(key)} of a frozen built-in`)
      Object.defineProperty(this, key, { value: next, writable: true, enumerable: true, configurable: true })
    },
    enumerable: descriptor.enumerable ?? false,
    configurable: false,
  })
}

g.__praxisEngine = {
  describe: (): string => capped(bundle().describe()),
  setup(setupJson: string): void {
    const setup = parse(setupJson) as { workflows: WorkflowSpec[]; maxFactsBytes: number; maxInputBytes: number; maxAnswer: number }
    for (const spec of setup.workflows) workflows.set(spec.name, indexWorkflow(spec))
    maxFactsBytes = setup.maxFactsBytes
    maxInputBytes = setup.maxInputBytes
    maxAnswer = setup.maxAnswer
    runtime = bundle()
    // Libraries have loaded (some keep a reference to the timer stubs); rule code gets no timers.
    for (const name of TIMERS) delete g[name]
    freezeAll()
  },
  init(requestJson: string): string {
    const r = parse(requestJson) as { workflow: string; input: unknown; now: number; seed: number }
    setClock(r.now, r.seed)
    return capped(bundle().init(r.workflow, stringify(r.input ?? null)))
  },
  checkSignal(requestJson: string): string {
    const r = parse(requestJson) as { workflow: string; signal: string; payload: unknown; now: number; seed: number }
    setClock(r.now, r.seed)
    return capped(bundle().checkSignal(r.workflow, r.signal, stringify(r.payload ?? null)))
  },
  migrate(requestJson: string): string {
    const r = parse(requestJson) as { workflow: string; facts: unknown; fromVersion: number; now: number; seed: number }
    setClock(r.now, r.seed)
    const runtime = bundle()
    if (typeof runtime.migrate !== 'function') return stringify({ ok: false, error: { code: 'PRX_MIGRATION_FAILED', message: 'the bundle has no migrate entry point: build it again with this version of praxis' } })
    return capped(runtime.migrate(r.workflow, stringify(r.facts ?? null), r.fromVersion))
  },
  async chain(requestJson: string): Promise<string> {
    const r = parse(requestJson) as { workflow: string; input: ChainInput; now: number; seed: number }
    setClock(r.now, r.seed)
    const workflow = workflows.get(r.workflow)
    if (!workflow) throw new Error(`workflow ${r.workflow} is not in this bundle`)
    return capped(stringify(await chain(run, workflow, r.input)))
  },
}
