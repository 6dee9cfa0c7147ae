/** The `rule(name)` builder: priority, match, action, reaction, error. */
import type { z } from 'zod'
import type { CallHandle, CallInfo, Failure, RuleContext } from './context.js'
import { DefinitionError } from './errors.js'
import { buildCondition, type Condition, type MatchRoot } from './match.js'
import type { DeepReadonly } from './paths.js'

type Section<F> = (facts: DeepReadonly<F>, ctx: RuleContext<F>) => unknown
type Reaction<F> = (facts: DeepReadonly<F>, output: never, ctx: RuleContext<F>, call: CallInfo<never>) => unknown
type ErrorSection<F> = (facts: DeepReadonly<F>, failure: Failure, ctx: RuleContext<F>, call: CallInfo<never>) => unknown


/** A finished rule, as `defineWorkflow` takes it. */
export interface RuleDefinition<F> {
  readonly kind: 'praxis.rule'
  readonly name: string
  readonly priority: number
  readonly condition: Condition
  readonly sections: RuleSections<F>
}

/** The code of a rule: pure functions over the facts that record commands on `ctx`. */
export interface RuleSections<F> {
  action: Section<F>
  reaction?: Reaction<F>
  error?: ErrorSection<F>
}

type CalledFn<R> = R extends CallHandle<infer Fn> ? Fn : never
type Output<R> = CalledFn<R> extends { readonly output: infer O extends z.ZodType } ? z.output<O> : never
type Input<R> = CalledFn<R> extends { readonly input: infer I extends z.ZodType } ? z.output<I> : never

/** A rule with its action; `reaction` and `error` exist when the action returns a call handle. */
export type ActedRule<F, R> = RuleDefinition<F> & ([CalledFn<R>] extends [never] ? unknown : {
  /** Runs once per successful invocation, with its typed output. */
  reaction(fn: (facts: DeepReadonly<F>, output: Output<R>, ctx: RuleContext<F>, call: CallInfo<Input<R>>) => void): ActedRule<F, R>
  /** Runs when an invocation failed for good (retries spent, fatal error, timeout). */
  error(fn: (facts: DeepReadonly<F>, failure: Failure, ctx: RuleContext<F>, call: CallInfo<Input<R>>) => void): ActedRule<F, R>
})

export interface MatchedRule<F> {
  priority(priority: number): MatchedRule<F>
  /** Records the change of state and moves the workflow forward (`ctx.set`, `ctx.call`). Return the call handle to type the reaction. */
  action<R>(fn: (facts: DeepReadonly<F>, ctx: RuleContext<F>) => R): ActedRule<F, R>
}

export interface RuleBuilder<F> {
  /** Higher fires first among rules that newly match; default 0. */
  priority(priority: number): RuleBuilder<F>
  /** The declarative condition on the facts; runs once, at definition. */
  match(build: (f: MatchRoot<F>) => Condition): MatchedRule<F>
}

/** The typed `rule` factory `defineWorkflow` hands to its `rules` callback. */
export type RuleFactory<F> = (name: string) => RuleBuilder<F>

interface Draft {
  name: string
  priority: number
  condition?: Condition
  action?: Section<unknown>
  reaction?: Reaction<unknown>
  error?: ErrorSection<unknown>
}

/**
 * Starts a rule. Usually reached through `defineWorkflow`'s `rules: (rule) => [...]`, which types
 * the facts for every match path and `ctx.set`.
 * @example
 * rule('assemble').priority(10)
 *   .match((f) => f.all(f.stage.eq('encoding'), f.encoded.eq(f.chunkCount)))
 *   .action((facts, ctx) => { ctx.set({ stage: 'assembling' }); return ctx.call(assemble, { ... }) })
 *   .reaction((facts, out, ctx) => ctx.set({ video: out.uri }))
 */
export function rule<F>(name: string): RuleBuilder<F> {
  if (typeof name !== 'string' || !/^[A-Za-z][\w.-]{0,99}$/.test(name)) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `rule name ${JSON.stringify(name)} is invalid: use letters, digits, "_", "-" or "." and start with a letter`)
  }
  return builder<F>({ name, priority: 0 })
}

function builder<F>(draft: Draft): RuleBuilder<F> & MatchedRule<F> {
  const set = (change: Partial<Draft>): RuleBuilder<F> & MatchedRule<F> => builder<F>({ ...draft, ...change })
  return {
    priority(priority) {
      if (!Number.isInteger(priority)) throw new DefinitionError('PRX_DEFINITION_INVALID', `rule ${draft.name}: priority must be an integer, got ${priority}`)
      return set({ priority })
    },
    match(build) {
      if (draft.condition) throw new DefinitionError('PRX_DEFINITION_INVALID', `rule ${draft.name} has two matches`)
      return set({ condition: buildCondition(build) })
    },
    action(fn) {
      if (!draft.condition) throw new DefinitionError('PRX_RULE_INCOMPLETE', `rule ${draft.name} has an action but no match: call .match(...) first`)
      return finished({ ...draft, action: fn as Section<unknown> }) as never
    },
  }
}

function finished(draft: Draft): RuleDefinition<unknown> {
  const sections: RuleSections<unknown> = { action: draft.action! }
  if (draft.reaction) sections.reaction = draft.reaction
  if (draft.error) sections.error = draft.error
  const definition = { kind: 'praxis.rule' as const, name: draft.name, priority: draft.priority, condition: draft.condition!, sections }
  const add = (section: 'reaction' | 'error') => (fn: Reaction<unknown> & ErrorSection<unknown>) => {
    if (draft[section]) throw new DefinitionError('PRX_DEFINITION_INVALID', `rule ${draft.name} has two ${section} sections`)
    return finished({ ...draft, [section]: fn })
  }
  // Non-enumerable, so a definition reads (and serialises) as plain data.
  Object.defineProperties(definition, { reaction: { value: add('reaction') }, error: { value: add('error') } })
  return definition
}
