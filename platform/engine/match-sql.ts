/**
 * Rule matches compiled to SQL over the JSONB facts, for deploy dry-runs and background
 * reprocessing: `compileMatch` gives a boolean expression that is exactly what
 * `ConditionEvaluator` (json-rules-engine with Praxis' operators, conditions.ts) answers for the
 * same facts, or null when the condition, or any part of it, cannot be compiled with exactly those
 * semantics: the caller then evaluates that rule in the tenant's sandbox.
 *
 * Contract
 * - Every tenant value (paths, literals) goes through `param`, as a string, with an explicit cast
 *   in the SQL (`$n::text`, `$n::jsonb`, `$n::numeric`); the SQL text holds only constants of this
 *   module. `factsColumn` is the caller's SQL (e.g. `i.facts`), never tenant data.
 * - The expression is never SQL NULL: TRUE or FALSE for every row.
 * - Facts are a JSON object as the platform stores them: written by JavaScript (`JSON.stringify`),
 *   so every number is the shortest form of a double and strings hold no lone surrogate.
 * - The database encoding is UTF8 (the regular expressions name non-ASCII white space).
 * - **Undecidable rows.** Where JavaScript would coerce a value in a way SQL cannot reproduce
 *   exactly (an ordering operator on an array, on a string in exponent or hexadecimal notation or
 *   with more than 15 digits, on an object with an own `toString` key, where JS even throws;
 *   strings with characters from U+E000 up on both sides of a string ordering, where UTF-16 and
 *   code-point order differ), the expression does not guess: evaluating it on such a row raises
 *   SQLSTATE 22P02 with `praxis-match-undecidable` in the message (`isUndecidableMatchError`).
 *   The caller then evaluates that rule in the sandbox, as for a null compile. No other error is
 *   possible: every cast is guarded by the JSON type it needs.
 *
 * What JavaScript does, and so what the SQL does (json-rules-engine 7, conditions.ts):
 * - Paths: `readPath` walks own properties. On an array that is the canonical indexes and
 *   `length`; on an object its keys; a scalar has none. `#>` matches for keys and canonical
 *   indexes; a segment like `03`, `-1` or ` 1` is parsed as an index by PostgreSQL, so it is read
 *   only from an object; `length` of an array is its length. The empty path is the whole facts
 *   (json-rules-engine skips the resolver). More than 3 such special segments, `__proto__`: null.
 * - `equal`/`notEqual`: `jsonEqual` (deep, key order ignored; a missing path equals nothing but
 *   another missing path) = jsonb `=`, where numbers compare by value (1 = 1.0, as in JS).
 * - `in`/`notIn`: `list.indexOf(fact)`, i.e. `===`: only a scalar fact can be found.
 * - `contains`/`doesNotContain`: false unless the fact is an array; then `indexOf` (`===`), so
 *   only a scalar is found. A string fact neither contains nor does-not-contain anything.
 * - `exists`: `(value !== undefined && value !== null) === expected`.
 * - Ordering: json-rules-engine first requires `parseFloat(String(fact))` to be a number, then
 *   applies JS `<`/`>`: numbers by value, two strings by UTF-16 code units, anything else through
 *   ToNumber (booleans 1/0, null 0, strings by the StringNumericLiteral grammar). Decimal strings
 *   of at most 15 digits compare exactly as numerics (such a decimal and a double round-trip), as
 *   do the stored numbers (shortest forms order like the doubles they denote).
 * - `all: []` and `any: []` are both true; `not` negates.
 */
import type { Condition } from '../../sdk/match.js'

/** Marks the error an undecidable row raises (see the module comment). */
export const UNDECIDABLE_MARKER = 'praxis-match-undecidable'

/** True for the error a compiled match raises on a row it cannot decide exactly. */
export function isUndecidableMatchError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown; message?: unknown }
  return code === '22P02' && typeof message === 'string' && message.includes(UNDECIDABLE_MARKER)
}

/** Returns a placeholder (`$n`) for a value; compileMatch only ever passes strings. */
export type ParamFn = (value: unknown) => string

const MAX_DEPTH = 32
const MAX_SPECIAL_SEGMENTS = 3
const ORDERING = { greaterThan: '>', greaterThanInclusive: '>=', lessThan: '<', lessThanInclusive: '<=' } as const
type OrderingOperator = keyof typeof ORDERING

/** JS white space and line terminators (ECMA-262 StrWhiteSpaceChar), as a PostgreSQL ARE class. */
const WS = '[\\u0009-\\u000D\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF]'
/** `parseFloat(s)` is a number. */
const RE_VALID = `^${WS}*[+-]?(Infinity|\\.?[0-9])`
const RE_BLANK = `^${WS}*$`
const RE_INFINITY = `^${WS}*[+-]?Infinity${WS}*$`
const RE_NEGATIVE = `^${WS}*-`
/** A plain decimal; its one group is what `::numeric` reads. */
const RE_DECIMAL = `^${WS}*([+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+))${WS}*$`
/** ECMA-262 StringNumericLiteral: what ToNumber does not turn into NaN. */
const RE_NUMERIC = `^${WS}*([+-]?(Infinity|([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?)|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)${WS}*$`
/** Characters whose UTF-16 order differs from their code-point order against some other. */
const RE_HIGH = '[\\uE000-\\U0010FFFF]'

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`
const SCALAR_TYPES = `('string', 'number', 'boolean', 'null')`
const FACTS_COLUMN = /^("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(\.("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*))*$/

class Compiler {
  readonly #values: string[] = []
  readonly #tokens = new Map<string, string>()
  constructor(readonly facts: string) {}

  /**
   * A value's token; `finish` turns the tokens the final SQL holds into placeholders, so `param`
   * sees only values the SQL uses (PostgreSQL refuses a parameter it cannot type), none on null.
   */
  value(s: string, cast: 'text' | 'jsonb' | 'numeric'): string {
    // One placeholder per (value, type): PostgreSQL gives a parameter one type.
    const key = `${cast}:${s}`
    let token = this.#tokens.get(key)
    if (token === undefined) {
      token = `\u0000${this.#values.length}\u0000::${cast}`
      this.#values.push(s)
      this.#tokens.set(key, token)
    }
    return token
  }
  finish(sql: string, param: ParamFn): string {
    const placeholders = new Map<number, string>()
    // NUL-delimited markers: a character no SQL text Praxis writes holds.
    // eslint-disable-next-line no-control-regex
    return sql.replace(/\u0000([0-9]+)\u0000/g, (_, n: string) => {
      const i = Number(n)
      let p = placeholders.get(i)
      if (p === undefined) {
        p = param(this.#values[i]!)
        if (!/^\$[1-9][0-9]*$/.test(p)) throw new Error(`param() must return a placeholder like $1, got ${JSON.stringify(p)}`)
        placeholders.set(i, p)
      }
      return p
    })
  }
  text(s: string): string { return this.value(s, 'text') }
  json(v: unknown): string { return this.value(JSON.stringify(v), 'jsonb') }
  numeric(n: number): string { return this.value(String(n), 'numeric') }

  /** The jsonb at `path` (SQL NULL where `readPath` gives undefined), or null when not compilable. */
  path(path: unknown): string | null {
    if (typeof path !== 'string' || !storableString(path)) return null
    if (path === '') return this.facts // json-rules-engine reads no path: the whole facts
    let expr = this.facts
    let run: string[] = []
    let special = 0
    const flush = (): void => {
      if (run.length > 0) expr = `(${expr} #> ARRAY[${run.map((p) => this.text(p)).join(', ')}])`
      run = []
    }
    for (const part of path.split('.')) {
      if (part === '__proto__') return null
      if (part === 'length') {
        flush()
        expr = `(CASE WHEN jsonb_typeof(${expr}) = 'array' THEN to_jsonb(jsonb_array_length(${expr})) ELSE ${expr} -> ${this.text(part)} END)`
        special++
      } else if (/^(0|[1-9][0-9]*)$/.test(part) || !/^[^A-Za-z0-9_]*[+-]?[0-9]+$/.test(part)) {
        // A key, or a canonical index: #> reads both as readPath does.
        run.push(part)
      } else {
        // strtol would read it as an index (` 1`, `+1`, `01`, `-1`); readPath finds it only in an object.
        flush()
        expr = `(CASE WHEN jsonb_typeof(${expr}) = 'object' THEN ${expr} -> ${this.text(part)} END)`
        special++
      }
      if (special > MAX_SPECIAL_SEGMENTS) return null
    }
    flush()
    return expr
  }

  condition(c: unknown, depth: number): string | null {
    if (depth > MAX_DEPTH || typeof c !== 'object' || c === null || Array.isArray(c)) return null
    const node = c as Record<string, unknown>
    const keys = Object.keys(node)
    const bool = keys.filter((k) => k === 'all' || k === 'any' || k === 'not')
    if (!keys.every((k) => ['all', 'any', 'not', 'fact', 'path', 'operator', 'value', 'priority', 'name'].includes(k))) return null
    if (node.priority !== undefined && typeof node.priority !== 'number') return null
    if (bool.length > 1) return null
    if (bool.length === 1) {
      if (keys.some((k) => k === 'fact' || k === 'path' || k === 'operator' || k === 'value')) return null
      if (bool[0] === 'not') {
        if (Array.isArray(node.not)) return null
        const inner = this.condition(node.not, depth + 1)
        return inner === null ? null : `(NOT ${inner})`
      }
      const list = node[bool[0]!]
      if (!Array.isArray(list)) return null
      if (list.length === 0) return 'TRUE' // json-rules-engine: an empty all or any passes
      const parts: string[] = []
      for (const sub of list) {
        const sql = this.condition(sub, depth + 1)
        if (sql === null) return null
        parts.push(sql)
      }
      return parts.length === 1 ? parts[0]! : `(${parts.join(bool[0] === 'all' ? ' AND ' : ' OR ')})`
    }
    return this.leaf(node)
  }

  leaf(node: Record<string, unknown>): string | null {
    if (node.fact !== 'facts' || !('value' in node) || typeof node.operator !== 'string') return null
    const a = this.path(node.path)
    if (a === null) return null
    const value = node.value
    // json-rules-engine reads any object value with an own `fact` key as a fact reference.
    let ref: string | null = null
    let refPath: string | null = null
    if (typeof value === 'object' && value !== null && Object.prototype.hasOwnProperty.call(value, 'fact')) {
      const v = value as Record<string, unknown>
      if (v.fact !== 'facts' || typeof v.path !== 'string' || Object.keys(v).some((k) => k !== 'fact' && k !== 'path')) return null
      ref = this.path(v.path)
      if (ref === null) return null
      refPath = v.path
    } else if (!storable(value, 0)) {
      return null
    }
    const op = node.operator
    switch (op) {
      case 'equal':
      case 'notEqual': {
        const eq = ref !== null ? `(${a} IS NOT DISTINCT FROM ${ref})` : `COALESCE(${a} = ${this.json(value)}, FALSE)`
        return op === 'equal' ? eq : `(NOT ${eq})`
      }
      case 'in':
      case 'notIn': {
        if (ref !== null || !Array.isArray(value)) return null // a string list is a substring test, others throw
        const scalars = value.filter((v) => v === null || typeof v !== 'object')
        const found = scalars.length === 0
          ? 'FALSE'
          : `(CASE WHEN jsonb_typeof(${a}) IN ${SCALAR_TYPES} THEN ${this.json(scalars)} @> jsonb_build_array(${a}) ELSE FALSE END)`
        return op === 'in' ? found : `(NOT ${found})`
      }
      case 'contains':
      case 'doesNotContain': {
        let found: string
        if (ref !== null) {
          // An element read through the array itself is found by identity, whatever its type.
          if (refPath!.startsWith(`${node.path as string}.`)) return null
          found = `(CASE WHEN jsonb_typeof(${ref}) IN ${SCALAR_TYPES} THEN ${a} @> jsonb_build_array(${ref}) ELSE FALSE END)`
        } else {
          found = value === null || typeof value !== 'object' ? `(${a} @> ${this.json([value])})` : 'FALSE'
        }
        return `(CASE WHEN jsonb_typeof(${a}) = 'array' THEN ${op === 'contains' ? found : `(NOT ${found})`} ELSE FALSE END)`
      }
      case 'exists': {
        if (ref !== null) return null
        const present = `COALESCE(jsonb_typeof(${a}) <> 'null', FALSE)`
        if (value === true) return present
        if (value === false) return `(NOT ${present})`
        return 'FALSE'
      }
      case 'greaterThan':
      case 'greaterThanInclusive':
      case 'lessThan':
      case 'lessThanInclusive':
        if (ref !== null) return this.orderRef(a, op, ref)
        if (typeof value === 'number') return this.orderNumber(a, op, value)
        if (typeof value === 'string') return this.orderString(a, op, value)
        return null
      default:
        return null
    }
  }

  /** `fact OP c` for a number `c`. */
  orderNumber(a: string, op: OrderingOperator, c: number): string {
    const sym = ORDERING[op]
    const cn = this.numeric(c)
    const s = `(${a} #>> '{}')`
    return `(CASE jsonb_typeof(${a})` +
      ` WHEN 'number' THEN (${a})::numeric ${sym} ${cn}` +
      ` WHEN 'string' THEN (CASE WHEN ${s} !~ ${lit(RE_VALID)} THEN FALSE ELSE ${toNumber(s, (x) => `${x} ${sym} ${cn}`, (neg) => infinityLeft(op, neg), raise(a))} END)` +
      ` ELSE ${this.other(a)} END)`
  }

  /** `fact OP c` for a string `c`. */
  orderString(a: string, op: OrderingOperator, c: string): string {
    const sym = ORDERING[op]
    const cn = Number(c) // ToNumber: what a number fact is compared with
    const againstNumber = Number.isNaN(cn) ? 'FALSE'
      : cn === Infinity ? (op === 'lessThan' || op === 'lessThanInclusive' ? 'TRUE' : 'FALSE')
        : cn === -Infinity ? (op === 'greaterThan' || op === 'greaterThanInclusive' ? 'TRUE' : 'FALSE')
          : `(${a})::numeric ${sym} ${this.numeric(cn)}`
    const s = `(${a} #>> '{}')`
    const high = [...c].some((ch) => ch.codePointAt(0)! >= 0xe000)
    return `(CASE jsonb_typeof(${a})` +
      ` WHEN 'number' THEN ${againstNumber}` +
      ` WHEN 'string' THEN (CASE WHEN ${s} !~ ${lit(RE_VALID)} THEN FALSE` +
      (high ? ` WHEN ${s} ~ ${lit(RE_HIGH)} THEN ${raise(a)}` : '') +
      ` ELSE ${s} COLLATE "C" ${sym} ${this.text(c)} END)` +
      ` ELSE ${this.other(a)} END)`
  }

  /** `fact OP otherFact`. */
  orderRef(a: string, op: OrderingOperator, b: string): string {
    const sym = ORDERING[op]
    const sa = `(${a} #>> '{}')`
    const sb = `(${b} #>> '{}')`
    const an = `(${a})::numeric`
    const bn = `(${b})::numeric`
    const boolNum = `(CASE WHEN ${b} = 'true'::jsonb THEN 1 ELSE 0 END)`
    const objectB = `(CASE WHEN (${b} -> 'toString') IS NOT NULL THEN ${raise(b)} ELSE`
    const numberA = `(CASE jsonb_typeof(${b})` +
      ` WHEN 'number' THEN ${an} ${sym} ${bn}` +
      ` WHEN 'null' THEN ${an} ${sym} 0` +
      ` WHEN 'boolean' THEN ${an} ${sym} ${boolNum}` +
      ` WHEN 'string' THEN ${toNumber(sb, (x) => `${an} ${sym} ${x}`, (neg) => infinityRight(op, neg), raise(b))}` +
      ` WHEN 'object' THEN ${objectB} FALSE END)` +
      ` WHEN 'array' THEN ${raise(b)}` +
      ' ELSE FALSE END)'
    const stringAgainst = (x: string): string => toNumber(sa, (y) => `${y} ${sym} ${x}`, (neg) => infinityLeft(op, neg), raise(a))
    const stringA = `(CASE WHEN ${sa} !~ ${lit(RE_VALID)} THEN FALSE ELSE (CASE jsonb_typeof(${b})` +
      ` WHEN 'string' THEN (CASE WHEN ${sa} ~ ${lit(RE_HIGH)} AND ${sb} ~ ${lit(RE_HIGH)} THEN ${raise(a)} ELSE ${sa} COLLATE "C" ${sym} ${sb} COLLATE "C" END)` +
      ` WHEN 'number' THEN ${stringAgainst(bn)}` +
      ` WHEN 'null' THEN ${stringAgainst('0')}` +
      ` WHEN 'boolean' THEN ${stringAgainst(boolNum)}` +
      ` WHEN 'object' THEN ${objectB} ${sa} COLLATE "C" ${sym} '[object Object]' END)` +
      ` WHEN 'array' THEN ${raise(b)}` +
      ' ELSE FALSE END) END)'
    return `(CASE jsonb_typeof(${a}) WHEN 'number' THEN ${numberA} WHEN 'string' THEN ${stringA} ELSE ${this.other(a)} END)`
  }

  /** An ordering on a fact that is neither a number nor a string: the validator fails, or JS coerces. */
  other(a: string): string {
    return `(CASE jsonb_typeof(${a})` +
      ` WHEN 'array' THEN (CASE WHEN jsonb_array_length(${a}) = 0 THEN FALSE ELSE ${raise(a)} END)` +
      ` WHEN 'object' THEN (CASE WHEN (${a} -> 'toString') IS NOT NULL THEN ${raise(a)} ELSE FALSE END)` +
      ' ELSE FALSE END)'
  }
}

/** Raises the undecidable error; depends on the row, so the planner never folds it. */
function raise(v: string): string {
  return `((${lit(`${UNDECIDABLE_MARKER}: `)} || jsonb_typeof(${v}))::boolean)`
}

/**
 * A comparison with ToNumber(s), for a SQL text `s`: `finite(x)` for a numeric x, `infinity(neg)`
 * for ±Infinity (neg: a SQL boolean), else false (NaN), or `undecidable` where SQL cannot round
 * as JS does.
 */
function toNumber(s: string, finite: (x: string) => string, infinity: (neg: string) => string, undecidable: string): string {
  return `(CASE WHEN ${s} ~ ${lit(RE_BLANK)} THEN ${finite('0')}` +
    ` WHEN ${s} ~ ${lit(RE_INFINITY)} THEN ${infinity(`(${s} ~ ${lit(RE_NEGATIVE)})`)}` +
    ` WHEN ${s} ~ ${lit(RE_DECIMAL)} AND length(regexp_replace(${s}, '[^0-9]', '', 'g')) <= 15 THEN ${finite(`(substring(${s} from ${lit(RE_DECIMAL)}))::numeric`)}` +
    ` WHEN ${s} ~ ${lit(RE_NUMERIC)} THEN ${undecidable}` +
    ' ELSE FALSE END)'
}

/** `±Infinity OP finite`. */
function infinityLeft(op: OrderingOperator, neg: string): string {
  return op === 'greaterThan' || op === 'greaterThanInclusive' ? `(NOT ${neg})` : neg
}
/** `finite OP ±Infinity`. */
function infinityRight(op: OrderingOperator, neg: string): string {
  return op === 'greaterThan' || op === 'greaterThanInclusive' ? neg : `(NOT ${neg})`
}

/** A string PostgreSQL can hold as text and as jsonb: no NUL, no lone surrogate. */
function storableString(s: string): boolean {
  return !s.includes('\u0000') && !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)
}

/** A JSON value that survives the trip to a jsonb parameter unchanged. */
function storable(v: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) return false
  if (v === null || typeof v === 'boolean') return true
  if (typeof v === 'number') return Number.isFinite(v)
  if (typeof v === 'string') return storableString(v)
  if (Array.isArray(v)) return v.every((x) => storable(x, depth + 1))
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.entries(v).every(([k, x]) => storableString(k) && storable(x, depth + 1))
  }
  return false
}

/**
 * A SQL boolean over the JSONB `factsColumn` that is exactly the rule match's truth, or null when
 * the condition cannot be compiled exactly (evaluate it in the sandbox). `param` receives each
 * value (always a string) and returns its placeholder.
 */
export function compileMatch(condition: Condition, factsColumn: string, param: ParamFn): string | null {
  if (!FACTS_COLUMN.test(factsColumn)) throw new Error(`compileMatch: ${JSON.stringify(factsColumn)} is not a column reference`)
  const compiler = new Compiler(factsColumn)
  const sql = compiler.condition(condition, 0)
  return sql === null ? null : compiler.finish(sql, param)
}

/**
 * "Any of these matches holds": the OR of the compiled conditions, or null when one of them does
 * not compile (`FALSE` for none). For a WHERE clause counting the instances a deploy would fire on.
 */
export function compileAnyMatch(conditions: readonly Condition[], factsColumn: string, param: ParamFn): string | null {
  if (!FACTS_COLUMN.test(factsColumn)) throw new Error(`compileAnyMatch: ${JSON.stringify(factsColumn)} is not a column reference`)
  if (conditions.length === 0) return 'FALSE'
  const compiler = new Compiler(factsColumn)
  const parts: string[] = []
  for (const condition of conditions) {
    const sql = compiler.condition(condition, 0)
    if (sql === null) return null
    parts.push(sql)
  }
  return compiler.finish(parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`, param)
}
