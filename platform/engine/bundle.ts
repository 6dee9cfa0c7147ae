/**
 * Bundles: the rules side of a service, built once into one script (build.ts), stored in the
 * database, and loaded by any server or worker process. Rule code runs behind the JSON protocol of
 * sdk/runtime.ts inside a `node:vm` context with its own globals, a deterministic clock and random,
 * and a CPU time limit per call.
 *
 * `node:vm` keeps honest code apart and stops runaway loops; it is not a security boundary against a
 * hostile tenant (see DESIGN.md, "sandboxed"): swapping in isolated-vm only changes `loadRuntime`.
 */
import { createHash } from 'node:crypto'
import vm from 'node:vm'
import { conditionPaths, type Condition } from '../../sdk/index.js'
import type { RunRequest, RunResult, WorkflowDescription } from '../../sdk/runtime.js'
import { byCodePoint, MANIFEST_FORMAT, type ManifestFunction, type ServiceManifest } from '../../sdk/manifest.js'
import { PraxisError } from '../errors.js'

/** What a built bundle carries besides its code. */
export interface Manifest {
  service: string
  workflows: (Omit<WorkflowDescription, 'rules'> & { rules: (Omit<WorkflowDescription['rules'][number], 'source'> & { fingerprint: string; paths: string[] })[] })[]
}

/** A rule as the engine uses it. */
export interface LoadedRule {
  name: string
  priority: number
  /** Declaration order, the tie-break among equal priorities. */
  order: number
  condition: Condition
  fingerprint: string
  /** Fact paths the match reads. */
  paths: string[]
  hasReaction: boolean
  hasError: boolean
}

export interface LoadedWorkflow {
  name: string
  maxFirings: number
  signals: Set<string>
  rules: LoadedRule[]
  byName: Map<string, LoadedRule>
  /** Rules by the first segment of each path they read. */
  index: Map<string, LoadedRule[]>
}

/** The host side of the bundle protocol. */
export interface Runtime {
  init(workflow: string, input: unknown): RunResult
  checkSignal(workflow: string, signal: string, payload: unknown): { ok: true } | Extract<RunResult, { ok: false }>
  run(request: RunRequest): RunResult
}

export interface LoadedBundle {
  service: string
  /** The bundle's script, so a rule sandbox can load it too. */
  code: string
  workflows: Map<string, LoadedWorkflow>
  runtime: Runtime
  manifest: Manifest
}

/** Loads a bundle's code and describes it. Throws PRX_BUNDLE_INVALID with the reason. */
export function loadBundle(service: string, code: string, options: { callTimeoutMs?: number } = {}): LoadedBundle {
  const runtime = loadRuntime(code, options.callTimeoutMs ?? 1000)
  const descriptions = runtime.describe()
  if (!Array.isArray(descriptions)) {
    const reason = (descriptions as { error?: { message?: string } } | null)?.error?.message ?? 'it did not describe itself'
    throw new PraxisError('PRX_BUNDLE_INVALID', `the code is not a Praxis bundle (${reason}): build it with \`praxis deploy <service-dir>\``)
  }
  const manifest: Manifest = { service, workflows: [] }
  const workflows = new Map<string, LoadedWorkflow>()
  for (const wf of descriptions) {
    const rules = wf.rules.map((r, order): LoadedRule => ({
      name: r.name,
      priority: r.priority,
      order,
      condition: r.condition,
      fingerprint: sha256(JSON.stringify([r.name, r.priority, r.condition, r.source])).slice(0, 24),
      paths: conditionPaths(r.condition),
      hasReaction: r.hasReaction,
      hasError: r.hasError,
    }))
    const index = new Map<string, LoadedRule[]>()
    for (const rule of rules) {
      for (const top of new Set(rule.paths.map((p) => p.split('.')[0]!))) {
        index.set(top, [...(index.get(top) ?? []), rule])
      }
    }
    workflows.set(wf.name, { name: wf.name, maxFirings: wf.maxFirings, signals: new Set(wf.signals), rules, byName: new Map(rules.map((r) => [r.name, r])), index })
    manifest.workflows.push({
      ...wf,
      rules: rules.map(({ name, priority, condition, fingerprint, paths, hasReaction, hasError }) => ({ name, priority, condition, fingerprint, paths, hasReaction, hasError })),
    })
  }
  if (workflows.size === 0) throw new PraxisError('PRX_BUNDLE_INVALID', `the bundle of service ${service} exports no workflow: export each defineWorkflow(...) from workflows.ts`)
  return { service, code, workflows, runtime: runtime.host, manifest }
}

function loadRuntime(code: string, callTimeoutMs: number): { host: Runtime; describe(): WorkflowDescription[] } {
  const context = vm.createContext(Object.create(null) as object, { codeGeneration: { strings: false, wasm: false }, name: 'praxis-bundle' })
  try {
    // Determinism: rule code sees a fixed clock and a seeded random, never the host's.
    vm.runInContext(`(() => {
      let seed = 0x2545f491
      Math.random = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return ((seed >>> 0) % 1e9) / 1e9 }
      Date.now = () => 0
    })()`, context)
    vm.runInContext(code, context, { timeout: 10_000, filename: 'bundle.js' })
  } catch (error) {
    throw new PraxisError('PRX_BUNDLE_INVALID', `the bundle failed to load: ${(error as Error).message}`, { cause: error })
  }
  const scripts = new Map<string, vm.Script>()
  const runOptions = callTimeoutMs > 0 ? { timeout: callTimeoutMs } : {}
  const call = (expression: string, args: Record<string, string>): string => {
    Object.assign(context, args)
    let script = scripts.get(expression)
    if (!script) scripts.set(expression, (script = new vm.Script(expression)))
    try {
      return script.runInContext(context, runOptions) as string
    } catch (error) {
      const message = (error as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT'
        ? `rule code ran longer than ${callTimeoutMs} ms (an endless loop?)`
        : `rule code crashed the sandbox: ${(error as Error).message}`
      return JSON.stringify({ ok: false, error: { code: 'PRX_RULE_THREW', message } })
    }
  }
  const parse = <T>(json: string): T => JSON.parse(json) as T
  return {
    describe: () => parse<WorkflowDescription[]>(call('__praxis.describe()', {})),
    host: {
      init: (workflow, input) => parse(call('__praxis.init(__w, __a)', { __w: workflow, __a: JSON.stringify(input ?? null) })),
      checkSignal: (workflow, signal, payload) => parse(call('__praxis.checkSignal(__w, __s, __a)', { __w: workflow, __s: signal, __a: JSON.stringify(payload ?? null) })),
      run: (request) => parse(call('__praxis.run(__a)', { __a: JSON.stringify(request) })),
    },
  }
}

/**
 * The service manifest of a bundle (the format codegen writes and layering reads): its workflows
 * as the bundle describes them, and the functions codegen read from the service's source.
 */
export function serviceManifest(manifest: Manifest, functions: readonly ManifestFunction[], sources: Record<string, string> = {}): ServiceManifest {
  const strip = (schema: unknown): Record<string, unknown> => {
    const { $schema: _, ...rest } = (schema ?? {}) as Record<string, unknown>
    return rest
  }
  return {
    format: MANIFEST_FORMAT,
    service: manifest.service,
    functions: [...functions].sort((a, b) => byCodePoint(a.name, b.name)),
    workflows: [...manifest.workflows].sort((a, b) => byCodePoint(a.name, b.name)).map((w) => ({
      name: w.name,
      input: strip(w.inputSchema),
      facts: strip(w.factsSchema),
      result: w.resultSchema ? strip(w.resultSchema) : null,
      signals: Object.fromEntries(Object.entries(w.signalSchemas ?? {}).sort(([a], [b]) => byCodePoint(a, b)).map(([name, schema]) => [name, strip(schema)])),
      maxFirings: w.maxFirings,
      rules: w.rules.map(({ name, priority, fingerprint, paths, hasReaction, hasError }) => ({ name, priority, fingerprint, paths, hasReaction, hasError })),
      ...(sources[w.name] ? { source: sources[w.name] } : {}),
    })),
  }
}

/** Hex SHA-256 of a text (bundle code, rule fingerprints). */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
