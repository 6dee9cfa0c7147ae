/** `defineWorkflow`: typed facts, an `init`, signal handlers and forward-chaining rules. */
import type { z } from 'zod'
import type { RuleContext } from './context.js'
import { DefinitionError } from './errors.js'
import type { DeepReadonly } from './paths.js'
import { rule, type RuleDefinition, type RuleFactory } from './rule.js'

/** A signal handler: runs when a signal of its name is delivered, with the validated payload. */
export interface SignalHandler<F, P extends z.ZodType = z.ZodType> {
  readonly kind: 'praxis.signal'
  readonly payload: P
  readonly handle: (facts: DeepReadonly<F>, payload: z.output<P>, ctx: RuleContext<F>) => void
}

/** The typed `signal` factory `defineWorkflow` hands to its `signals` callback. */
export type SignalFactory<F> = <P extends z.ZodType>(
  payload: P,
  handle: (facts: DeepReadonly<F>, payload: z.output<P>, ctx: RuleContext<F>) => void,
) => SignalHandler<F, P>

export interface WorkflowOptions<I extends z.ZodType, S extends z.ZodType, R extends z.ZodType = z.ZodType> {
  /** Unique in the service. */
  name: string
  input: I
  /**
   * The result schema: `ctx.complete(result)` must match it, and a parent that starts this workflow
   * (through its generated reference) gets its reaction's output typed by it. Default: any JSON.
   */
  result?: R
  /** The facts schema: every match path and `ctx.set` is checked against it, at compile time and after each rule. */
  facts: S
  /**
   * Builds the first facts from the validated input; schema defaults then fill what it leaves out.
   * Literal values of enum facts need `as const` here (`stage: 'new' as const`), or a `.default()`.
   */
  init: (input: z.output<I>) => NoInfer<z.input<S>>
  rules: (rule: RuleFactory<z.output<S>>) => readonly RuleDefinition<z.output<S>>[]
  signals?: (signal: SignalFactory<z.output<S>>) => Record<string, SignalHandler<z.output<S>>>
  /** Most rule firings one evaluation may make before the instance fails as a cycle. Default 1000. */
  maxFirings?: number
  /**
   * Always on for finished work too: when a deploy adds or changes a rule whose match holds on a
   * *completed* instance of this workflow, the instance is reopened (running again, `instance.reopened`
   * in its timeline) and the rule fires, once. Rules that complete it again must fire again: write
   * them to match the state the new rule's work leaves (a fact the new rule resets, say). Default
   * false: completed instances keep their result. Failed and cancelled ones are never reopened.
   */
  reopen?: boolean
  /**
   * The version of the facts schema, a whole number from 1 (the default). Raise it when a deploy
   * changes the facts' shape, and give `migrate`: every running instance of an older version has
   * its facts migrated, once, before the new rules see them (in the background after the deploy,
   * or at its next evaluation, whichever comes first).
   */
  factsVersion?: number
  /**
   * Migrates an instance's stored facts from `fromVersion` (older than `factsVersion`) to the
   * current facts schema; schema defaults then fill what it leaves out, and the result must match
   * the schema. Runs in the rule sandbox (no I/O). One call takes an instance from any older
   * version to the current one, so handle each `fromVersion` still in use. An instance whose facts
   * it cannot migrate (it throws, or returns facts the schema refuses) fails with
   * PRX_MIGRATION_FAILED and keeps its old facts; the other instances go on.
   * @example migrate: (facts, from) => from === 1 ? { ...facts, tags: [String(facts.tag)] } : facts
   */
  migrate?: (facts: Readonly<Record<string, unknown>>, fromVersion: number) => NoInfer<z.input<S>>
}

/** A defined workflow type (Cosmos "Plato" workflow). */
export interface WorkflowDefinition<I extends z.ZodType = z.ZodType, S extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  readonly kind: 'praxis.workflow'
  readonly name: string
  readonly input: I
  /** The result schema, or null when the workflow declares none. */
  readonly result: R | null
  readonly facts: S
  readonly init: (input: z.output<I>) => z.input<S>
  readonly rules: readonly RuleDefinition<z.output<S>>[]
  readonly signals: Readonly<Record<string, SignalHandler<z.output<S>>>>
  readonly maxFirings: number
  /** Whether a deploy's added or changed rules reopen completed instances (see WorkflowOptions.reopen). */
  readonly reopen: boolean
  /** The facts schema's version (see WorkflowOptions.factsVersion). */
  readonly factsVersion: number
  /** Migrates older facts to this version, or null (see WorkflowOptions.migrate). */
  readonly migrate: ((facts: Readonly<Record<string, unknown>>, fromVersion: number) => z.input<S>) | null
}

/**
 * Defines a workflow type: its input, its facts and the rules that move it forward.
 * @example
 * export const encodeVideo = defineWorkflow({
 *   name: 'encodeVideo',
 *   input: z.object({ source: z.string(), recipe: z.string() }),
 *   facts: Facts,
 *   init: (input) => ({ ...input, stage: 'new', encoded: 0 }),
 *   rules: (rule) => [
 *     rule('split').match((f) => f.stage.eq('new'))
 *       .action((facts, ctx) => { ctx.set({ stage: 'splitting' }); return ctx.call(split, { source: facts.source }) })
 *       .reaction((facts, out, ctx) => ctx.set({ stage: 'encoding', chunkCount: out.chunks })),
 *   ],
 * })
 */
export function defineWorkflow<I extends z.ZodType, S extends z.ZodType, R extends z.ZodType = z.ZodType>(
  options: WorkflowOptions<I, S, R>,
): WorkflowDefinition<I, S, R> {
  const where = `workflow ${JSON.stringify(options.name)}`
  if (typeof options.name !== 'string' || !/^[A-Za-z][\w-]{0,99}$/.test(options.name)) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `${where}: the name must start with a letter and hold only letters, digits, "_" and "-"`)
  }
  if (typeof options.init !== 'function') throw new DefinitionError('PRX_DEFINITION_INVALID', `${where} has no init(input) function`)
  const rules = options.rules(rule as RuleFactory<z.output<S>>)
  const seen = new Set<string>()
  rules.forEach((r, i) => {
    if (typeof r !== 'object' || r === null || r.kind !== 'praxis.rule') {
      throw new DefinitionError('PRX_RULE_INCOMPLETE', `${where}: rules[${i}] is not a finished rule; give it .match(...) and .action(...)`)
    }
    if (seen.has(r.name)) throw new DefinitionError('PRX_RULE_DUPLICATE', `${where} has two rules named ${JSON.stringify(r.name)}; rule names must be unique in a workflow`)
    seen.add(r.name)
  })
  const signals = options.signals?.((payload, handle) => ({ kind: 'praxis.signal', payload, handle })) ?? {}
  for (const name of Object.keys(signals)) {
    if (!/^[A-Za-z][\w.-]{0,99}$/.test(name)) throw new DefinitionError('PRX_DEFINITION_INVALID', `${where}: signal name ${JSON.stringify(name)} is invalid`)
  }
  const maxFirings = options.maxFirings ?? 1000
  if (!Number.isInteger(maxFirings) || maxFirings < 1) throw new DefinitionError('PRX_DEFINITION_INVALID', `${where}: maxFirings must be a positive integer`)
  const factsVersion = options.factsVersion ?? 1
  if (!Number.isInteger(factsVersion) || factsVersion < 1 || factsVersion > 1_000_000) throw new DefinitionError('PRX_DEFINITION_INVALID', `${where}: factsVersion must be a whole number from 1 to 1000000`)
  if (options.migrate !== undefined && typeof options.migrate !== 'function') throw new DefinitionError('PRX_DEFINITION_INVALID', `${where}: migrate must be a function (facts, fromVersion) => facts`)
  if (factsVersion > 1 && !options.migrate) throw new DefinitionError('PRX_DEFINITION_INVALID', `${where} has factsVersion ${factsVersion} but no migrate(facts, fromVersion): give one, so instances with older facts can be brought to version ${factsVersion}`)
  return Object.freeze({ kind: 'praxis.workflow' as const, name: options.name, input: options.input, result: options.result ?? null, facts: options.facts, init: options.init, rules, signals, maxFirings, reopen: options.reopen === true, factsVersion, migrate: options.migrate ?? null })
}

/** True for a value made by `defineWorkflow` (checked by shape: it may come from another realm). */
export function isWorkflow(value: unknown): value is WorkflowDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'praxis.workflow'
}
