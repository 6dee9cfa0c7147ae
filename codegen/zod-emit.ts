/**
 * JSON Schema (as zod's `toJSONSchema` writes it, `io: 'input'`) back to zod source text. Local
 * function schemas and another service's manifest both go through here, so a stub reads the same
 * whichever side it was generated from. Output is deterministic and formatted: one property a line
 * when an object does not fit on one line.
 */
import { CodegenError } from './errors.js'
import type { JsonSchema } from './static.js'

const WIDTH = 100
const FORMATS: Record<string, string> = { email: 'z.email()', uri: 'z.url()', uuid: 'z.uuid()', 'date-time': 'z.iso.datetime()', date: 'z.iso.date()', time: 'z.iso.time()' }

/**
 * zod source for `schema`; `where` names it in errors ("function encodeChunk input"), `location`
 * (`file:line`) is where it was defined, when known.
 */
export function zodSource(schema: JsonSchema, where: string, indent = '', location?: string): string {
  return new Emitter(where, location).emit(schema, indent)
}

class Emitter {
  constructor(private readonly where: string, private readonly location: string | undefined) {}

  fail(message: string, at: string): never {
    throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', `${this.where}, at ${at || '(root)'}: ${message}`, this.location)
  }

  emit(s: JsonSchema, indent: string, at = ''): string {
    let code = this.base(s, indent, at)
    if (typeof s.description === 'string') code += `.describe(${lit(s.description)})`
    if ('default' in s) code += `.default(${lit(s.default)})`
    return code
  }

  base(s: JsonSchema, indent: string, at: string): string {
    if (typeof s !== 'object' || s === null) return this.fail('not a schema', at)
    if ('$ref' in s || '$defs' in s) return this.fail('recursive or referenced schemas ($ref) cannot be generated', at)
    if ('allOf' in s && s.type !== 'string') return this.fail('intersections (allOf) cannot be generated', at)
    if ('const' in s) return `z.literal(${lit(s.const)})`
    if (Array.isArray(s.enum)) {
      const values = s.enum as unknown[]
      if (values.every((v) => typeof v === 'string')) return `z.enum(${lit(values)})`
      return values.length === 1 ? `z.literal(${lit(values[0])})` : `z.union([${values.map((v) => `z.literal(${lit(v)})`).join(', ')}])`
    }
    const variants = (s.anyOf ?? s.oneOf) as JsonSchema[] | undefined
    if (Array.isArray(variants)) return this.union(variants, indent, at)
    if (Array.isArray(s.type)) {
      // zod merges a union of primitives into one type list: split it back, one variant a type.
      const { description: _d, default: _default, type: types, ...rest } = s
      return this.union((types as string[]).map((t) => ({ ...rest, type: t })), indent, at)
    }
    switch (s.type) {
      case 'string': return this.string(s, at)
      case 'number': return this.number(s, 'z.number()')
      case 'integer': return this.number(s, 'z.int()')
      case 'boolean': return 'z.boolean()'
      case 'null': return 'z.null()'
      case 'array': return this.array(s, indent, at)
      case 'object': return this.object(s, indent, at)
      case undefined: {
        const keys = Object.keys(s).filter((k) => k !== 'description' && k !== 'default')
        return keys.length === 0 ? 'z.unknown()' : this.fail(`cannot express ${JSON.stringify(s)}`, at)
      }
      default: return this.fail(`type ${JSON.stringify(s.type)} has no zod form here`, at)
    }
  }

  union(variants: JsonSchema[], indent: string, at: string): string {
    const nonNull = variants.filter((v) => v.type !== 'null')
    const inner = nonNull.length === 1 ? this.emit(nonNull[0]!, indent, at) : `z.union([${nonNull.map((v, i) => this.emit(v, indent, `${at}|${i}`)).join(', ')}])`
    return nonNull.length < variants.length ? `${inner}.nullable()` : inner
  }

  string(s: JsonSchema, at: string): string {
    const format = typeof s.format === 'string' ? s.format : null
    // starts_with, ends_with, includes and other pattern-backed formats are their pattern.
    const known = format !== null && FORMATS[format] !== undefined
    if (format && !known && typeof s.pattern !== 'string' && !Array.isArray(s.allOf)) this.fail(`string format ${format} has no zod form here`, at)
    let code = known ? FORMATS[format!]! : 'z.string()'
    if (typeof s.minLength === 'number' && s.minLength === s.maxLength) code += `.length(${s.minLength})`
    else {
      if (typeof s.minLength === 'number') code += `.min(${s.minLength})`
      if (typeof s.maxLength === 'number') code += `.max(${s.maxLength})`
    }
    // A known format's own pattern is implied by the format.
    if (typeof s.pattern === 'string' && !known) code += `.regex(new RegExp(${lit(s.pattern)}))`
    // Several checks of one kind (two regexes, a prefix and a suffix) come as allOf of patterns.
    for (const [i, part] of ((s.allOf ?? []) as JsonSchema[]).entries()) {
      const extra = Object.keys(part).filter((k) => k !== 'pattern' && k !== 'format' && k !== 'type')
      if (typeof part.pattern !== 'string' || extra.length > 0) this.fail(`cannot express ${JSON.stringify(part)}`, `${at}&${i}`)
      code += `.regex(new RegExp(${lit(part.pattern)}))`
    }
    return code
  }

  number(s: JsonSchema, base: string): string {
    let code = base
    if (typeof s.exclusiveMinimum === 'number') code += s.exclusiveMinimum === 0 ? '.positive()' : `.gt(${s.exclusiveMinimum})`
    if (typeof s.minimum === 'number' && !(base === 'z.int()' && s.minimum === Number.MIN_SAFE_INTEGER)) code += s.minimum === 0 ? '.nonnegative()' : `.gte(${s.minimum})`
    if (typeof s.exclusiveMaximum === 'number') code += s.exclusiveMaximum === 0 ? '.negative()' : `.lt(${s.exclusiveMaximum})`
    if (typeof s.maximum === 'number' && !(base === 'z.int()' && s.maximum === Number.MAX_SAFE_INTEGER)) code += s.maximum === 0 ? '.nonpositive()' : `.lte(${s.maximum})`
    if (typeof s.multipleOf === 'number') code += `.multipleOf(${s.multipleOf})`
    return code
  }

  array(s: JsonSchema, indent: string, at: string): string {
    if (Array.isArray(s.prefixItems)) {
      const items = (s.prefixItems as JsonSchema[]).map((item, i) => this.emit(item, indent, `${at}[${i}]`))
      const rest = s.items && typeof s.items === 'object' ? `, ${this.emit(s.items as JsonSchema, indent, `${at}[]`)}` : ''
      return `z.tuple([${items.join(', ')}]${rest})`
    }
    const items = s.items && typeof s.items === 'object' ? this.emit(s.items as JsonSchema, indent, `${at}[]`) : 'z.unknown()'
    let code = `z.array(${items})`
    if (typeof s.minItems === 'number' && s.minItems === s.maxItems) code += `.length(${s.minItems})`
    else {
      if (typeof s.minItems === 'number') code += `.min(${s.minItems})`
      if (typeof s.maxItems === 'number') code += `.max(${s.maxItems})`
    }
    return code
  }

  object(s: JsonSchema, indent: string, at: string): string {
    const properties = (s.properties ?? null) as Record<string, JsonSchema> | null
    const additional = s.additionalProperties as JsonSchema | boolean | undefined
    if (!properties && additional && typeof additional === 'object') {
      const keys = s.propertyNames && typeof s.propertyNames === 'object' ? this.emit(s.propertyNames as JsonSchema, indent, `${at}{key}`) : 'z.string()'
      return `z.record(${keys}, ${this.emit(additional, indent, `${at}{}`)})`
    }
    const required = new Set((s.required ?? []) as string[])
    const inner = `${indent}  `
    const entries = Object.entries(properties ?? {}).map(([key, value]) => {
      const code = this.emit(value, inner, at ? `${at}.${key}` : key)
      // Not required, and not made optional by a default: optional.
      const optional = !required.has(key) && !('default' in value) && !code.endsWith('.optional()')
      return `${propertyKey(key)}: ${code}${optional ? '.optional()' : ''}`
    })
    const make = additional === false ? 'z.strictObject' : additional !== undefined && typeof additional === 'object' && Object.keys(additional).length === 0 ? 'z.looseObject' : 'z.object'
    if (entries.length === 0) return `${make}({})`
    const oneLine = `${make}({ ${entries.join(', ')} })`
    if (oneLine.length + indent.length <= WIDTH && !oneLine.includes('\n')) return oneLine
    return `${make}({\n${entries.map((e) => `${inner}${e},`).join('\n')}\n${indent}})`
  }
}

/** A JS literal for a JSON value, with single-quoted strings, keys sorted as given. */
export function lit(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(lit).join(', ')}]`
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
    return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `${propertyKey(k)}: ${lit(v)}`).join(', ')} }`
  }
  return 'null'
}

/** An object key as TypeScript source: bare when it is an identifier. */
export function propertyKey(key: string): string {
  // A literal "__proto__" key would set the prototype: computed, it is a plain property.
  if (key === '__proto__') return `['__proto__']`
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : lit(key)
}
