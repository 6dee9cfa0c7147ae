/**
 * The rules side of a bundle, as the platform drives it. Everything crosses this boundary as JSON
 * strings, so the same protocol works in any sandbox (a tenant's isolate on the rule server).
 * Runs inside the bundle: no Node APIs.
 */
import { toJSONSchema, type z } from 'zod'
import { formatIssues, recordingContext, type Command } from './context.js'
import { jsonEqual, readPath, writePath } from './facts.js'
import type { Json } from './match.js'
import type { RuleDefinition } from './rule.js'
import { isWorkflow, type WorkflowDefinition } from './workflow.js'

/** A rule as the platform sees it: data plus the source text its fingerprint hashes. */
export interface RuleDescription {
  name: string
  priority: number
  condition: RuleDefinition<unknown>['condition']
  source: string
  hasReaction: boolean
  hasError: boolean
}
export interface WorkflowDescription {
  name: string
  maxFirings: number
  signals: string[]
  inputSchema: unknown
  factsSchema: unknown
  /** null when the workflow declares no result schema. */
  resultSchema: unknown
  /** Payload schema of each signal. */
  signalSchemas: Record<string, unknown>
  rules: RuleDescription[]
  /** Whether a deploy's added or changed rules reopen completed instances. */
  reopen?: boolean
  /** The facts schema's version (absent: 1). */
  factsVersion?: number
}

/** Which code to run: a rule section or a signal handler. */
export type SectionTarget = { rule: string; section: 'action' | 'reaction' | 'error' } | { signal: string }

export interface RunRequest {
  workflow: string
  target: SectionTarget
  facts: Record<string, Json>
  /** reaction: the function output; error: the failure; signal: the payload. */
  argument?: Json
  /** reaction and error: which invocation. */
  call?: Json
}

export type Outcome = { status: 'completed'; result: Json } | { status: 'failed'; error: { message: string; details: Json } }

export type RunResult =
  | { ok: true; facts: Record<string, Json>; changes: string[]; calls: Extract<Command, { op: 'call' }>[]; outcome: Outcome | null }
  | { ok: false; error: { code: string; message: string; details?: unknown } }

/** The JSON protocol a loaded bundle exposes (see platform/engine/bundle.ts). */
export interface BundleRuntime {
  describe(): string
  init(workflow: string, inputJson: string): string
  checkSignal(workflow: string, signal: string, payloadJson: string): string
  /** Runs the workflow's `migrate` on facts of an older version: a RunResult with the migrated facts (and no changes or calls). Absent in bundles built before facts versions. */
  migrate?(workflow: string, factsJson: string, fromVersion: number): string
  run(requestJson: string): string
  /** `run` without the JSON: for the engine inside the same sandbox (it saves two copies of the facts per section). */
  execute?(request: RunRequest): RunResult
}

const failure = (code: string, message: string, details?: unknown): RunResult => ({ ok: false, error: { code, message, details } })

/** New facts (from `init` or `migrate`) checked against the facts schema, its defaults filled in, as JSON data; or `code` with `refused` and the issues. */
function factsResult(wf: WorkflowDefinition, value: unknown, code: string, refused: string): RunResult {
  const parsed = wf.facts.safeParse(value)
  if (!parsed.success) return failure(code, `${refused}: ${formatIssues(parsed.error.issues)}`, parsed.error.issues)
  return { ok: true, facts: JSON.parse(JSON.stringify(parsed.data)) as Record<string, Json>, changes: [], calls: [], outcome: null }
}

/** Builds the runtime over the modules of a service's rules side (every exported workflow). */
export function createRuntime(modules: readonly Record<string, unknown>[]): BundleRuntime {
  const workflows = new Map<string, WorkflowDefinition>()
  for (const mod of modules) {
    for (const value of Object.values(mod)) {
      if (!isWorkflow(value)) continue
      const existing = workflows.get(value.name)
      if (existing && existing !== value) throw new Error(`two workflows are named ${value.name}; workflow names must be unique in a service`)
      workflows.set(value.name, value)
    }
  }
  const get = (name: string): WorkflowDefinition => {
    const wf = workflows.get(name)
    if (!wf) throw new Error(`workflow ${name} is not in this bundle`)
    return wf
  }
  return {
    describe: () => JSON.stringify([...workflows.values()].map(describe)),
    init(name, inputJson) {
      const wf = get(name)
      const input = wf.input.safeParse(JSON.parse(inputJson))
      if (!input.success) return JSON.stringify(failure('PRX_INPUT_INVALID', `input of ${name} is invalid: ${formatIssues(input.error.issues)}`, input.error.issues))
      return JSON.stringify(guard(`init of ${name}`, () => factsResult(wf, wf.init(input.data), 'PRX_FACTS_INVALID', `init of ${name} returned facts that do not match its facts schema`)))
    },
    checkSignal(name, signal, payloadJson) {
      const handler = get(name).signals[signal]
      if (!handler) return JSON.stringify(failure('PRX_SIGNAL_UNKNOWN', `workflow ${name} has no signal ${JSON.stringify(signal)}; it has: ${Object.keys(get(name).signals).join(', ') || 'none'}`))
      const parsed = handler.payload.safeParse(JSON.parse(payloadJson))
      if (!parsed.success) return JSON.stringify(failure('PRX_INPUT_INVALID', `payload of signal ${signal} is invalid: ${formatIssues(parsed.error.issues)}`, parsed.error.issues))
      return JSON.stringify({ ok: true })
    },
    migrate(name, factsJson, fromVersion) {
      const wf = get(name)
      const where = `migrate(facts, ${fromVersion}) of workflow ${name}`
      if (!wf.migrate) return JSON.stringify(failure('PRX_MIGRATION_FAILED', `${where}: the workflow has no migrate, so facts of version ${fromVersion} cannot become version ${wf.factsVersion}`))
      const old = deepFreeze(JSON.parse(factsJson) as Record<string, Json>)
      return JSON.stringify(guard(where, () => factsResult(wf, wf.migrate!(old, fromVersion), 'PRX_MIGRATION_FAILED', `${where} returned facts that do not match the facts schema of version ${wf.factsVersion}`), 'PRX_MIGRATION_FAILED'))
    },
    run(requestJson) {
      const request = JSON.parse(requestJson) as RunRequest
      return JSON.stringify(run(get(request.workflow), request))
    },
    execute: (request) => run(get(request.workflow), request),
  }
}

function describe(wf: WorkflowDefinition): WorkflowDescription {
  return {
    name: wf.name,
    maxFirings: wf.maxFirings,
    reopen: wf.reopen === true,
    factsVersion: wf.factsVersion ?? 1,
    signals: Object.keys(wf.signals),
    inputSchema: schemaOf(wf.input),
    factsSchema: schemaOf(wf.facts),
    resultSchema: wf.result ? schemaOf(wf.result) : null,
    signalSchemas: Object.fromEntries(Object.entries(wf.signals).map(([name, handler]) => [name, schemaOf(handler.payload)])),
    rules: wf.rules.map((r) => ({
      name: r.name,
      priority: r.priority,
      condition: r.condition,
      source: [r.sections.action, r.sections.reaction, r.sections.error].map((f) => (f ? String(f) : '')).join('\n--\n'),
      hasReaction: Boolean(r.sections.reaction),
      hasError: Boolean(r.sections.error),
    })),
  }
}

function schemaOf(schema: z.ZodType): unknown {
  return toJSONSchema(schema, { unrepresentable: 'any', io: 'input' })
}

function run(wf: WorkflowDefinition, request: RunRequest): RunResult {
  const commands: Command[] = []
  const facts = deepFreeze(JSON.parse(JSON.stringify(request.facts)) as Record<string, Json>)
  let where: string
  let invoke: () => unknown
  const target = request.target
  if ('signal' in target) {
    const handler = wf.signals[target.signal]
    if (!handler) return failure('PRX_SIGNAL_UNKNOWN', `workflow ${wf.name} has no signal ${target.signal}`)
    where = `signal ${target.signal} of ${wf.name}`
    const ctx = recordingContext(commands, where)
    invoke = () => handler.handle(facts as never, handler.payload.parse(request.argument), ctx as never)
  } else {
    const rule = wf.rules.find((r) => r.name === target.rule)
    if (!rule) return failure('PRX_RULE_UNKNOWN', `workflow ${wf.name} has no rule ${target.rule}`)
    const section = rule.sections[target.section]
    where = `${target.section} of rule ${rule.name}`
    if (!section) return { ok: true, facts: request.facts, changes: [], calls: [], outcome: null }
    const ctx = recordingContext(commands, where)
    invoke = target.section === 'action'
      ? () => rule.sections.action(facts as never, ctx as never)
      : () => (section as (...args: unknown[]) => unknown)(facts, request.argument, ctx, request.call)
  }
  return guard(where, () => {
    const returned = invoke()
    if (typeof (returned as { then?: unknown } | null)?.then === 'function') {
      return failure('PRX_RULE_ASYNC', `${where} returned a promise: rule code must be synchronous (do I/O in a function and react to its output)`)
    }
    return apply(wf, request.facts, commands, where)
  })
}

function apply(wf: WorkflowDefinition, before: Record<string, Json>, commands: Command[], where: string): RunResult {
  let facts = before
  const changes: string[] = []
  const calls: Extract<Command, { op: 'call' }>[] = []
  let outcome: Outcome | null = null
  for (const command of commands) {
    if (command.op === 'set') {
      for (const [path, value] of Object.entries(command.patch)) {
        if (jsonEqual(readPath(facts, path), value)) continue
        if (facts === before) facts = JSON.parse(JSON.stringify(before)) as Record<string, Json>
        writePath(facts, path, value)
        if (!changes.includes(path)) changes.push(path)
      }
    } else if (command.op === 'call') {
      calls.push(command)
    } else if (!outcome) {
      if (command.op === 'complete' && wf.result) {
        const parsed = wf.result.safeParse(command.result)
        if (!parsed.success) return failure('PRX_RESULT_INVALID', `${where} completes ${wf.name} with a result that does not match its result schema: ${formatIssues(parsed.error.issues)}`, parsed.error.issues)
        command.result = JSON.parse(JSON.stringify(parsed.data ?? null)) as Json
      }
      outcome = command.op === 'complete'
        ? { status: 'completed', result: command.result }
        : { status: 'failed', error: { message: command.message, details: command.details } }
    }
  }
  // Several writes to one path may end where they began: only a net change is a change.
  const net = changes.filter((path) => !jsonEqual(readPath(before, path), readPath(facts, path)))
  if (net.length === 0) facts = before
  changes.splice(0, changes.length, ...net)
  if (changes.length > 0) {
    const invalid = checkFacts(wf, facts, where)
    if (invalid) return invalid
  }
  return { ok: true, facts, changes, calls, outcome }
}

function checkFacts(wf: WorkflowDefinition, facts: Record<string, Json>, where: string): RunResult | null {
  const parsed = wf.facts.safeParse(facts)
  if (parsed.success) return null
  return failure('PRX_FACTS_INVALID', `${where} left facts that do not match the facts schema of ${wf.name}: ${formatIssues(parsed.error.issues)}`, parsed.error.issues)
}

function guard(where: string, body: () => RunResult, code = 'PRX_RULE_THREW'): RunResult {
  try {
    return body()
  } catch (error) {
    const e = error as { code?: unknown; message?: unknown; details?: unknown }
    // A migration's failure keeps its own code; rule code may fail with a code of its choosing.
    if (code !== 'PRX_RULE_THREW') return failure(code, `${where} threw: ${String(e?.message ?? error)}`, { thrown: typeof e?.code === 'string' ? e.code : null })
    return failure(typeof e?.code === 'string' ? e.code : code, `${where} threw: ${String(e?.message ?? error)}`, e?.details)
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
