/**
 * SQL statements with named, typed parameters, built from named parts.
 *
 * The step write is one statement of many common table expressions and ~20 parameters; written
 * with `$13` and `$20` it could only be read with a finger on the values array. Here each part is
 * a function of the parameters by name (`p.tenant` renders as `$1::text`), the statement lists its
 * parts by name, and the values are passed as an object, so a part can be read, reused and tested
 * on its own and a parameter can never be passed in the wrong place.
 */

/** Parameter names to their PostgreSQL types. */
export type ParamTypes = Readonly<Record<string, string>>

/** What a part sees: each parameter as a typed placeholder (`$3::jsonb`). */
export type Params<P extends ParamTypes> = { readonly [K in keyof P]: string }

/** A common table expression: its name and its body, made from the parameters. */
export type Part<P extends ParamTypes> = readonly [name: string, body: (p: Params<P>) => string]

export interface Statement<P extends ParamTypes> {
  /** The prepared statement's name (one plan per process). */
  readonly name: string
  readonly text: string
  /** The values in placeholder order; every parameter must be given (null where unused). */
  values(args: { readonly [K in keyof P]: unknown }): unknown[]
}

/**
 * Builds `with a as (…), b as (…) select …` from `parts` and the final `select`. Part names must
 * be unique; each parameter is numbered once, in the order of `types`.
 */
export function statement<P extends ParamTypes>(name: string, types: P, parts: readonly Part<P>[], select: (p: Params<P>) => string): Statement<P> {
  const keys = Object.keys(types) as (keyof P & string)[]
  const placeholders = Object.fromEntries(keys.map((key, i) => [key, `$${i + 1}::${types[key]}`])) as Params<P>
  const seen = new Set<string>()
  for (const [part] of parts) {
    if (seen.has(part)) throw new Error(`statement ${name}: two parts are named ${part}`)
    seen.add(part)
  }
  const body = parts.map(([part, build]) => `${part} as (\n  ${build(placeholders).trim()})`).join(',\n')
  const text = `${parts.length > 0 ? `with ${body}\n` : ''}${select(placeholders).trim()}`
  return {
    name,
    text,
    values(args) {
      return keys.map((key) => {
        if (!(key in args)) throw new Error(`statement ${name}: parameter ${key} is missing`)
        return args[key]
      })
    },
  }
}
