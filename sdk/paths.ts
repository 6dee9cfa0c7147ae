/** Type-level fact paths: what `ctx.set` accepts and what each path holds. */

type Depth = [never, 0, 1, 2, 3, 4, 5]

/** Dotted paths into `T` (objects and records; arrays are set whole), at most 5 levels deep. */
export type Paths<T, D extends number = 5> = [D] extends [never]
  ? never
  : [T] extends [readonly unknown[]] ? never
  : [T] extends [Record<string, unknown>]
    ? { [K in keyof T & string]: K | SubPaths<NonNullable<T[K]>, K, Depth[D]> }[keyof T & string]
    : never

type SubPaths<V, K extends string, D extends number> = [V] extends [readonly unknown[]]
  ? never
  : [V] extends [Record<string, unknown>] ? `${K}.${Paths<V, D>}` : never

/** The type held at a dotted path. */
export type PathValue<T, P extends string> = P extends keyof T
  ? T[P]
  : P extends `${infer K}.${infer Rest}`
    ? K extends keyof T ? PathValue<NonNullable<T[K]>, Rest>
    : string extends keyof T ? PathValue<NonNullable<T[string & keyof T]>, Rest> : never
    : string extends keyof T ? T[string & keyof T] : never

/** A patch for `ctx.set`: any set of paths with values of their types. */
export type FactsPatch<F> = { [P in Paths<F>]?: PathValue<F, P> }

/** Facts as rule code sees them: read-only all the way down. */
export type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T
