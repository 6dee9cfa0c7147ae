/**
 * Fact paths: what `ctx.set` / `ctx.setPath` accept and what each path holds (types), and whether
 * a path is in a facts schema given as JSON Schema (`factPathProblem`, used by `praxis codegen` and
 * `praxis check` on every match and every static `ctx.set` path).
 *
 * A path is dotted: object fields and record keys by name, array elements by index (`chunks.3`,
 * `items.0.sku`). Record keys cannot hold a dot (paths are split on dots).
 */

type Depth = [never, 0, 1, 2, 3, 4, 5]
type IsAny<T> = 0 extends 1 & T ? true : false
/** An array index segment (`0`, `12`). */
type Index = `${number}`

/**
 * Dotted paths into `T` at most 5 levels deep: fields of objects, keys of records, indexes of
 * arrays (`items.${number}`), and the fields of every member of a union of objects.
 */
export type Paths<T, D extends number = 5> = [D] extends [never]
  ? never
  : IsAny<T> extends true ? never
  : T extends readonly (infer E)[] ? Index | SubPaths<NonNullable<E>, Index, Depth[D]>
  : T extends Record<string, unknown>
    ? { [K in keyof T & string]-?: K | SubPaths<NonNullable<T[K]>, K, Depth[D]> }[keyof T & string]
    : never

type SubPaths<V, K extends string, D extends number> = [D] extends [never] ? never
  : IsAny<V> extends true ? never
  : [V] extends [readonly unknown[] | Record<string, unknown>] ? `${K}.${Paths<V, D>}`
  : never

/**
 * The type held at a dotted path: `PathValue<{ t: Record<string, Record<string, string>> }, 't.fi.3'>`
 * is `string`. A segment is a field or record key of an object, or an index of an array (its
 * element type, or the tuple member). Unions of objects are walked member by member.
 */
export type PathValue<T, P extends string> = T extends unknown
  ? P extends `${infer K}.${infer Rest}`
    ? PathValue<NonNullable<Step<T, K>>, Rest>
    : Step<T, P>
  : never

/** One segment down: a field, a record key, or an array index (never a member of a string or number). */
type Step<T, K extends string> = IsAny<T> extends true ? unknown
  : T extends readonly (infer E)[]
    ? K extends keyof T ? T[K] : K extends Index ? E : never
    : T extends Record<string, unknown>
      ? K extends keyof T ? T[K]
      : string extends keyof T ? T[string & keyof T]
      : never
    : never

/**
 * A patch for `ctx.set`: any set of paths with values of their types. Below a record, TypeScript
 * keeps one pattern for all depths (`translated.${string}` also stands for `translated.fi.3`), so
 * such a key takes a value of any depth below it: `'translated.fi.3'` takes a string, and
 * `'translated.fi'` a record or a string (the facts schema, checked after the rule, refuses the
 * wrong one).
 * `ctx.setPath` has no such slack: its value is exactly the path's.
 */
export type FactsPatch<F> = { [P in Paths<F>]?: PatchValue<F, P> }

type PatchValue<F, P extends string> = EndsOpen<P> extends true ? Below<PathValue<F, P>, 5> : PathValue<F, P>

/** True for a path pattern whose last segment is any string (a record key). */
type EndsOpen<P extends string> = P extends `${string}.${infer Last}` ? (string extends Last ? true : EndsOpen<Last>) : false

/** A value and every value nested in it, at most `D` levels down. */
type Below<V, D extends number> = [D] extends [never] ? V
  : V | (V extends readonly (infer E)[] ? Below<E, Depth[D]> : V extends Record<string, unknown> ? Below<V[keyof V], Depth[D]> : never)

/** Facts as rule code sees them: read-only all the way down. */
export type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T

/** Why a fact path is not in a facts schema. */
export interface FactPathProblem {
  /** The path as given. */
  path: string
  /** How many of its segments are in the schema: the one at this index is not. */
  valid: number
  /** What is wrong at that segment, in words (`video has no field "urii"`). */
  reason: string
  /** The names the schema knows at that place (fields, record keys of an enum), sorted. */
  known: string[]
  /** The known name closest to the wrong segment, when one is close. */
  suggestion?: string
}

type Schema = Record<string, unknown>
interface Miss { at: number; reason: string; known: string[]; field: boolean }
type Outcome = true | Miss

const INDEX = /^(0|[1-9][0-9]*)$/
/** How deep `$ref`s and nested combinators are followed before a path is taken as valid. */
const MAX_STEPS = 200

/**
 * Checks a dotted fact path against a facts schema in JSON Schema (as zod's `toJSONSchema` writes
 * it: `properties`, records as `additionalProperties` with `propertyNames`, arrays as `items` /
 * `prefixItems`, `anyOf` / `oneOf` / `allOf`, nullable types, local `$ref`s). Returns null when the
 * path can exist in facts of that schema, else what is wrong. A part of the schema it cannot
 * constrain (`{}`, an unknown keyword, a `$ref` it cannot resolve) accepts any path below it.
 *
 * `options.children`: the path is a prefix of a longer one whose rest is not known (a template
 * with a computed segment): it must hold an object, a record or an array.
 *
 * An object without `additionalProperties` is taken as closed (zod's `z.object`, whose unknown keys
 * the facts schema never declares); `z.looseObject` and `.catchall` are open.
 */
export function factPathProblem(schema: unknown, path: string, options: { children?: boolean } = {}): FactPathProblem | null {
  const segments = path === '' ? [] : path.split('.')
  let steps = 0
  const root = schema

  const resolve = (ref: string): unknown => {
    if (ref === '#') return root
    if (!ref.startsWith('#/')) return undefined
    let node: unknown = root
    for (const raw of ref.slice(2).split('/')) {
      const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~')
      if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) return undefined
      node = (node as Schema)[key]
    }
    return node
  }
  const holder = (i: number): string => (i === 0 ? 'the facts schema' : segments.slice(0, i).join('.'))

  const walk = (node: unknown, i: number): Outcome => {
    if (++steps > MAX_STEPS) return true
    if (node === false) return { at: Math.max(0, i - 1), reason: `${holder(Math.max(0, i - 1))} holds nothing at ${segments[i - 1] ?? ''}`, known: [], field: false }
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return true
    const s = node as Schema
    if (typeof s.$ref === 'string') {
      const target = resolve(s.$ref)
      return target === undefined ? true : walk(target, i)
    }
    const alternatives: Outcome[] = []
    for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
      if (Array.isArray(s[key])) for (const branch of s[key] as unknown[]) alternatives.push(walk(branch, i))
    }
    if (alternatives.length === 0 || hasShape(s)) alternatives.push(own(s, i))
    return best(alternatives)
  }

  const own = (s: Schema, i: number): Outcome => {
    const types = typesOf(s)
    const objectLike = types.includes('object')
    const arrayLike = types.includes('array')
    if (types.length === 0) return true
    if (i === segments.length) {
      if (!options.children || objectLike || arrayLike) return true
      return { at: Math.max(0, i - 1), reason: `${holder(i)} holds ${describe(types)}, which has no fields`, known: [], field: false }
    }
    const segment = segments[i]!
    const outcomes: Outcome[] = []
    if (objectLike) outcomes.push(objectStep(s, segment, i))
    if (arrayLike) outcomes.push(arrayStep(s, segment, i))
    if (outcomes.length === 0) return { at: i, reason: `${holder(i)} holds ${describe(types)}, which has no fields`, known: [], field: false }
    return best(outcomes)
  }

  const objectStep = (s: Schema, segment: string, i: number): Outcome => {
    const properties = isSchema(s.properties) ? s.properties : {}
    if (Object.hasOwn(properties, segment)) return walk(properties[segment], i + 1)
    if (isSchema(s.patternProperties)) {
      for (const [pattern, sub] of Object.entries(s.patternProperties)) {
        if (matches(pattern, segment)) return walk(sub, i + 1)
      }
    }
    const additional = s.additionalProperties
    const names = Object.keys(properties).sort()
    if (additional === undefined || additional === false) {
      return { at: i, reason: `${holder(i)} has no field "${segment}"`, known: names, field: true }
    }
    const keys = isSchema(s.propertyNames) ? s.propertyNames : null
    if (keys) {
      const allowed = Array.isArray(keys.enum) ? keys.enum.map(String) : 'const' in keys ? [String(keys.const)] : null
      if (allowed && !allowed.includes(segment)) {
        return { at: i, reason: `${holder(i)} has no key "${segment}" (its keys are ${allowed.map((k) => JSON.stringify(k)).join(', ')})`, known: [...names, ...allowed].sort(), field: true }
      }
      if (typeof keys.pattern === 'string' && !matches(keys.pattern, segment)) {
        return { at: i, reason: `${holder(i)} has no key "${segment}" (its keys match /${keys.pattern}/)`, known: names, field: true }
      }
    }
    return walk(additional, i + 1)
  }

  const arrayStep = (s: Schema, segment: string, i: number): Outcome => {
    if (!INDEX.test(segment)) {
      return { at: i, reason: `${holder(i)} is an array: its elements are reached by index (${holder(i)}.0), and it has no field "${segment}"`, known: [], field: false }
    }
    const index = Number(segment)
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems as unknown[] : []
    if (index < prefix.length) return walk(prefix[index], i + 1)
    if (s.items === false) return { at: i, reason: `${holder(i)} holds ${prefix.length} item${prefix.length === 1 ? '' : 's'}, so it has no index ${segment}`, known: [], field: false }
    return walk(s.items, i + 1)
  }

  const outcome = walk(schema, 0)
  if (outcome === true) return null
  const wrong = segments[outcome.at] ?? ''
  const suggestion = closest(wrong, outcome.known)
  return { path, valid: outcome.at, reason: outcome.reason, known: outcome.known, ...(suggestion ? { suggestion } : {}) }
}

function isSchema(value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Keywords that describe a value's own shape (next to, or instead of, combinators). */
function hasShape(s: Schema): boolean {
  return ['type', 'properties', 'additionalProperties', 'patternProperties', 'items', 'prefixItems', 'const', 'enum'].some((k) => k in s)
}

/** The JSON types a schema allows; empty when it does not constrain them. */
function typesOf(s: Schema): string[] {
  if (typeof s.type === 'string') return [s.type]
  if (Array.isArray(s.type)) return s.type.filter((t): t is string => typeof t === 'string')
  const out = new Set<string>()
  if ('properties' in s || 'additionalProperties' in s || 'patternProperties' in s || 'propertyNames' in s) out.add('object')
  if ('items' in s || 'prefixItems' in s) out.add('array')
  const values = 'const' in s ? [s.const] : Array.isArray(s.enum) ? s.enum : []
  for (const value of values) out.add(value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value)
  return [...out]
}

function describe(types: string[]): string {
  const named = types.map((t) => (t === 'null' ? 'null' : t === 'integer' ? 'an integer' : `a ${t}`))
  return named.join(' or ')
}

/** The outcome of several alternatives: valid when one is; else the miss that got furthest (fields of objects first). */
function best(outcomes: Outcome[]): Outcome {
  let found: Miss | null = null
  for (const outcome of outcomes) {
    if (outcome === true) return true
    if (!found || outcome.at > found.at || (outcome.at === found.at && outcome.field && !found.field)) {
      found = { ...outcome, known: [...outcome.known] }
    } else if (outcome.at === found.at && outcome.field === found.field) {
      found.known = [...new Set([...found.known, ...outcome.known])].sort()
    }
  }
  return found ?? true
}

function matches(pattern: string, value: string): boolean {
  try {
    return new RegExp(pattern, 'u').test(value)
  } catch {
    return true
  }
}

/** The known name closest to `wrong` (edit distance at most a third of its length, at least 1), if any. */
function closest(wrong: string, known: readonly string[]): string | undefined {
  let found: string | undefined
  let least = Math.max(1, Math.floor(wrong.length / 3)) + 1
  for (const name of known) {
    const d = name.toLowerCase() === wrong.toLowerCase() ? 0 : distance(wrong, name)
    if (d < least) {
      least = d
      found = name
    }
  }
  return found
}

/** Edit distance counting a swap of two neighbours as one edit (`emial` → `email`). */
function distance(a: string, b: string): number {
  const rows: number[][] = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1)
      row[j] = d
    }
    rows.push(row)
  }
  return rows[a.length]![b.length]!
}
