/**
 * Requests are validated with the routes' zod schemas (`schema.params`, `querystring`, `body`):
 * fastify runs them in that order after the edge (edge.ts) and the API-key check, and an invalid
 * part answers 400 `PRX_BAD_REQUEST` naming every issue with its path (`params.id`,
 * `query.limit`, `body.input`). Replies are written with `JSON.stringify`; with `checkResponses`
 * each one is first checked against the route's documented response schema (responses.ts).
 */
import type { FastifyInstance, FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify'
import { z } from 'zod'
import { PraxisError } from '../errors.js'

/** How errors name each part of a request. */
const PART: Record<string, string> = { params: 'params', querystring: 'query', body: 'body', headers: 'headers' }

const isZod = (schema: unknown): schema is z.ZodType => schema instanceof z.ZodType

/** `value` (an absent part is `{}`) parsed by `schema`, or the 400 that names each issue. */
export function parsePart<S extends z.ZodType>(schema: S, value: unknown, where: string): { value: z.output<S> } | { error: PraxisError } {
  const result = schema.safeParse(value ?? {})
  if (result.success) return { value: result.data }
  const issues = result.error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message, code: i.code }))
  return { error: new PraxisError('PRX_BAD_REQUEST', `invalid ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { details: issues }) }
}

/** fastify's validator compiler: each request part through its zod schema (fastify then uses the parsed value). */
export const validatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, method, url, httpPart }) => {
  if (!isZod(schema)) throw new Error(`${method} ${url}: its ${httpPart} schema is not a zod schema; declare every route's params, querystring and body with zod (platform/api/schemas.ts)`)
  const where = PART[httpPart ?? ''] ?? String(httpPart)
  return (data: unknown) => parsePart(schema, data, where)
}

const stringify = (data: unknown): string => JSON.stringify(data)

/**
 * fastify's serializer compiler for the routes' response schemas: `JSON.stringify`, what fastify
 * uses for a route without one. With `check`, the JSON is first parsed by the documented schema,
 * and a reply it refuses becomes a 500 `PRX_INTERNAL` naming the route and every issue.
 */
export function serializerCompiler(check: boolean): FastifySerializerCompiler<z.ZodType> {
  return ({ schema, method, url, httpStatus }) => {
    if (!check) return stringify
    if (!isZod(schema)) throw new Error(`${method} ${url}: its ${httpStatus} response schema is not a zod schema (platform/api/responses.ts)`)
    return (data: unknown) => {
      const text = JSON.stringify(data)
      const result = schema.safeParse(text === undefined ? undefined : JSON.parse(text))
      if (result.success) return text
      const issues = result.error.issues.map((i) => ({ path: ['body', ...i.path.map(String)].join('.'), message: i.message, code: i.code }))
      throw new PraxisError('PRX_INTERNAL', `${method} ${url} answered ${httpStatus} with a body its documented schema refuses (platform/api/responses.ts): ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { details: issues })
    }
  }
}

/**
 * With `checkResponses`: a route that declares its responses and answers a status it does not
 * declare answers 500 `PRX_INTERNAL` instead, naming the status, so every status a route can answer
 * is in the document.
 */
export function checkDocumentedStatuses(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    const responses = request.routeOptions.schema?.response as Record<string, unknown> | undefined
    const status = String(reply.statusCode)
    if (!responses || status in responses || `${status[0]}xx` in responses || 'default' in responses) return payload
    throw new PraxisError('PRX_INTERNAL', `${request.method} ${request.routeOptions.url} answered ${status}, a status its documented responses do not list: add the code to the route's operation() errors`, { details: { status: reply.statusCode, documented: Object.keys(responses) } })
  })
}
