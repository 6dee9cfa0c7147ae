/**
 * Forward chaining to a fixpoint, the heart of an evaluation (docs/architecture.md, "When a rule fires").
 * Pure over its inputs: no database, so the semantics are testable on their own.
 *
 * - A rule fires when its match *becomes* true (edge-triggered): `ruleState[fingerprint]` keeps
 *   the last known truth; a rule whose fingerprint the instance has never seen counts as newly
 *   true when its match holds (always on). A truth recorded under one of the rule's `aliases`
 *   (fingerprints it had before) counts as its own.
 * - Among rules waiting to fire, the highest priority fires first (ties: declaration order);
 *   after each firing only the rules reading a changed path are evaluated again, so a firing can
 *   disable a waiting rule. A write that changes no value changes nothing.
 * - More than `maxFirings` firings fail the instance, naming the rules in the cycle.
 */
import type { Json } from '../../sdk/index.js'
import { pathsOverlap, readPath } from '../../sdk/facts.js'
import type { Outcome, RunRequest, RunResult, SectionTarget } from '../../sdk/runtime.js'
import { ConditionEvaluator } from './conditions.js'
import type { LoadedRule, LoadedWorkflow } from './workflow.js'

/** A call a section recorded, with the rule that made it. */
/** A call as checked by the host; `batch` numbers its micro-batch in this evaluation (null: a job of its own). */
export type RecordedCall = Omit<Extract<RunResult, { ok: true }>['calls'][number], 'op' | 'batchSize'> & { rule: string; batch?: number | null }

/** A timeline entry before it is stored. */
export interface TimelineDraft { kind: string; rule?: string | null; data: Record<string, unknown> }

/** Code to run before chaining: a reaction, an error section or a signal handler. */
export interface HandlerRun {
  target: SectionTarget
  argument?: Json
  call?: Json
  /** Recorded before the handler runs (the event that caused it). */
  timeline?: TimelineDraft
  /** Record the timeline entry only: the rule has no such section (any more). */
  skip?: boolean
}

export interface ChainInput {
  facts: Record<string, Json>
  ruleState: Record<string, boolean>
  handlers: readonly HandlerRun[]
}

export interface ChainResult {
  facts: Record<string, Json>
  ruleState: Record<string, boolean>
  timeline: TimelineDraft[]
  calls: RecordedCall[]
  outcome: Outcome | null
  /** Whether anything a reader can see changed (facts, calls, outcome). */
  changed: boolean
  firings: number
}

/** Runs one rule section or signal handler of the bundle (its runtime's `run`). */
export type SectionRunner = (request: RunRequest) => RunResult

/**
 * Runs the handlers, then fires rules until none newly matches. `run` runs rule code: inside a
 * tenant's isolate, this whole function runs there too (platform/engine/isolate-engine.ts).
 */
export async function chain(run: SectionRunner, workflow: LoadedWorkflow, input: ChainInput): Promise<ChainResult> {
  const timeline: TimelineDraft[] = []
  const calls: RecordedCall[] = []
  const ruleState: Record<string, boolean> = {}
  for (const rule of workflow.rules) {
    let known = input.ruleState[rule.fingerprint]
    for (const alias of rule.aliases ?? []) known ??= input.ruleState[alias]
    if (known !== undefined) ruleState[rule.fingerprint] = known
  }
  let facts = input.facts
  let outcome: Outcome | null = null
  let changedFacts = false

  /** Applies one section's result; returns the paths it changed. */
  const apply = (result: RunResult, rule: string | null): string[] => {
    if (!result.ok) {
      outcome = { status: 'failed', error: { message: result.error.message, details: { code: result.error.code, rule, details: (result.error.details ?? null) as Json } } }
      timeline.push({ kind: 'rule.failed', rule, data: { code: result.error.code, message: result.error.message } })
      return []
    }
    if (result.changes.length > 0) {
      facts = result.facts
      changedFacts = true
      timeline.push({ kind: 'facts.changed', rule, data: { changes: Object.fromEntries(result.changes.map((p) => [p, (readPath(facts, p) ?? null) as Json])) } })
    }
    for (const call of result.calls) {
      calls.push({ ...call, rule: rule ?? '' })
      timeline.push({ kind: 'invocation.scheduled', rule, data: { function: call.function, pool: call.pool, key: call.key, input: call.input } })
    }
    if (result.outcome) outcome = result.outcome
    return result.changes
  }

  const dirty = new Set<string>()
  for (const handler of input.handlers) {
    if (handler.timeline) timeline.push(handler.timeline)
    if (handler.skip) continue
    const rule = 'rule' in handler.target ? handler.target.rule : null
    const request = { workflow: workflow.name, target: handler.target, facts, ...(handler.argument !== undefined ? { argument: handler.argument } : {}), ...(handler.call !== undefined ? { call: handler.call } : {}) }
    for (const path of apply(run(request), rule)) dirty.add(path)
    if (outcome) break
  }

  const evaluator = new ConditionEvaluator()
  const agenda = new Set<LoadedRule>()
  const fired = new Map<string, number>()
  let firings = 0
  let candidates = outcome ? [] : workflow.rules.filter((r) => !(r.fingerprint in ruleState) || readsAny(r, dirty))
  while (!outcome) {
    if (candidates.length > 0) {
      for (const [rule, truth] of await evaluator.evaluate(candidates, facts)) {
        if (!truth) {
          ruleState[rule.fingerprint] = false
          agenda.delete(rule)
        } else if (ruleState[rule.fingerprint] !== true) {
          agenda.add(rule)
        }
      }
    }
    const next = first(agenda)
    if (!next) break
    agenda.delete(next)
    ruleState[next.fingerprint] = true
    firings++
    fired.set(next.name, (fired.get(next.name) ?? 0) + 1)
    if (firings > workflow.maxFirings) {
      outcome = cycleFailure(workflow, fired)
      timeline.push({ kind: 'rule.failed', rule: next.name, data: { code: 'PRX_RULE_CYCLE', message: outcome.error.message } })
      break
    }
    timeline.push({ kind: 'rule.fired', rule: next.name, data: { priority: next.priority, fingerprint: next.fingerprint } })
    const before = calls.length
    const changes = apply(run({ workflow: workflow.name, target: { rule: next.name, section: 'action' }, facts }), next.name)
    if (next.hasReaction && calls.length === before && !outcome) {
      timeline.push({ kind: 'rule.no_call', rule: next.name, data: { message: `rule ${next.name} has a reaction but its action called no function` } })
    }
    candidates = changes.length === 0 ? [] : workflow.rules.filter((r) => readsAny(r, changes))
  }
  // `outcome` is assigned inside `apply`, which TypeScript's narrowing does not see.
  const o = outcome as Outcome | null
  if (o) {
    timeline.push(o.status === 'completed' ? { kind: 'instance.completed', data: { result: o.result } } : { kind: 'instance.failed', data: { error: o.error } })
  }
  return { facts, ruleState, timeline, calls, outcome: o, changed: changedFacts || calls.length > 0 || o !== null, firings }
}

function readsAny(rule: LoadedRule, changed: Iterable<string>): boolean {
  for (const path of changed) {
    for (const read of rule.paths) if (pathsOverlap(read, path)) return true
  }
  return false
}

function first(agenda: Set<LoadedRule>): LoadedRule | undefined {
  let best: LoadedRule | undefined
  for (const rule of agenda) {
    if (!best || rule.priority > best.priority || (rule.priority === best.priority && rule.order < best.order)) best = rule
  }
  return best
}

function cycleFailure(workflow: LoadedWorkflow, fired: Map<string, number>): Extract<Outcome, { status: 'failed' }> {
  const all = [...fired.entries()].sort((a, b) => b[1] - a[1])
  const repeated = all.filter(([, n]) => n > 1)
  const looping = (repeated.length > 0 ? repeated : all).slice(0, 10)
  const names = looping.map(([name, n]) => `${name} (${n}x)`).join(', ')
  return {
    status: 'failed',
    error: {
      message: `more than ${workflow.maxFirings} rule firings in one evaluation: rules ${names} keep re-enabling each other. Make each action change a fact its own match reads, or raise maxFirings`,
      details: { code: 'PRX_RULE_CYCLE', rules: looping.map(([name]) => name) },
    },
  }
}
