/**
 * Evaluates rule matches with json-rules-engine. Praxis owns the agenda; the library only answers
 * "is this condition true of these facts". One `Engine` per evaluation, never shared, and a plain
 * dotted-path resolver: tenant paths never reach jsonpath-plus.
 */
import { Almanac, Engine, Rule } from 'json-rules-engine'
import { jsonEqual, readPath } from '../../sdk/facts.js'
import type { LoadedRule } from './workflow.js'

/** `rule.evaluate(almanac)` is public in json-rules-engine's JS but missing from its typings. */
interface EvaluableRule { evaluate(almanac: Almanac): Promise<{ result: boolean }>; setEngine(engine: Engine): void }

const pathResolver = (value: object, path: string): unknown => readPath(value, path)

/** Answers rule matches for one evaluation. */
export class ConditionEvaluator {
  readonly #engine = new Engine([], { allowUndefinedFacts: true, pathResolver })
  readonly #rules = new Map<LoadedRule, EvaluableRule>()

  constructor() {
    // json-rules-engine's equal is ===: facts are JSON, so compare arrays and objects by value.
    this.#engine.addOperator('equal', (a: unknown, b: unknown) => jsonEqual(a, b))
    this.#engine.addOperator('notEqual', (a: unknown, b: unknown) => !jsonEqual(a, b))
    this.#engine.addOperator('exists', (factValue: unknown, expected: unknown) => (factValue !== undefined && factValue !== null) === expected)
  }

  /** The truth of each rule's match over `facts`. */
  async evaluate(rules: readonly LoadedRule[], facts: object): Promise<Map<LoadedRule, boolean>> {
    const almanac = new Almanac({ allowUndefinedFacts: true, pathResolver })
    almanac.addFact('facts', facts)
    const truth = new Map<LoadedRule, boolean>()
    for (const rule of rules) {
      const result = await this.#compiled(rule).evaluate(almanac)
      truth.set(rule, result.result)
    }
    return truth
  }

  #compiled(rule: LoadedRule): EvaluableRule {
    let compiled = this.#rules.get(rule)
    if (!compiled) {
      const top = 'all' in rule.condition || 'any' in rule.condition || 'not' in rule.condition ? rule.condition : { all: [rule.condition] }
      compiled = new Rule({ conditions: top as never, event: { type: rule.name }, name: rule.name }) as unknown as EvaluableRule
      compiled.setEngine(this.#engine)
      this.#rules.set(rule, compiled)
    }
    return compiled
  }
}
