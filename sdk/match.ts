/**
 * The typed match builder. `match((f) => f.stage.eq('encoding'))` runs once, at definition, and
 * returns json-rules-engine condition JSON: the server evaluates it without running tenant code,
 * and indexes rules by the fact paths it reads.
 */
import { DefinitionError } from './errors.js'

/** JSON values that can appear in facts and conditions. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json }

/** The operators Praxis conditions use: json-rules-engine's built-ins plus `exists`. */
export type Operator =
  | 'equal' | 'notEqual'
  | 'lessThan' | 'lessThanInclusive' | 'greaterThan' | 'greaterThanInclusive'
  | 'in' | 'notIn' | 'contains' | 'doesNotContain'
  | 'exists'

/** A reference to another fact path, for fact-to-fact comparisons. */
export interface FactPathRef { fact: 'facts'; path: string }

export interface LeafCondition { fact: 'facts'; path: string; operator: Operator; value: Json | FactPathRef }
export interface AllCondition { all: Condition[] }
export interface AnyCondition { any: Condition[] }
export interface NotCondition { not: Condition }
/** json-rules-engine condition JSON over the single fact `facts`. */
export type Condition = LeafCondition | AllCondition | AnyCondition | NotCondition

declare const valueType: unique symbol
/** A path in the facts, usable as the right-hand side of a comparison (`f.encoded.eq(f.chunkCount)`). */
export interface PathRef<T> { readonly [valueType]?: T }

type Operand<T> = T | PathRef<T>

/** Comparisons every path has. */
export interface LeafOps<T> {
  eq(value: Operand<T>): Condition
  ne(value: Operand<T>): Condition
  in(values: readonly T[]): Condition
  notIn(values: readonly T[]): Condition
  /** True when the path holds a value other than null. */
  exists(): Condition
  /** True when the path is absent or null. */
  missing(): Condition
}
export interface OrderOps<T> {
  gt(value: Operand<T>): Condition
  gte(value: Operand<T>): Condition
  lt(value: Operand<T>): Condition
  lte(value: Operand<T>): Condition
}
export interface ArrayOps<E> {
  contains(value: Operand<E>): Condition
  notContains(value: Operand<E>): Condition
}

/**
 * The builder for one path; object paths expose their fields, array paths their elements by index
 * (`f.items[0].sku`, the path `items.0.sku`). Tuples `[T]` stop union distribution.
 */
export type PathNode<T> = [T] extends [readonly (infer E)[]]
  ? LeafOps<T> & ArrayOps<E> & PathRef<T> & { readonly [index: number]: PathNode<NonNullable<E>> }
  : [T] extends [number] ? LeafOps<T> & OrderOps<number> & PathRef<T>
  : [T] extends [Record<string, unknown>] ? { readonly [K in keyof T & string]-?: PathNode<NonNullable<T[K]>> } & LeafOps<T> & PathRef<T>
  : LeafOps<T> & PathRef<T>

/** Combinators, available on the root next to the fact fields. */
export interface Combinators {
  all(...conditions: Condition[]): Condition
  any(...conditions: Condition[]): Condition
  not(condition: Condition): Condition
}

/** What a `match` callback receives: the facts' paths plus `all`/`any`/`not`. */
export type MatchRoot<F> = { readonly [K in keyof F & string]-?: PathNode<NonNullable<F[K]>> } & Combinators

/** Field names the builder reserves; a fact field with one of these names cannot be matched by dot access. */
export const RESERVED_NAMES = ['eq', 'ne', 'in', 'notIn', 'exists', 'missing', 'gt', 'gte', 'lt', 'lte', 'contains', 'notContains', 'all', 'any', 'not'] as const

const PATH = Symbol('praxis.path')

function operand(path: string, value: unknown): Json | FactPathRef {
  if (typeof value === 'object' && value !== null && PATH in value) {
    return { fact: 'facts', path: (value as { [PATH]: string })[PATH] }
  }
  assertJson(path, value)
  return value
}

function assertJson(path: string, value: unknown): asserts value is Json {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return
  } else if (Array.isArray(value)) {
    value.forEach((v) => assertJson(path, v))
    return
  } else if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    Object.values(value).forEach((v) => assertJson(path, v))
    return
  }
  const shown = typeof value === 'object' ? Object.prototype.toString.call(value) : String(value)
  throw new DefinitionError('PRX_MATCH_INVALID', `match on "${path}" compares with ${shown}, which is not a JSON value`)
}

function leaf(path: string, operator: Operator, value: Json | FactPathRef): LeafCondition {
  if (path === '') throw new DefinitionError('PRX_MATCH_INVALID', `operator ${operator} needs a fact path (write f.someField.${operator}(...))`)
  return { fact: 'facts', path, operator, value }
}

function pathNode(path: string): unknown {
  const ops: Record<string, unknown> = {
    eq: (v: unknown) => leaf(path, 'equal', operand(path, v)),
    ne: (v: unknown) => leaf(path, 'notEqual', operand(path, v)),
    in: (vs: unknown) => leaf(path, 'in', operand(path, vs)),
    notIn: (vs: unknown) => leaf(path, 'notIn', operand(path, vs)),
    exists: () => leaf(path, 'exists', true),
    missing: () => leaf(path, 'exists', false),
    gt: (v: unknown) => leaf(path, 'greaterThan', operand(path, v)),
    gte: (v: unknown) => leaf(path, 'greaterThanInclusive', operand(path, v)),
    lt: (v: unknown) => leaf(path, 'lessThan', operand(path, v)),
    lte: (v: unknown) => leaf(path, 'lessThanInclusive', operand(path, v)),
    contains: (v: unknown) => leaf(path, 'contains', operand(path, v)),
    notContains: (v: unknown) => leaf(path, 'doesNotContain', operand(path, v)),
  }
  if (path === '') {
    ops.all = (...cs: Condition[]) => ({ all: cs.map((c) => checkCondition(c)) })
    ops.any = (...cs: Condition[]) => ({ any: cs.map((c) => checkCondition(c)) })
    ops.not = (c: Condition) => ({ not: checkCondition(c) })
  }
  return new Proxy(Object.create(null) as object, {
    get(_target, prop) {
      if (prop === PATH) return path
      if (typeof prop === 'symbol') return undefined
      if (Object.prototype.hasOwnProperty.call(ops, prop)) return ops[prop]
      return pathNode(path === '' ? prop : `${path}.${prop}`)
    },
    has(_target, prop) {
      return prop === PATH
    },
  })
}

function checkCondition(c: unknown): Condition {
  if (typeof c !== 'object' || c === null || !('all' in c || 'any' in c || 'not' in c || 'operator' in c)) {
    throw new DefinitionError('PRX_MATCH_INVALID', `expected a condition (built with f.path.eq(...), f.all(...), ...), got ${JSON.stringify(c)}`)
  }
  return c as Condition
}

/** Runs a match callback once and returns the condition JSON it built. */
export function buildCondition<F>(build: (f: MatchRoot<F>) => Condition): Condition {
  return checkCondition(build(pathNode('') as MatchRoot<F>))
}

/** Every fact path a condition reads, fact-to-fact operands included. */
export function conditionPaths(condition: Condition): string[] {
  const paths = new Set<string>()
  const walk = (c: Condition): void => {
    if ('all' in c) c.all.forEach(walk)
    else if ('any' in c) c.any.forEach(walk)
    else if ('not' in c) walk(c.not)
    else {
      paths.add(c.path)
      if (typeof c.value === 'object' && c.value !== null && !Array.isArray(c.value) && c.value.fact === 'facts' && typeof c.value.path === 'string') {
        paths.add(c.value.path)
      }
    }
  }
  walk(condition)
  return [...paths].sort()
}
