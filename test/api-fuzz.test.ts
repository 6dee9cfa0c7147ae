/**
 * Property-based fuzzing of every API route (fast-check, fixed seed, bounded runs). Each route's
 * requests are generated from its zod schemas (through their JSON Schema), then made hostile: deep
 * nesting, `\u0000`, lone surrogates, huge strings, wrong types, extra keys, bad and foreign ids,
 * broken JSON. Properties: never a 5xx; every 4xx is `{ error: { code, message, details } }`; a
 * request that fails changes nothing (a known instance's facts and revision, and the row counts).
 */
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { z } from 'zod'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DeployBody, GetInstanceQuery, InstanceParams, ListQuery, ServiceParams, SignalBody, SignalParams, StartBody, TimelineQuery, WorkflowParams } from '../platform/api/schemas.js'
import { buildBundle } from '../platform/engine/index.js'
import { createApiKey, createTenant } from '../platform/store/index.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

const SEED = 20_240_817
const SERVICE = 'test/fixtures/approvals'

let p: TestPlatform
let approvalsCode: string
/** The instance every failed request must leave as it was, and another tenant's instance. */
let known: string
let foreign: string
let foreignKey: string

beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy(SERVICE)).status).toBe(201)
  approvalsCode = (await buildBundle(SERVICE)).code
  known = (await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'known' } })).body.id
  await createTenant(p.db.pool, { name: 'Foreign', id: 'foreign' })
  foreignKey = (await createApiKey(p.db.pool, 'foreign')).key
  expect((await p.request('POST', '/v1/services/approvals/deployments', { code: approvalsCode }, foreignKey)).status).toBe(201)
  foreign = (await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'theirs' } }, foreignKey)).body.id
})
afterAll(async () => p?.close())

// ---------------------------------------------------------------------------------------------
// JSON Schema (from zod) to arbitraries

type Schema = { type?: string; properties?: Record<string, Schema>; required?: string[]; additionalProperties?: boolean | Schema; items?: Schema; pattern?: string; minLength?: number; maxLength?: number; minimum?: number; maximum?: number; exclusiveMinimum?: number; enum?: unknown[]; const?: unknown; anyOf?: Schema[]; oneOf?: Schema[]; format?: string }

const jsonSchema = (schema: z.ZodType): Schema => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema

/** Strings matching the pattern, or null for one fast-check cannot generate from (lookahead). */
function matching(pattern: string): fc.Arbitrary<string> | null {
  try {
    return fc.stringMatching(new RegExp(pattern))
  } catch {
    return null
  }
}

function fromSchema(s: Schema): fc.Arbitrary<unknown> {
  if (s.const !== undefined) return fc.constant(s.const)
  if (s.enum) return fc.constantFrom(...s.enum)
  if (s.anyOf ?? s.oneOf) return fc.oneof(...(s.anyOf ?? s.oneOf)!.map(fromSchema))
  switch (s.type) {
    case 'object': {
      const props = Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, v]) => [k, fromSchema(v)]))
      return fc.record(props, { requiredKeys: (s.required ?? []) as never[] })
    }
    case 'string': {
      const free = fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 40, 40) })
      const base = s.format === 'uuid' ? fc.uuid() : s.pattern ? matching(s.pattern) ?? free : free
      return base.filter((v) => v.length >= (s.minLength ?? 0) && v.length <= (s.maxLength ?? Infinity))
    }
    case 'integer': return fc.integer({ min: s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : -1e6), max: Math.min(s.maximum ?? 1e6, 1e9) })
    case 'number': return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true })
    case 'boolean': return fc.boolean()
    case 'null': return fc.constant(null)
    case 'array': return fc.array(s.items ? fromSchema(s.items) : fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 })
    default: return fc.jsonValue({ maxDepth: 3 })
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile values

/** Stands in for a value nested `n` deep; replaced in the serialized body (JSON.stringify would overflow). */
const DEEP = (n: number, open: '[' | '{"a":') => `\u0001DEEP:${n}:${open}\u0001`
const expandDeep = (text: string) => text.replace(/"\\u0001DEEP:(\d+):(.+?)\\u0001"/g, (_, n: string, open: string) => {
  const o = open.replace(/\\"/g, '"')
  return o.repeat(Number(n)) + '1' + (o === '[' ? ']' : '}').repeat(Number(n))
})

const hostileString = fc.oneof(
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udfff', '\udc00\ud800', '', ' ', '%00', '../../etc/passwd', "'; drop table praxis.instances; --", '__proto__', 'constructor', '\u202e', '𝕏', '\r\n', 'null'),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.integer({ min: 1, max: 3 }).map((n) => 'x'.repeat(10 ** (n + 2))), // 1,000 to 100,000 characters
)
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  fc.constantFrom(DEEP(65, '['), DEEP(200, '{"a":'), DEEP(10_000, '{"a":'), DEEP(100_000, '[')),
  fc.constantFrom(null, true, 0, -1, 1e308, -0, 2 ** 63, [], {}, [[[]]], JSON.parse('{"__proto__": {"polluted": 1}}'), { constructor: { prototype: { polluted: 1 } } }),
  fc.jsonValue({ maxDepth: 4 }),
  fc.dictionary(hostileString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
)
/** encodeURIComponent, or for a string with a lone surrogate (which it refuses) the raw text minus those. */
const safeEncode = (s: string): string => { try { return encodeURIComponent(s) } catch { return encodeURIComponent(s.replace(/[\ud800-\udfff]/g, '')) } }

/** Ids of every kind a caller may send: the known instance, another tenant's, missing, malformed. */
const anyId = (): fc.Arbitrary<string> => fc.oneof(
  fc.constant(known), fc.constant(foreign), fc.uuid(), fc.constant(randomUUID()), (fromSchema(jsonSchema(InstanceParams)) as fc.Arbitrary<{ id: string }>).map((x) => x.id),
  fc.constantFrom('42', 'not-a-uuid', `${known}x`, known.toUpperCase(), '00000000-0000-0000-0000-000000000000', '%00', '%ZZ', '%E0%A4%A', 'a'.repeat(300), '..', '%2e%2e', ' '),
  hostileString.map((s) => safeEncode(s.slice(0, 300))),
)

/** Replaces, removes or adds one key of a generated object with something hostile. */
function mutate(base: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.tuple(base, fc.nat(), hostileValue, fc.constantFrom('replace', 'extra', 'drop', 'nest', 'whole')).map(([value, pick, hostile, how]) => {
    if (how === 'whole' || value === null || typeof value !== 'object' || Array.isArray(value)) return hostile
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) }
    const keys = Object.keys(copy)
    const key = keys.length ? keys[pick % keys.length]! : 'input'
    if (how === 'replace') copy[key] = hostile
    else if (how === 'drop') delete copy[key]
    else if (how === 'nest') copy[key] = { inner: [hostile] }
    else copy[`extra${pick % 3 === 0 ? '\u0000' : ''}`] = hostile
    return copy
  })
}

// ---------------------------------------------------------------------------------------------
// Requests

interface Req { method: 'GET' | 'POST'; url: string; body?: string; contentType?: string; key?: 'mine' | 'foreign' | 'none' | 'bogus' }

const queryString = (q: unknown): string => {
  if (q === null || typeof q !== 'object') return ''
  const parts = Object.entries(q as Record<string, unknown>).map(([k, v]) => `${safeEncode(k)}=${safeEncode(typeof v === 'string' ? v : JSON.stringify(v) ?? '')}`)
  return parts.length ? `?${parts.join('&')}` : ''
}
const bodyText = (value: unknown): string => expandDeep(JSON.stringify(value) ?? 'null')
const bodyArb = (schema: z.ZodType) => fc.oneof(
  { weight: 3, arbitrary: fromSchema(jsonSchema(schema)) },
  { weight: 5, arbitrary: mutate(fromSchema(jsonSchema(schema))) },
).map(bodyText)
const brokenBody = fc.oneof(
  fc.constantFrom('{', '{"input": {', '[', '"', 'nul', '{"a":1,}', '\u0000', '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {"x": 1}}}', ''),
  fc.string({ unit: 'binary', maxLength: 50 }),
  fc.integer({ min: 1000, max: 200_000 }).map((n) => '['.repeat(n)),
)
const keyArb = fc.constantFrom<Req['key']>('mine', 'mine', 'mine', 'mine', 'foreign', 'none', 'bogus')

const ROUTES = ['POST /v1/workflows/:workflow/instances', 'GET /v1/instances/:id', 'GET /v1/instances', 'GET /v1/instances/:id/timeline', 'POST /v1/instances/:id/signals/:name',
  'POST /v1/services/:service/deployments', 'GET /v1/services/:service/deployments', 'GET /v1/services/:service/manifest', 'any other path'] as const

/** Per route: requests from the route's schemas, made hostile. */
function routes(): Record<(typeof ROUTES)[number], fc.Arbitrary<Req>> {
  const paramsOf = (schema: z.ZodType) => fromSchema(jsonSchema(schema)) as fc.Arbitrary<Record<string, string>>
  // A valid wait on the running instance waits timeoutMs (30 s by default): keep it short.
  const timeoutSafe = (q: unknown) => {
    if (!q || typeof q !== 'object' || !('wait' in q)) return q
    const t = (q as { timeoutMs?: unknown }).timeoutMs
    return { ...q, timeoutMs: t === undefined || ((typeof t === 'number' || typeof t === 'string') && Number(t) > 50) ? 20 : t }
  }
  const withBody = (r: fc.Arbitrary<Omit<Req, 'body'>>, body: fc.Arbitrary<string>) => fc.tuple(r, fc.oneof({ weight: 6, arbitrary: body }, { weight: 1, arbitrary: brokenBody }), fc.constantFrom(undefined, undefined, undefined, 'text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded')).map(([req, b, ct]) => ({ ...req, body: b, ...(ct ? { contentType: ct } : {}) }))
  return {
    'POST /v1/workflows/:workflow/instances': withBody(
      fc.tuple(fc.oneof(paramsOf(WorkflowParams).map((x) => safeEncode(x.workflow!)), fc.constantFrom('approval', 'approvals.approval'), anyId()), keyArb)
        .map(([w, key]) => ({ method: 'POST' as const, url: `/v1/workflows/${w}/instances`, key })),
      bodyArb(StartBody)),
    'GET /v1/instances/:id': fc.tuple(anyId(), fc.oneof(fromSchema(jsonSchema(GetInstanceQuery)).map(timeoutSafe), mutate(fromSchema(jsonSchema(GetInstanceQuery))).map(timeoutSafe)), keyArb)
      .map(([id, q, key]) => ({ method: 'GET', url: `/v1/instances/${id}${queryString(q)}`, key })),
    'GET /v1/instances': fc.tuple(fc.oneof(fromSchema(jsonSchema(ListQuery)), mutate(fromSchema(jsonSchema(ListQuery)))), keyArb)
      .map(([q, key]) => ({ method: 'GET', url: `/v1/instances${queryString(q)}`, key })),
    'GET /v1/instances/:id/timeline': fc.tuple(anyId(), fc.oneof(fromSchema(jsonSchema(TimelineQuery)), mutate(fromSchema(jsonSchema(TimelineQuery)))), keyArb)
      .map(([id, q, key]) => ({ method: 'GET', url: `/v1/instances/${id}/timeline${queryString(q)}`, key })),
    'POST /v1/instances/:id/signals/:name': withBody(
      fc.tuple(anyId(), fc.oneof(paramsOf(SignalParams).map((x) => safeEncode(x.name!)), fc.constantFrom('decide', 'nope', '-x', '%00')), keyArb)
        .map(([id, name, key]) => ({ method: 'POST' as const, url: `/v1/instances/${id}/signals/${name}`, key })),
      bodyArb(SignalBody)),
    'POST /v1/services/:service/deployments': withBody(
      fc.tuple(fc.oneof(paramsOf(ServiceParams).map((x) => x.service), fc.constantFrom('approvals', 'fuzzed')), keyArb)
        .map(([service, key]) => ({ method: 'POST' as const, url: `/v1/services/${service}/deployments`, key })),
      fc.oneof(bodyArb(DeployBody), fc.constantFrom(JSON.stringify({ code: approvalsCode, codeHash: 'x' }), JSON.stringify({ code: approvalsCode, manifest: { format: 'praxis.manifest/1' } })))),
    'GET /v1/services/:service/deployments': fc.tuple(fc.oneof(paramsOf(ServiceParams).map((x) => x.service), fc.constant('approvals'), anyId()), keyArb)
      .map(([service, key]) => ({ method: 'GET', url: `/v1/services/${service}/deployments`, key })),
    'GET /v1/services/:service/manifest': fc.tuple(fc.oneof(paramsOf(ServiceParams).map((x) => x.service), fc.constant('approvals'), anyId()), keyArb)
      .map(([service, key]) => ({ method: 'GET', url: `/v1/services/${service}/manifest`, key })),
    'any other path': fc.tuple(fc.constantFrom<Req['method']>('GET', 'POST'), fc.constantFrom('/v1/', '/v1/nothing', '/v1/instances/', '/v1//instances', '/v2/instances', '/', '/v1/instances/%', `/v1/instances/${'a'.repeat(5000)}`), keyArb)
      .map(([method, url, key]) => ({ method, url, key })),
  }
}

// ---------------------------------------------------------------------------------------------

async function send(req: Req): Promise<{ status: number; body: any; raw: string }> {
  const key = { mine: p.apiKey, foreign: foreignKey, bogus: `prx_${'0'.repeat(12)}_${'A'.repeat(43)}`, none: undefined }[req.key ?? 'mine']
  const response = await p.api.inject({
    method: req.method, url: req.url,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(req.body !== undefined ? { 'content-type': req.contentType ?? 'application/json' } : {}) },
    ...(req.body !== undefined ? { payload: req.body } : {}),
  })
  let body: any = null
  try { body = JSON.parse(response.body) } catch { /* checked below */ }
  return { status: response.statusCode, body, raw: response.body }
}

async function state(): Promise<string> {
  const { rows } = await p.db.pool.query(`select (select row(status, revision, facts)::text from praxis.instances where id = $1) as known,
    (select row(status, revision, facts)::text from praxis.instances where id = $2) as foreign,
    (select count(*) from praxis.instances) as instances, (select count(*) from praxis.events) as events,
    (select count(*) from praxis.bundles) as bundles`, [known, foreign])
  return JSON.stringify(rows[0])
}

describe('fuzzing every route', () => {
  const runs = (route: string) => (route.startsWith('POST /v1/services') ? 60 : 150)
  for (const route of ROUTES) {
    it(`${route}: no 5xx, errors in Praxis's shape, nothing changed by a failure`, async () => {
      // Built here, not at collection: the ids exist only once beforeAll ran.
      const arbitrary = routes()[route]!
      let before = await state()
      await fc.assert(fc.asyncProperty(arbitrary, async (req) => {
        const response = await send(req)
        const label = `${req.method} ${req.url.slice(0, 120)} ${req.body?.slice(0, 120) ?? ''} -> ${response.status} ${response.raw.slice(0, 200)}`
        expect(response.status, label).toBeLessThan(500)
        if (response.status >= 400) {
          expect(response.body, label).toEqual({ error: { code: expect.stringMatching(/^PRX_[A-Z_]+$/), message: expect.any(String), details: expect.toSatisfy((d: unknown) => d !== undefined) } })
          expect(await state(), label).toBe(before)
        } else {
          before = await state()
        }
      }), { seed: SEED, numRuns: runs(route), endOnFailure: true })
    })
  }

  it('keeps the pool healthy: an ordinary request still works after the fuzzing', async () => {
    const view = await p.request('GET', `/v1/instances/${known}`)
    expect(view.status).toBe(200)
    expect(view.body).toMatchObject({ status: 'running', facts: { item: 'known', state: 'pending' } })
    const signal = await p.request('POST', `/v1/instances/${known}/signals/decide`, { payload: { approve: true, by: 'ann' } })
    expect(signal.status).toBe(202)
  })
})
