/**
 * Metrics on the embedded PostgreSQL, with real workers: jobs queued with no worker show as depth
 * and age for their tenant and pool; once a worker runs them the depth is 0 and the finished
 * invocations are counted and timed; failures show under their class and retries by pool; the
 * operator's /metrics refuses without its token (or, with none configured, anything but an
 * unproxied loopback request); a tenant's /v1/metrics holds its own series and never another
 * tenant's label. Every scrape is parsed as Prometheus' text format.
 */
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApi } from '../platform/api/index.js'
import { loadConfig } from '../platform/config.js'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { loadService } from '../platform/pools/index.js'
import { ensureTenant, parseTask } from '../platform/store/index.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const TOKEN = 'operator-token-0123456789abcdef'
const OTHER = 'globex'

let p: TestPlatform
/** An API with an operator token that reads the database on every scrape and counts at once. */
let api: FastifyInstance
let otherKey: string

beforeAll(async () => {
  p = await startTestPlatform()
  api = await buildApi({ pool: p.db.pool, databaseUrl: p.db.url, log: silent, metrics: { token: TOKEN, minIntervalMs: 0, settleMs: 0 } })
  await api.ready()
  otherKey = (await ensureTenant(p.db.pool, OTHER)).apiKey
  for (const dir of ['test/fixtures/counter', 'examples/video-encoding', 'examples/thumbnails', 'test/fixtures/timeouts']) expect((await deployAs(p.apiKey, dir)).status).toBe(201)
  expect((await deployAs(otherKey, 'test/fixtures/counter')).status).toBe(201)
})
afterAll(async () => {
  await api?.close()
  await p?.close()
})

async function deployAs(apiKey: string, dir: string) {
  const service = (await loadService(dir)).name
  const { code } = await buildBundle(dir)
  const manifest = await readGeneratedManifest(dir)
  return p.request('POST', `/v1/services/${service}/deployments`, { code, ...(manifest ? { manifest } : {}) }, apiKey)
}

async function start(apiKey: string, workflow: string, input: unknown): Promise<string> {
  const started = await p.request('POST', `/v1/workflows/${workflow}/instances`, { input }, apiKey)
  expect(started.status).toBe(201)
  return started.body.id
}

async function waitEnded(apiKey: string, id: string): Promise<{ status: string }> {
  const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=30000`, undefined, apiKey)
  expect(done.status).toBe(200)
  return done.body
}

// ---------------------------------------------------------------------------------------------
// Prometheus' text exposition format (version 0.0.4), parsed strictly

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Exposition { samples: Sample[]; types: Map<string, string>; text: string }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`)
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`)
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y
// Inf and NaN in any case, as Prometheus reads them (Go's ParseFloat): prom-client writes `Nan`.
const NUMBER = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|[+-]?inf|nan)$/i

/** The metric family a sample belongs to: a histogram's _bucket, _sum and _count are its own. */
function familyOf(name: string, types: Map<string, string>): string {
  const base = name.replace(/_(bucket|sum|count)$/, '')
  return base !== name && (types.get(base) === 'histogram' || types.get(base) === 'summary') ? base : name
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  const seen = new Set<string>()
  expect(text.endsWith('\n'), 'the exposition ends with a newline').toBe(true)
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      expect(line, 'a HELP line').toMatch(HELP_LINE)
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const m = TYPE_LINE.exec(line)
      expect(m, `a TYPE line: ${line}`).not.toBeNull()
      expect(types.has(m![1]!), `one TYPE line for ${m![1]}`).toBe(false)
      types.set(m![1]!, m![2]!)
      continue
    }
    if (line.startsWith('#')) continue
    const m = SAMPLE_LINE.exec(line)
    expect(m, `a sample line: ${line}`).not.toBeNull()
    const [, name, labelText = '', valueText] = m!
    const labels: Record<string, string> = {}
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < labelText.length) {
      const start = LABEL.lastIndex
      const l = LABEL.exec(labelText)
      expect(l, `a label at ${start} of ${line}`).not.toBeNull()
      expect(labels[l![1]!], `label ${l![1]} once in ${line}`).toBeUndefined()
      labels[l![1]!] = l![2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    expect(valueText, `a number in ${line}`).toMatch(NUMBER)
    expect(types.has(familyOf(name!, types)), `TYPE of ${name} before its samples`).toBe(true)
    const id = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    expect(seen.has(id), `one sample ${id}`).toBe(false)
    seen.add(id)
    samples.push({ name: name!, labels, value: /inf$/i.test(valueText!) ? (valueText!.startsWith('-') ? -Infinity : Infinity) : Number(valueText) })
  }
  // Histograms: cumulative buckets ending in +Inf, which equals _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue
    const series = new Map<string, Sample[]>()
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = s.labels
      const key = JSON.stringify(Object.entries(rest).sort())
      series.set(key, [...(series.get(key) ?? []), s])
    }
    for (const [key, buckets] of series) {
      const ordered = [...buckets].sort((a, b) => Number(a.labels.le!.replace('+Inf', 'Infinity')) - Number(b.labels.le!.replace('+Inf', 'Infinity')))
      expect(ordered.at(-1)!.labels.le).toBe('+Inf')
      for (let i = 1; i < ordered.length; i++) expect(ordered[i]!.value).toBeGreaterThanOrEqual(ordered[i - 1]!.value)
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(Object.entries(s.labels).sort()) === key)
      expect(count?.value, `${family}_count of ${key}`).toBe(ordered.at(-1)!.value)
    }
  }
  return { samples, types, text }
}

/** The value of the one sample of `name` with exactly these labels; undefined when absent. */
function valueOf(e: Exposition, name: string, labels: Record<string, string>): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort())
  const found = e.samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)
  expect(found.length).toBeLessThanOrEqual(1)
  return found[0]?.value
}

async function scrape(url: string, headers: Record<string, string>, remoteAddress?: string, on: FastifyInstance = api) {
  return on.inject({ method: 'GET', url, headers, ...(remoteAddress ? { remoteAddress } : {}) })
}

/** The operator's view, parsed; the answer must be 200 in prom-client's content type. */
async function operator(): Promise<Exposition> {
  const response = await scrape('/metrics', { authorization: `Bearer ${TOKEN}` })
  expect(response.statusCode, response.body).toBe(200)
  expect(response.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE)
  return parseExposition(response.body)
}

/** A tenant's view with its key, parsed. */
async function tenantView(apiKey: string): Promise<Exposition> {
  const response = await scrape('/v1/metrics', { authorization: `Bearer ${apiKey}` })
  expect(response.statusCode, response.body).toBe(200)
  expect(response.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE)
  return parseExposition(response.body)
}

const COUNTER = { tenant: TENANT, pool: 'counter:default' }

describe('task identifiers', () => {
  it('parses the tenant and pool out of every tenant-scoped task, and nothing else', () => {
    expect(parseTask('praxis.invoke.acme.video-encoding:encoders')).toEqual({ kind: 'invoke', tenantId: 'acme', pool: 'video-encoding:encoders' })
    expect(parseTask('praxis.invoke.acme.svc:pool.with.dots')).toEqual({ kind: 'invoke', tenantId: 'acme', pool: 'svc:pool.with.dots' })
    expect(parseTask('praxis.invoke.acme.@child')).toEqual({ kind: 'invoke', tenantId: 'acme', pool: '@child' })
    expect(parseTask('praxis.evaluate.acme')).toEqual({ kind: 'evaluate', tenantId: 'acme', pool: null })
    expect(parseTask('praxis.due.acme')).toEqual({ kind: 'due', tenantId: 'acme', pool: null })
    expect(parseTask('praxis.retention.acme')).toEqual({ kind: 'retention', tenantId: 'acme', pool: null })
    // Unscoped names from before 000005, and others' tasks.
    for (const other of ['praxis.invoke.counter:default', 'praxis.evaluate', 'praxis.invoke.acme.', 'praxis.evaluate.acme.x', 'praxis.invoke.Acme.p', 'send_email']) expect(parseTask(other)).toBeNull()
  })
})

describe('queues, workers and invocations, per tenant and pool', () => {
  let ids: string[]

  it('shows jobs queued while no worker runs as depth and age of their tenant and pool', async () => {
    await operator() // the first read: counters count from here
    ids = await Promise.all([1, 2, 3].map(() => start(p.apiKey, 'counter', {})))
    const e = await operator()
    expect(valueOf(e, 'praxis_queue_depth', COUNTER)).toBe(3)
    expect(valueOf(e, 'praxis_queue_oldest_age_seconds', COUNTER)).toBeGreaterThan(0)
    expect(valueOf(e, 'praxis_jobs_locked', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_workers', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_invocations_total', { ...COUNTER, status: 'succeeded' })).toBe(0)
    expect(valueOf(e, 'praxis_invocation_duration_seconds_count', COUNTER)).toBeUndefined()
    // The process's own metrics are in the operator's view.
    expect(e.types.get('process_cpu_user_seconds_total')).toBe('counter')
  })

  it('once a worker ran them: depth 0, the worker live, the invocations counted and timed, once', async () => {
    await p.startWorker('test/fixtures/counter')
    for (const id of ids) expect((await waitEnded(p.apiKey, id)).status).toBe('completed')
    const e = await operator()
    expect(valueOf(e, 'praxis_queue_depth', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_queue_oldest_age_seconds', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_jobs_locked', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_workers', COUNTER)).toBe(1)
    expect(valueOf(e, 'praxis_invocations_total', { ...COUNTER, status: 'succeeded' })).toBe(3)
    expect(valueOf(e, 'praxis_invocations_total', { ...COUNTER, status: 'failed' })).toBe(0)
    expect(valueOf(e, 'praxis_invocation_retries_total', COUNTER)).toBe(0)
    expect(valueOf(e, 'praxis_invocation_duration_seconds_count', COUNTER)).toBe(3)
    expect(valueOf(e, 'praxis_invocation_duration_seconds_bucket', { ...COUNTER, le: '+Inf' })).toBe(3)
    expect(valueOf(e, 'praxis_invocation_duration_seconds_sum', COUNTER)).toBeGreaterThan(0)
    // A duration is creation to finish; the database says what the histogram must hold.
    const { rows } = await p.db.pool.query<{ seconds: number }>(
      'select extract(epoch from finished_at - created_at)::float8 as seconds from praxis.invocations where tenant_id = $1 and instance_id = any($2::uuid[])', [TENANT, ids])
    expect(valueOf(e, 'praxis_invocation_duration_seconds_sum', COUNTER)).toBeCloseTo(rows.reduce((sum, r) => sum + r.seconds, 0), 6)
    for (const le of ['0.005', '0.1', '1', '10']) {
      expect(valueOf(e, 'praxis_invocation_duration_seconds_bucket', { ...COUNTER, le })).toBe(rows.filter((r) => r.seconds <= Number(le)).length)
    }

    // Read again: nothing is counted twice.
    const again = await operator()
    expect(valueOf(again, 'praxis_invocations_total', { ...COUNTER, status: 'succeeded' })).toBe(3)
    expect(valueOf(again, 'praxis_invocation_duration_seconds_count', COUNTER)).toBe(3)
  })

  it('counts failures under their class, and retries by pool', async () => {
    await p.startWorker('examples/video-encoding')
    await p.startWorker('examples/thumbnails')
    await p.startWorker('test/fixtures/timeouts')
    // An unknown recipe fails splitVideo for good (NonRetryableError: fatal), and the workflow.
    const encode = await start(p.apiKey, 'encodeVideo', { source: 's3://in/a.mov', recipe: 'mpeg2' })
    // broken:// fails renderThumbnail three times (retryable), then the placeholder succeeds.
    const thumbnail = await start(p.apiKey, 'makeThumbnail', { image: 'broken://img/dog.png' })
    // sleepy's 200 ms timeout ends a 5 s sleep (timeout, one attempt).
    const nap = await start(p.apiKey, 'nap', { ms: 5000 })
    expect((await waitEnded(p.apiKey, encode)).status).toBe('failed')
    expect((await waitEnded(p.apiKey, thumbnail)).status).toBe('completed')
    expect((await waitEnded(p.apiKey, nap)).status).toBe('completed')

    const e = await operator()
    const failures = (pool: string, klass: string) => valueOf(e, 'praxis_invocation_failures_total', { tenant: TENANT, pool, class: klass })
    expect(failures('video-encoding:default', 'fatal')).toBe(1)
    expect(failures('thumbnails:default', 'retryable')).toBe(1)
    expect(failures('timeouts:default', 'timeout')).toBe(1)
    expect(e.samples.filter((s) => s.name === 'praxis_invocation_failures_total').map((s) => `${s.labels.pool}/${s.labels.class}`).sort())
      .toEqual(['thumbnails:default/retryable', 'timeouts:default/timeout', 'video-encoding:default/fatal'])
    expect(valueOf(e, 'praxis_invocation_retries_total', { tenant: TENANT, pool: 'thumbnails:default' })).toBe(2)
    expect(valueOf(e, 'praxis_invocations_total', { tenant: TENANT, pool: 'thumbnails:default', status: 'failed' })).toBe(1)
    expect(valueOf(e, 'praxis_invocations_total', { tenant: TENANT, pool: 'thumbnails:default', status: 'succeeded' })).toBe(1)
    expect(valueOf(e, 'praxis_invocations_total', { tenant: TENANT, pool: 'video-encoding:default', status: 'failed' })).toBe(1)
    expect(valueOf(e, 'praxis_workers', { tenant: TENANT, pool: 'thumbnails:default' })).toBe(1)
    expect(valueOf(e, 'praxis_queue_depth', { tenant: TENANT, pool: 'thumbnails:default' })).toBe(0)
  })
})

describe('who may read metrics', () => {
  it('the operator view refuses without its token when one is configured, from loopback too', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: `Bearer ${p.apiKey}` }, { authorization: TOKEN }] as Record<string, string>[]) {
      const refused = await scrape('/metrics', headers)
      expect(refused.statusCode).toBe(401)
      expect(refused.json()).toEqual({ error: { code: 'PRX_UNAUTHORIZED', message: expect.stringMatching(/operator token/), details: null } })
      expect(refused.body).not.toMatch(/praxis_|globex/)
    }
    expect((await scrape('/metrics', { authorization: `Bearer ${TOKEN}` }, '203.0.113.9')).statusCode).toBe(200)
  })

  it('with no token configured, it answers unproxied loopback requests only', async () => {
    const loopback = await scrape('/metrics', {}, undefined, p.api)
    expect(loopback.statusCode).toBe(200)
    expect(loopback.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE)
    expect(parseExposition(loopback.body).types.get('praxis_queue_depth')).toBe('gauge')
    expect((await scrape('/metrics', {}, '::1', p.api)).statusCode).toBe(200)
    expect((await scrape('/metrics', {}, '::ffff:127.0.0.1', p.api)).statusCode).toBe(200)
    for (const [headers, address] of [[{}, '203.0.113.9'], [{}, '10.0.0.7'], [{ 'x-forwarded-for': '203.0.113.9' }, undefined], [{ forwarded: 'for=203.0.113.9' }, undefined], [{ 'x-real-ip': '203.0.113.9' }, undefined]] as const) {
      const refused = await scrape('/metrics', headers, address, p.api)
      expect(refused.statusCode).toBe(401)
      expect(refused.json().error).toMatchObject({ code: 'PRX_UNAUTHORIZED', message: expect.stringMatching(/only requests from this host while PRAXIS_METRICS_TOKEN is unset/) })
    }
  })

  it('reads the token from PRAXIS_METRICS_TOKEN, and refuses a short one', () => {
    expect(loadConfig({}).metricsToken).toBeUndefined()
    expect(loadConfig({ PRAXIS_METRICS_TOKEN: '' }).metricsToken).toBeUndefined()
    expect(loadConfig({ PRAXIS_METRICS_TOKEN: TOKEN }).metricsToken).toBe(TOKEN)
    expect(() => loadConfig({ PRAXIS_METRICS_TOKEN: 'short' })).toThrow(/PRAXIS_METRICS_TOKEN: at least 16 characters/)
  })

  it("a tenant's view holds its own series only: no other tenant's label, no process metrics", async () => {
    // globex's jobs wait: it has no worker.
    await Promise.all([1, 2].map(() => start(otherKey, 'counter', {})))

    const acme = await tenantView(p.apiKey)
    expect(acme.samples.length).toBeGreaterThan(0)
    expect(acme.samples.every((s) => s.labels.tenant === TENANT)).toBe(true)
    expect(acme.text).not.toContain(OTHER)
    expect([...acme.types.keys()].filter((name) => !name.startsWith('praxis_'))).toEqual([])
    expect(valueOf(acme, 'praxis_invocations_total', { ...COUNTER, status: 'succeeded' })).toBe(3)
    expect(valueOf(acme, 'praxis_queue_depth', COUNTER)).toBe(0)

    const globex = await tenantView(otherKey)
    expect(globex.samples.every((s) => s.labels.tenant === OTHER)).toBe(true)
    expect(globex.text).not.toContain(TENANT)
    expect(valueOf(globex, 'praxis_queue_depth', { tenant: OTHER, pool: 'counter:default' })).toBe(2)
    expect(valueOf(globex, 'praxis_workers', { tenant: OTHER, pool: 'counter:default' })).toBe(0)

    // The operator sees both.
    const all = await operator()
    expect(valueOf(all, 'praxis_queue_depth', { tenant: OTHER, pool: 'counter:default' })).toBe(2)
    expect(valueOf(all, 'praxis_queue_depth', COUNTER)).toBe(0)

    // No key, an unknown one, or the operator's token: refused.
    for (const headers of [{}, { authorization: 'Bearer prx_nope' }, { authorization: `Bearer ${TOKEN}` }] as Record<string, string>[]) {
      const refused = await scrape('/v1/metrics', headers)
      expect(refused.statusCode).toBe(401)
      expect(refused.json().error.code).toBe('PRX_UNAUTHORIZED')
    }
  })
})
