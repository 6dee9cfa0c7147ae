/**
 * The API's OpenAPI 3.1 document, made from the routes' zod schemas (@fastify/swagger, with
 * fastify-type-provider-zod's transforms), and its reference page (@fastify/swagger-ui):
 *
 *   GET /docs        the reference page (Swagger UI, served from this process, no CDN)
 *   GET /docs/json   the document (JSON); GET /docs/yaml the same in YAML
 *
 * Both are public: the document is made of the route declarations only and holds nothing of any
 * tenant. It is built on its first request and kept (routes do not change after `ready`), so it
 * costs start-up nothing but the plugins' registration.
 *
 * Each route declares its schema with `operation()`: summary, tags, who may call it, its request
 * parts, its 2xx answers and the error codes it may answer. The errors every route shares are
 * added here (400 for any invalid part, 414, 500; 401 with a key or token; 413 and 415 with a
 * body), each status described by the codes it carries.
 */
import fastifySwagger, { type SwaggerTransformObject } from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { createJsonSchemaTransform, createJsonSchemaTransformObject } from 'fastify-type-provider-zod'
import type { z } from 'zod'
import { ERRORS, type ErrorCode } from '../errors.js'
import { components } from './registry.js'
import { ErrorEnvelope } from './responses.js'

/** Where the reference page is; the document is at `${DOCS_PREFIX}/json`. */
export const DOCS_PREFIX = '/docs'

export const TAGS = {
  instances: 'Start workflow instances, read their facts and timelines, wait for their end',
  signals: 'Deliver signals to running instances',
  services: 'Deploy services, preview and roll back deploys, read their manifests',
  reprocessing: "A deploy's background walk that reaches old work with added and changed rules",
  operations: 'Health and Prometheus metrics',
} as const
export type Tag = keyof typeof TAGS

/** Who may call a route: a tenant's API key, the operator's metrics token, or anyone. */
export type Auth = 'tenant' | 'operator' | 'public'

const SECURITY: Record<Auth, { [scheme: string]: string[] }[]> = {
  tenant: [{ apiKey: [] }],
  operator: [{ operatorToken: [] }],
  public: [],
}

interface Answer {
  description: string
  schema: z.ZodType
  /** Default `application/json`. */
  contentType?: string
}

interface OperationDoc {
  /** Unique, for generated clients: `startInstance`, `getInstance`, … */
  operationId: string
  summary: string
  description?: string
  tags: readonly Tag[]
  auth: Auth
  /** The 2xx answers by status. */
  ok: Record<number, Answer>
  /** The error codes the route answers besides those every route shares (see the file's comment). */
  errors?: readonly ErrorCode[]
}

type RequestParts = { params?: z.ZodType; querystring?: z.ZodType; body?: z.ZodType }

interface ResponseDoc { description: string; content: Record<string, { schema: z.ZodType }> }

/** What a route's `schema` holds besides its request parts. */
export interface OperationSchema {
  operationId: string
  summary: string
  description?: string
  tags: Tag[]
  security: { [scheme: string]: string[] }[]
  response: Record<string, ResponseDoc>
}

/** The operations whose body may be left out (`@fastify/swagger` marks every body required). */
const optionalBodies = new Set<string>()

const UNAUTHORIZED: Record<Exclude<Auth, 'public'>, string> = {
  tenant: 'no API key, or an unknown or revoked one',
  operator: 'no operator token or a wrong one (PRAXIS_METRICS_TOKEN); with none configured, a request that is not from loopback or that came through a proxy',
}

/**
 * A route's `schema`: its request parts (validated, see validation.ts) and its documentation. Every
 * error status is described by the codes it may carry, each with `ERRORS[code].what`.
 */
export function operation<P extends RequestParts>(doc: OperationDoc & P): P & OperationSchema {
  const { params, querystring, body, operationId, summary, description, tags, auth, ok, errors = [] } = doc
  // An absent body is read as `{}` (validation.ts): where that is valid, the document says the body is optional.
  if (body?.safeParse({}).success) optionalBodies.add(operationId)
  const codes = new Set<ErrorCode>(['PRX_BAD_REQUEST', 'PRX_URL_TOO_LONG', 'PRX_INTERNAL', ...errors])
  if (auth !== 'public') codes.add('PRX_UNAUTHORIZED')
  if (body) codes.add('PRX_BODY_TOO_LARGE')
  const byStatus = new Map<number, string[]>()
  for (const code of codes) {
    const what = code === 'PRX_UNAUTHORIZED' && auth !== 'public' ? UNAUTHORIZED[auth] : ERRORS[code].what
    byStatus.set(ERRORS[code].status, [...(byStatus.get(ERRORS[code].status) ?? []), `\`${code}\`: ${what}`])
  }
  // fastify's own refusal of a body that is not JSON, in the error envelope (server.ts).
  if (body) byStatus.set(415, ['`PRX_BAD_REQUEST`: the body is not `application/json`'])
  const response: Record<string, ResponseDoc> = {}
  for (const [status, answer] of Object.entries(ok)) {
    response[status] = { description: answer.description, content: { [answer.contentType ?? 'application/json']: { schema: answer.schema } } }
  }
  for (const [status, lines] of [...byStatus].sort(([a], [b]) => a - b)) {
    response[String(status)] = { description: lines.join('\n\n'), content: { 'application/json': { schema: ErrorEnvelope } } }
  }
  return {
    ...(params ? { params } : {}),
    ...(querystring ? { querystring } : {}),
    ...(body ? { body } : {}),
    operationId, summary, ...(description ? { description } : {}), tags: [...tags], security: SECURITY[auth], response,
  } as P & OperationSchema
}

const DESCRIPTION = `Rule-driven, always-on workflows over serverless functions, on PostgreSQL.

Every \`/v1\` route but \`/v1/health\` takes a tenant's API key as \`Authorization: Bearer <key>\`
(\`praxis keys create --tenant <id>\`); another tenant's instances, services and workflows answer
exactly what missing ones answer. Every error is \`{ "error": { "code", "message", "details" } }\`
with a stable code (docs/errors.md in the repository). Besides the statuses each route lists, any
request may be refused before routing with 431 \`PRX_HEADERS_TOO_LARGE\` (request line and headers
over 16 KiB), 414 \`PRX_URL_TOO_LONG\` (a path parameter over 256 characters) or 400
\`PRX_BAD_REQUEST\` (bad percent-encoding), and an unknown route answers 404 \`PRX_NOT_FOUND\`.
Every GET route answers HEAD too.`

const toComponents = createJsonSchemaTransformObject({ schemaRegistry: components })

/** Marks the bodies that may be left out as not required. */
function withOptionalBodies(document: ReturnType<SwaggerTransformObject>): ReturnType<SwaggerTransformObject> {
  for (const methods of Object.values(document.paths ?? {})) {
    for (const op of Object.values(methods ?? {}) as { operationId?: string; requestBody?: { required?: boolean } }[]) {
      if (op.requestBody && op.operationId && optionalBodies.has(op.operationId)) op.requestBody.required = false
    }
  }
  return document
}

/**
 * The document without the component schemas nothing refers to: the transform writes each named
 * schema twice, as read (`…Input`) and as written, and most are only ever written.
 */
function withoutUnusedComponents(document: ReturnType<SwaggerTransformObject>): ReturnType<SwaggerTransformObject> {
  if (!('components' in document) || !document.components?.schemas) return document
  const schemas = document.components.schemas
  const refs = (value: unknown): string[] => [...JSON.stringify(value).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!)
  const { components: _, ...rest } = document
  const used = new Set<string>()
  const todo = refs(rest)
  while (todo.length > 0) {
    const name = todo.pop()!
    if (used.has(name)) continue
    used.add(name)
    todo.push(...refs(schemas[name] ?? null))
  }
  // The transform's own fresh object: trimmed in place.
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name]
  return document
}

/**
 * Registers the document and the reference page. Call before declaring the routes: the document
 * holds the routes declared after it.
 */
export async function registerDocs(app: FastifyInstance): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Praxis REST API', version: 'v1', description: DESCRIPTION },
      tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: "A tenant's API key (`prx_…`): `praxis keys create --tenant <id>`, or the key `praxis dev` writes to `.praxis/dev-api-key`." },
          operatorToken: { type: 'http', scheme: 'bearer', description: 'The operator token, PRAXIS_METRICS_TOKEN. While it is unset, GET /metrics answers requests from loopback that no proxy forwarded, without a token.' },
        },
      },
    },
    transform: createJsonSchemaTransform({ schemaRegistry: components }),
    transformObject: (document) => withoutUnusedComponents(withOptionalBodies(toComponents(document))),
  })
  await app.register(fastifySwaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: true,
    theme: { title: 'Praxis API reference' },
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0 },
  })
}
