/**
 * The OpenAPI document and reference page, on the embedded PostgreSQL over real HTTP:
 * `GET /docs/json` is OpenAPI 3.1 and public; every route the fastify instance holds (read from
 * `printRoutes`, not from the document) is in it with its method, path parameters, query
 * parameters and body as the route's zod schemas declare them, a summary, tags, its security
 * scheme, its 2xx answers and its error envelope; `GET /docs` is an HTML page; neither shows
 * anything of a tenant. The API runs with `checkResponses`, so every reply below is checked
 * against its route's documented schema by the server itself; and a few real replies are checked
 * again here against the document's own JSON Schemas (converted with zod's `fromJSONSchema`).
 */
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { buildApi } from '../platform/api/index.js'
import { errorBody } from '../platform/api/edge.js'
import { DOCS_PREFIX } from '../platform/api/openapi.js'
import * as Reply from '../platform/api/responses.js'
import { DeployBody, DryRunQuery, GetInstanceQuery, InstanceParams, ListQuery, RollbackBody, RunParams, ServiceParams, SignalBody, SignalParams, StartBody, TimelineQuery, WorkflowParams } from '../platform/api/schemas.js'
import { checkDocumentedStatuses, serializerCompiler, validatorCompiler } from '../platform/api/validation.js'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { PraxisError } from '../platform/errors.js'
import { ensureTenant } from '../platform/store/index.js'
import { createTestDatabase, type TestDatabase } from './support/database.js'

/** A tenant id and key nothing else uses: the document must hold neither. */
const TENANT = `docs-${randomBytes(4).toString('hex')}`

let db: TestDatabase
let api: FastifyInstance
let base: string
let apiKey: string
let doc: Document

type Schema = Record<string, unknown>
interface Operation {
  operationId?: string
  summary?: string
  tags?: string[]
  security?: Record<string, string[]>[]
  parameters?: { name: string; in: string; required?: boolean; schema?: Schema }[]
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> }
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>
}
interface Document {
  openapi: string
  info: { title: string; version: string }
  tags: { name: string }[]
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, { type: string; scheme: string }> }
}

async function call(method: string, path: string, body?: unknown, key: string | null = apiKey): Promise<{ status: number; type: string; text: string; json: any }> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  const type = response.headers.get('content-type') ?? ''
  return { status: response.status, type, text, json: type.includes('json') ? JSON.parse(text) : null }
}

beforeAll(async () => {
  db = await createTestDatabase()
  apiKey = (await ensureTenant(db.pool, TENANT)).apiKey
  api = await buildApi({ pool: db.pool, databaseUrl: db.url, log: pino({ level: process.env.TEST_LOG ?? 'silent' }), checkResponses: true, metrics: { minIntervalMs: 0, settleMs: 0 } })
  base = await api.listen({ port: 0, host: '127.0.0.1' })
  const got = await call('GET', `${DOCS_PREFIX}/json`, undefined, null)
  expect(got.status, got.text.slice(0, 300)).toBe(200)
  doc = got.json as Document
})
afterAll(async () => {
  await api?.close()
  await db?.drop()
})

/** The routes fastify holds, read from its route tree (`printRoutes`), as `METHOD /path`. */
function registeredRoutes(app: FastifyInstance): { method: string; url: string }[] {
  const routes: { method: string; url: string }[] = []
  const prefixes: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(.+?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!m) continue
    const depth = [...m[1]!].length / 4
    const url = (depth > 0 ? prefixes[depth - 1]! : '') + m[2]!
    prefixes.length = depth
    prefixes[depth] = url
    for (const method of m[3]?.split(', ') ?? []) routes.push({ method, url })
  }
  return routes
}

/** `:name` path parameters as OpenAPI writes them: `{name}`. */
const openapiPath = (url: string): string => url.replace(/:(\w+)/g, '{$1}')

/** A document schema with its `$ref`s to components made local (`#/$defs/…`), for `z.fromJSONSchema`. */
function standalone(schema: Schema): Schema {
  const local = (value: unknown): unknown => JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"#/$defs/'))
  return { ...(local(schema) as Schema), $defs: local(doc.components.schemas) as Schema }
}

/** The document's own schema of a route's answer, as a zod schema. */
function documented(method: string, url: string, status: number, contentType = 'application/json'): z.ZodType {
  const schema = doc.paths[openapiPath(url)]?.[method.toLowerCase()]?.responses[String(status)]?.content?.[contentType]?.schema
  expect(schema, `${method} ${url} ${status} ${contentType}`).toBeDefined()
  return z.fromJSONSchema(standalone(schema!) as Parameters<typeof z.fromJSONSchema>[0])
}

/** Follows a `$ref` to its component. */
function resolve(schema: Schema): Schema {
  const ref = schema.$ref
  return typeof ref === 'string' ? doc.components.schemas[ref.replace('#/components/schemas/', '')]! : schema
}

/** What each route takes, from its zod schemas: the document must say the same. */
const REQUESTS: Record<string, { params?: z.ZodType; query?: z.ZodType; body?: z.ZodType; ok: number[]; auth: 'apiKey' | 'operatorToken' | null }> = {
  'GET /v1/health': { ok: [200], auth: null },
  'POST /v1/services/:service/deployments': { params: ServiceParams, query: DryRunQuery, body: DeployBody, ok: [200, 201], auth: 'apiKey' },
  'GET /v1/services/:service/deployments': { params: ServiceParams, ok: [200], auth: 'apiKey' },
  'POST /v1/services/:service/rollback': { params: ServiceParams, query: DryRunQuery, body: RollbackBody, ok: [200, 201], auth: 'apiKey' },
  'GET /v1/services/:service/reprocessing': { params: ServiceParams, ok: [200], auth: 'apiKey' },
  'GET /v1/services/:service/reprocessing/:run': { params: RunParams, ok: [200], auth: 'apiKey' },
  'GET /v1/services/:service/manifest': { params: ServiceParams, ok: [200], auth: 'apiKey' },
  'POST /v1/workflows/:workflow/instances': { params: WorkflowParams, body: StartBody, ok: [200, 201], auth: 'apiKey' },
  'GET /v1/instances': { query: ListQuery, ok: [200], auth: 'apiKey' },
  'GET /v1/instances/:id': { params: InstanceParams, query: GetInstanceQuery, ok: [200], auth: 'apiKey' },
  'GET /v1/instances/:id/timeline': { params: InstanceParams, query: TimelineQuery, ok: [200], auth: 'apiKey' },
  'POST /v1/instances/:id/signals/:name': { params: SignalParams, body: SignalBody, ok: [202], auth: 'apiKey' },
  'GET /v1/metrics': { ok: [200], auth: 'apiKey' },
  'GET /metrics': { ok: [200], auth: 'operatorToken' },
}

const inputJson = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown>; required?: string[] }

describe('GET /docs/json', () => {
  it('is an OpenAPI 3.1 document, public, that holds nothing of a tenant', async () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) })
    expect(doc.components.securitySchemes).toMatchObject({ apiKey: { type: 'http', scheme: 'bearer' }, operatorToken: { type: 'http', scheme: 'bearer' } })
    // Some tenant data exists: an instance of this tenant.
    expect((await call('POST', '/v1/services/approvals/deployments', { code: (await buildBundle('test/fixtures/approvals')).code })).status).toBe(201)
    const started = await call('POST', '/v1/workflows/approval/instances', { input: { item: 'secret-item-7f3a' } })
    expect(started.status).toBe(201)
    // A key the document would answer differently for: it is the same for everyone.
    const withKey = await call('GET', `${DOCS_PREFIX}/json`)
    expect(withKey.status).toBe(200)
    expect(withKey.json).toEqual(doc)
    for (const secret of [TENANT, apiKey, started.json.id, 'secret-item-7f3a']) expect(withKey.text).not.toContain(secret)
  })

  it('has every route fastify serves, with its method, request schemas, summary, tags and security', () => {
    const routes = registeredRoutes(api)
    // The parse of the route tree found the deepest routes, with their full paths.
    expect(routes).toContainEqual({ method: 'POST', url: '/v1/instances/:id/signals/:name' })
    expect(routes).toContainEqual({ method: 'GET', url: '/v1/services/:service/reprocessing/:run' })
    const served = routes.filter((r) => !r.url.startsWith(DOCS_PREFIX))
    // HEAD is fastify's own answer for each GET route (documented once, in the description).
    for (const head of served.filter((r) => r.method === 'HEAD')) expect(served, head.url).toContainEqual({ method: 'GET', url: head.url })
    const operations = served.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`)
    expect(operations.sort()).toEqual(Object.keys(REQUESTS).sort())

    const documentedOperations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
    expect(documentedOperations.sort()).toEqual(operations.map((o) => { const [m, u] = o.split(' '); return `${m} ${openapiPath(u!)}` }).sort())

    const tags = new Set(doc.tags.map((t) => t.name))
    const ids = new Set<string>()
    for (const route of operations) {
      const [method, url] = route.split(' ') as [string, string]
      const expected = REQUESTS[route]!
      const op = doc.paths[openapiPath(url)]![method.toLowerCase()]!
      expect(op.summary, route).toMatch(/\w/)
      expect(op.tags?.length, route).toBeGreaterThan(0)
      for (const tag of op.tags!) expect(tags, `${route} tag ${tag}`).toContain(tag)
      expect(op.operationId, route).toMatch(/^\w+$/)
      expect(ids.has(op.operationId!), `${route}: operationId ${op.operationId} is unique`).toBe(false)
      ids.add(op.operationId!)
      expect(op.security, route).toEqual(expected.auth ? [{ [expected.auth]: [] }] : [])

      // Path parameters: one per `:name` of the route, required, as its params schema declares it.
      const pathNames = [...url.matchAll(/:(\w+)/g)].map((m) => m[1]!)
      const documentedPath = (op.parameters ?? []).filter((p) => p.in === 'path')
      expect(documentedPath.map((p) => p.name).sort(), route).toEqual(pathNames.sort())
      expect(Object.keys(expected.params ? inputJson(expected.params).properties ?? {} : {}).sort(), route).toEqual(pathNames.sort())
      for (const p of documentedPath) {
        expect(p.required, `${route} ${p.name}`).toBe(true)
        expect(p.schema, `${route} ${p.name}`).toEqual(expect.objectContaining({ type: 'string' }))
        const pattern = (inputJson(expected.params!).properties![p.name] as { pattern?: string }).pattern
        if (pattern) expect(p.schema!.pattern, `${route} ${p.name}`).toBe(pattern)
      }
      // Query parameters: the query schema's keys, none required (every one has a default or is optional).
      const query = (op.parameters ?? []).filter((p) => p.in === 'query')
      const queryKeys = Object.keys(expected.query ? inputJson(expected.query).properties ?? {} : {})
      expect(query.map((p) => p.name).sort(), route).toEqual(queryKeys.sort())
      for (const p of query) expect(p.schema, `${route} ?${p.name}`).toBeDefined()
      // Body: JSON, with the body schema's properties and required keys.
      if (expected.body) {
        const body = op.requestBody?.content['application/json']?.schema
        expect(body, `${route} body`).toBeDefined()
        const resolved = resolve(body!) as { properties?: Record<string, unknown>; required?: string[]; additionalProperties?: unknown }
        const want = inputJson(expected.body)
        expect(Object.keys(resolved.properties ?? {}).sort(), route).toEqual(Object.keys(want.properties ?? {}).sort())
        expect([...(resolved.required ?? [])].sort(), route).toEqual([...(want.required ?? [])].sort())
        expect(resolved.additionalProperties, `${route}: extra keys are refused`).toBe(false)
        // Required unless the route takes no body as `{}` (rollback, start, signal).
        expect(op.requestBody!.required, `${route}: body required`).toBe(!expected.body.safeParse({}).success)
      } else {
        expect(op.requestBody, route).toBeUndefined()
      }

      // Answers: each 2xx with a schema; every error status with the error envelope.
      for (const status of expected.ok) {
        const content = op.responses[String(status)]?.content
        expect(content, `${route} ${status}`).toBeDefined()
        expect(Object.values(content!)[0]!.schema, `${route} ${status}`).toBeDefined()
      }
      const errors = Object.keys(op.responses).filter((s) => Number(s) >= 400)
      expect(errors, route).toEqual(expect.arrayContaining(['400', '414', '500', ...(expected.auth ? ['401'] : []), ...(expected.body ? ['413', '415'] : [])]))
      for (const status of errors) {
        expect(op.responses[status]!.content?.['application/json']?.schema, `${route} ${status}`).toEqual({ $ref: '#/components/schemas/Error' })
        expect(op.responses[status]!.description, `${route} ${status}`).toMatch(/`PRX_[A-Z_]+`: /)
      }
      expect(Object.keys(op.responses).every((s) => /^[1-5]\d\d$/.test(s)), route).toBe(true)
    }
    expect(resolve({ $ref: '#/components/schemas/Error' })).toMatchObject({ type: 'object', required: ['error'] })
  })
})

describe('GET /docs', () => {
  it('answers the reference page, in HTML, without a key', async () => {
    const page = await call('GET', DOCS_PREFIX, undefined, null)
    expect(page.status).toBe(200)
    expect(page.type).toMatch(/^text\/html/)
    // The page's own content security policy, which the API's routes do not carry.
    expect((await fetch(`${base}${DOCS_PREFIX}`)).headers.get('content-security-policy')).toMatch(/script-src 'self'/)
    expect((await fetch(`${base}/v1/health`)).headers.get('content-security-policy')).toBeNull()
    expect(page.text).toMatch(/<html[\s\S]*swagger-ui/)
    // Its script comes from this server, not from a CDN.
    const script = /src="([^"]*swagger-ui-bundle\.js)"/.exec(page.text)?.[1]
    expect(script).toBeDefined()
    const bundle = await fetch(new URL(script!, `${base}${DOCS_PREFIX}`))
    expect(bundle.status).toBe(200)
  })
})

describe('real answers match the documented schemas', () => {
  it('every route answers what the document says (the server checks each reply), and a few are checked here against the document', async () => {
    const counter = await buildBundle('test/fixtures/counter')
    const deployed = await call('POST', '/v1/services/counter/deployments', { code: counter.code, manifest: await readGeneratedManifest('test/fixtures/counter') })
    expect(deployed.status, deployed.text).toBe(201)
    expect(documented('POST', '/v1/services/:service/deployments', 201).safeParse(deployed.json).success).toBe(true)
    expect(deployed.json.unservedPools.length).toBeGreaterThan(0)

    const again = await call('POST', '/v1/services/counter/deployments?dryRun=true', { code: counter.code, manifest: await readGeneratedManifest('test/fixtures/counter') })
    expect(again.status, again.text).toBe(200)
    expect(documented('POST', '/v1/services/:service/deployments', 200).safeParse(again.json).success).toBe(true)

    const started = await call('POST', '/v1/workflows/counter/instances', { input: {}, idempotencyKey: 'one' })
    expect(started.status, started.text).toBe(201)
    expect(documented('POST', '/v1/workflows/:workflow/instances', 201).safeParse(started.json).success).toBe(true)
    expect((await call('POST', '/v1/workflows/counter/instances', { input: {}, idempotencyKey: 'one' })).status).toBe(200)

    // Its call waits on a pool no worker serves: the view says so (`waiting`), the timeline too.
    const view = await call('GET', `/v1/instances/${started.json.id}`)
    expect(view.status, view.text).toBe(200)
    expect(view.json.waiting.length).toBeGreaterThan(0)
    const instanceSchema = documented('GET', '/v1/instances/:id', 200)
    expect(instanceSchema.safeParse(view.json).success).toBe(true)
    // The document's schema refuses what the route does not send.
    expect(instanceSchema.safeParse({ ...view.json, tenantId: TENANT }).success).toBe(false)
    expect(instanceSchema.safeParse({ ...view.json, status: 'sleeping' }).success).toBe(false)
    expect(instanceSchema.safeParse({ ...view.json, waiting: undefined }).success).toBe(false)

    const timeline = await call('GET', `/v1/instances/${started.json.id}/timeline?limit=2`)
    expect(timeline.status, timeline.text).toBe(200)
    expect(timeline.json.entries.length).toBe(2)
    expect(documented('GET', '/v1/instances/:id/timeline', 200).safeParse(timeline.json).success).toBe(true)

    const list = await call('GET', '/v1/instances?limit=1')
    expect(list.status, list.text).toBe(200)
    expect(list.json.nextCursor).not.toBeNull()
    expect(documented('GET', '/v1/instances', 200).safeParse(list.json).success).toBe(true)
    expect((await call('GET', `/v1/instances?limit=1&cursor=${list.json.nextCursor}`)).status).toBe(200)

    // A signal: the approvals service (deployed by the first test, or here).
    if ((await call('GET', '/v1/services/approvals/manifest')).status === 404) {
      expect((await call('POST', '/v1/services/approvals/deployments', { code: (await buildBundle('test/fixtures/approvals')).code })).status).toBe(201)
    }
    const approval = await call('POST', '/v1/workflows/approval/instances', { input: { item: 'laptop' } })
    const signal = await call('POST', `/v1/instances/${approval.json.id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 's1' })
    expect(signal.status, signal.text).toBe(202)
    expect(documented('POST', '/v1/instances/:id/signals/:name', 202).safeParse(signal.json).success).toBe(true)
    const done = await call('GET', `/v1/instances/${approval.json.id}?wait=completed&timeoutMs=10000`)
    expect(done.json).toMatchObject({ status: 'completed', waiting: [] })
    expect(instanceSchema.safeParse(done.json).success).toBe(true)
    expect((await call('POST', `/v1/instances/${approval.json.id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 's1' })).json).toEqual({ delivered: false, duplicate: true })

    // Services: versions, manifest, reprocessing runs, a rollback previewed and made.
    const manifest = await call('GET', '/v1/services/counter/manifest')
    expect(manifest.status, manifest.text).toBe(200)
    expect(documented('GET', '/v1/services/:service/manifest', 200).safeParse(manifest.json).success).toBe(true)
    expect((await call('GET', '/v1/services/counter/deployments')).status).toBe(200)
    const runs = await call('GET', '/v1/services/counter/reprocessing')
    expect(runs.status, runs.text).toBe(200)
    const run = await call('GET', `/v1/services/counter/reprocessing/${deployed.json.reprocessing.id}`)
    expect(run.status, run.text).toBe(200)
    expect(documented('GET', '/v1/services/:service/reprocessing/:run', 200).safeParse(run.json).success).toBe(true)
    expect((await call('POST', '/v1/services/flip/deployments', { code: (await buildBundle('test/fixtures/approvals')).code })).status).toBe(201)
    const v2 = await call('POST', '/v1/services/flip/deployments', { code: counter.code })
    expect(v2.status, v2.text).toBe(201)
    const preview = await call('POST', '/v1/services/flip/rollback?dryRun=true', {})
    expect(preview.status, preview.text).toBe(200)
    expect(preview.json).toMatchObject({ from: 1 })
    expect(documented('POST', '/v1/services/:service/rollback', 200).safeParse(preview.json).success).toBe(true)
    const rolled = await call('POST', '/v1/services/flip/rollback')
    expect(rolled.status, rolled.text).toBe(201)
    expect(documented('POST', '/v1/services/:service/rollback', 201).safeParse(rolled.json).success).toBe(true)

    // Health and metrics (text).
    expect((await call('GET', '/v1/health', undefined, null)).json).toEqual({ status: 'ok' })
    const metrics = await call('GET', '/v1/metrics')
    expect(metrics.status, metrics.text).toBe(200)
    expect(metrics.type).toMatch(/^text\/plain/)
    expect(documented('GET', '/v1/metrics', 200, 'text/plain').safeParse(metrics.text).success).toBe(true)
    expect((await call('GET', '/metrics', undefined, null)).status).toBe(200)
  })

  it('errors are the documented envelope with a documented status, and stay what they were', async () => {
    const cases: [string, string, unknown, string | null, number, string, RegExp][] = [
      ['GET', '/v1/instances/not-a-uuid', undefined, apiKey, 400, 'PRX_BAD_REQUEST', /^invalid params: params\.id: must be an instance id \(a UUID\)$/],
      ['GET', '/v1/instances?limit=0', undefined, apiKey, 400, 'PRX_BAD_REQUEST', /^invalid query: query\.limit: /],
      ['POST', '/v1/workflows/approvals.approval/instances', { input: {}, extra: 1 }, apiKey, 400, 'PRX_BAD_REQUEST', /^invalid body: body: Unrecognized key: "extra"$/],
      ['POST', '/v1/workflows/approvals.approval/instances', { input: {} }, apiKey, 400, 'PRX_INPUT_INVALID', /item/],
      // The previous test deployed approvals' workflow as service `flip` too.
      ['POST', '/v1/workflows/approval/instances', { input: { item: 'x' } }, apiKey, 409, 'PRX_WORKFLOW_AMBIGUOUS', /exists in services approvals, flip/],
      ['GET', '/v1/instances/00000000-0000-4000-8000-000000000000', undefined, apiKey, 404, 'PRX_INSTANCE_NOT_FOUND', /no instance/],
      ['GET', '/v1/services/nothing/reprocessing/42', undefined, apiKey, 404, 'PRX_RUN_NOT_FOUND', /no reprocessing run 42/],
      ['GET', '/v1/instances', undefined, null, 401, 'PRX_UNAUTHORIZED', /missing API key/],
      ['POST', '/v1/services/nothing/rollback', undefined, apiKey, 404, 'PRX_SERVICE_NOT_FOUND', /nothing to roll back/],
    ]
    const envelope = documented('GET', '/v1/instances/:id', 404)
    for (const [method, url, body, key, status, code, message] of cases) {
      const got = await call(method, url, body, key)
      expect(got.status, `${method} ${url}: ${got.text}`).toBe(status)
      expect(got.json.error, `${method} ${url}`).toMatchObject({ code, message: expect.stringMatching(message) })
      expect(envelope.safeParse(got.json).success, `${method} ${url}`).toBe(true)
      const route = Object.keys(REQUESTS).find((r) => r.startsWith(`${method} `) && new RegExp(`^${r.slice(method.length + 1).replace(/:\w+/g, '[^/]+')}$`).test(url.split('?')[0]!))!
      const documentedStatus = doc.paths[openapiPath(route.slice(method.length + 1))]![method.toLowerCase()]!.responses[String(status)]
      expect(documentedStatus?.description, `${method} ${url} ${status}`).toContain(`\`${code}\``)
    }
    // Several invalid parts: params are named first, then the body, then the query, as before.
    const all = await call('POST', '/v1/services/bad%20name/deployments?dryRun=maybe', { extra: 1 })
    expect(all.json.error.message).toMatch(/^invalid params: params\.service: must be a service name$/)
    const bodyAndQuery = await call('POST', '/v1/services/good/deployments?dryRun=maybe', { extra: 1 })
    expect(bodyAndQuery.json.error.message).toMatch(/^invalid body: body\.code: .*; body: Unrecognized key: "extra"$/)
    const query = await call('POST', '/v1/services/good/deployments?dryRun=maybe', { code: 'x' })
    expect(query.json.error).toMatchObject({ code: 'PRX_BAD_REQUEST', message: expect.stringMatching(/^invalid query: query\.dryRun: /), details: [{ path: 'query.dryRun', code: 'invalid_value' }] })
  })
})

describe('checkResponses', () => {
  /** A route whose answers a test chooses, declared and checked like the API's. */
  async function app(): Promise<FastifyInstance> {
    const server = Fastify()
    server.setValidatorCompiler(validatorCompiler)
    server.setSerializerCompiler(serializerCompiler(true))
    checkDocumentedStatuses(server)
    server.setErrorHandler((error, _request, reply) => {
      const e = error instanceof PraxisError ? error : new PraxisError('PRX_INTERNAL', String((error as Error).message))
      return reply.status(e.status).send(errorBody(e.code, e.message, e.details ?? null))
    })
    server.get('/answer/:what', {
      schema: {
        params: z.object({ what: z.enum(['good', 'extra', 'wrong', 'teapot']) }),
        response: {
          200: { content: { 'application/json': { schema: Reply.SignalAccepted } } },
          400: { content: { 'application/json': { schema: Reply.ErrorEnvelope } } },
          500: { content: { 'application/json': { schema: Reply.ErrorEnvelope } } },
        },
      },
    }, async (request, reply) => {
      const { what } = request.params as { what: string }
      if (what === 'teapot') reply.statusCode = 418
      return what === 'good' || what === 'teapot' ? { delivered: true, duplicate: false } : what === 'extra' ? { delivered: true, duplicate: false, tenant: 'x' } : { delivered: 'yes', duplicate: false }
    })
    await server.ready()
    return server
  }

  it('lets a documented answer through unchanged, and turns an undocumented field, a wrong type or status into a 500 that says why', async () => {
    const server = await app()
    try {
      const good = await server.inject('/answer/good')
      expect(good.statusCode).toBe(200)
      expect(good.body).toBe('{"delivered":true,"duplicate":false}')
      const extra = await server.inject('/answer/extra')
      expect(extra.statusCode).toBe(500)
      expect(extra.json().error.message).toMatch(/GET \/answer\/:what answered 200 with a body its documented schema refuses .*Unrecognized key: "tenant"/)
      const wrong = await server.inject('/answer/wrong')
      expect(wrong.statusCode).toBe(500)
      expect(wrong.json().error.message).toMatch(/body\.delivered: /)
      const teapot = await server.inject('/answer/teapot')
      expect(teapot.statusCode).toBe(500)
      expect(teapot.json().error.message).toMatch(/answered 418, a status its documented responses do not list/)
      // Request validation: the same 400 as the API's, naming the part and the field.
      const bad = await server.inject('/answer/nope')
      expect(bad.statusCode).toBe(400)
      expect(bad.json().error).toMatchObject({ code: 'PRX_BAD_REQUEST', message: expect.stringMatching(/^invalid params: params\.what: /) })
    } finally {
      await server.close()
    }
  })
})
