/**
 * The OpenAPI document's schema metadata: the components it names (shown once under
 * `components/schemas`, referred to with `$ref`) and the descriptions of fields and parameters.
 * A registry of its own, not zod's global one: the document holds what the API declares here and
 * nothing another module (a service's own schemas, in a `praxis dev` process) registers.
 */
import { z } from 'zod'

export const components = z.registry<{ id?: string; description?: string }>()

/** A copy of `schema` that the document describes with `description`. */
export function described<S extends z.ZodType>(schema: S, description: string): S {
  const copy = schema.clone()
  components.add(copy, { description })
  return copy
}

/** `schema` as the document's component `id`. */
export function named<S extends z.ZodType>(schema: S, id: string, description: string): S {
  components.add(schema, { id, description })
  return schema
}
