/**
 * Tenants and API keys (made, listed, revoked: through the store and the admin CLI), the tenancy
 * boundary through every route that takes an id, and the API's edge: bad input answers 4xx in
 * Praxis's error shape and never leaves a pooled connection inside an aborted transaction.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApi } from '../platform/api/index.js'
import { findBadString, findTooDeep } from '../platform/api/edge.js'
import { runAdmin } from '../platform/cli/admin.js'
import { runWorker } from '../platform/cli/worker.js'
import { loadConfig } from '../platform/config.js'
import { BundleCache, Evaluator } from '../platform/engine/index.js'
import { createApiKey, createPool, createTenant, keyMatches, listApiKeys, listTenants, revokeApiKey, tenantForKey, tenantIdFromName } from '../platform/store/index.js'
import { silent, startTestPlatform, type TestPlatform } from './support/platform.js'

const SERVICE = 'test/fixtures/approvals'

let p: TestPlatform
/** A second tenant with the same service deployed, and a service only acme has. */
let globexKey: string

beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy(SERVICE)).status).toBe(201)
  expect((await p.deploy(SERVICE, 'secret-svc')).status).toBe(201)
  await createTenant(p.db.pool, { name: 'Globex Corporation', id: 'globex' })
  globexKey = (await createApiKey(p.db.pool, 'globex', { label: 'tests' })).key
  const code = (await p.request('GET', '/v1/services/approvals/manifest')).status
  expect(code).toBe(200)
  const deployed = await p.request('POST', '/v1/services/approvals/deployments', { code: (await import('../platform/engine/index.js').then((m) => m.buildBundle(SERVICE))).code }, globexKey)
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(201)
})
afterAll(async () => p?.close())

const count = async (sql: string, values: unknown[] = []): Promise<number> =>
  (await p.db.pool.query<{ n: number }>(`select count(*)::int as n from (${sql}) q`, values)).rows[0]!.n

async function startApproval(item: string, key = p.apiKey, workflow = 'approvals.approval'): Promise<string> {
  const started = await p.request('POST', `/v1/workflows/${workflow}/instances`, { input: { item } }, key)
  expect(started.status).toBe(201)
  return started.body.id as string
}

/** An instance's state as the API shows it, and its rows that a request must not have added. */
async function snapshot(id: string): Promise<unknown> {
  const view = await p.request('GET', `/v1/instances/${id}`)
  return { status: view.body.status, revision: view.body.revision, facts: view.body.facts, events: await count('select 1 from praxis.events where instance_id = $1', [id]) }
}

describe('tenants and API keys', () => {
  it('makes keys as prx_<key id>_<secret>, stores only their hash and lists them without secrets', async () => {
    const made = await createApiKey(p.db.pool, 'acme', { label: 'ci deploys' })
    expect(made.key).toMatch(/^prx_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/)
    expect(made.key.split('_')[1]).toBe(made.id)
    expect(Buffer.from(made.key.slice(17), 'base64url')).toHaveLength(32)
    const stored = await p.db.pool.query('select * from praxis.api_keys where id = $1', [made.id])
    expect(JSON.stringify(stored.rows)).not.toContain(made.key.slice(17))
    expect(stored.rows[0].key_hash).toMatch(/^[0-9a-f]{64}$/)

    expect(await tenantForKey(p.db.pool, made.key)).toBe('acme')
    expect((await p.request('GET', '/v1/instances?limit=1', undefined, made.key)).status).toBe(200)

    const listed = await listApiKeys(p.db.pool, 'acme')
    const mine = listed.find((k) => k.id === made.id)
    expect(mine).toEqual({ id: made.id, tenantId: 'acme', label: 'ci deploys', createdAt: expect.any(Date), revokedAt: null })
    expect(JSON.stringify(listed)).not.toMatch(/prx_|key_hash|[0-9a-f]{64}/)
    // The key ensureTenant made for the test platform is listed (and revocable) too, by its hash prefix.
    expect(listed.length).toBeGreaterThanOrEqual(2)
  })

  it('compares the secret in constant time and refuses a forged secret for a real key id', async () => {
    const made = await createApiKey(p.db.pool, 'acme')
    const [, id, secret] = /^prx_(\w{12})_(.+)$/.exec(made.key)!
    const stored = (await p.db.pool.query<{ key_hash: string }>('select key_hash from praxis.api_keys where id = $1', [id])).rows[0]!.key_hash
    expect(keyMatches(stored, made.key)).toBe(true)
    expect(keyMatches(stored, made.key.slice(0, -1) + (made.key.endsWith('A') ? 'B' : 'A'))).toBe(false)
    expect(keyMatches('abcd', made.key)).toBe(false) // a stored hash of another length never throws

    const flipped = secret!.slice(0, -1) + (secret!.endsWith('A') ? 'B' : 'A')
    for (const forged of [`prx_${id}_${flipped}`, `prx_000000000000_${secret}`, `prx_${id}_${secret}x`, `${made.key}\u0000`]) {
      const response = await p.api.inject({ method: 'GET', url: '/v1/instances', headers: { authorization: `Bearer ${forged}` } })
      expect(response.statusCode, forged).toBe(401)
      expect(response.json()).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED' } })
    }
  })

  it('refuses a revoked key with 401 on the very next request', async () => {
    const made = await createApiKey(p.db.pool, 'acme', { label: 'short-lived' })
    expect((await p.request('GET', '/v1/instances?limit=1', undefined, made.key)).status).toBe(200)
    const revoked = await revokeApiKey(p.db.pool, made.id)
    expect(revoked).toMatchObject({ id: made.id, tenantId: 'acme', alreadyRevoked: false, revokedAt: expect.any(Date) })
    const after = await p.request('GET', '/v1/instances?limit=1', undefined, made.key)
    expect(after.status).toBe(401)
    expect(after.body).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED', message: 'unknown API key' } })
    const start = await p.request('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'x' } }, made.key)
    expect(start.status).toBe(401)

    expect(await revokeApiKey(p.db.pool, made.id)).toMatchObject({ alreadyRevoked: true, revokedAt: revoked.revokedAt })
    expect((await listApiKeys(p.db.pool, 'acme')).find((k) => k.id === made.id)?.revokedAt).toEqual(revoked.revokedAt)
    // The tenant's other keys are untouched.
    expect((await p.request('GET', '/v1/instances?limit=1')).status).toBe(200)
  })

  it('revokes an older-format key (ensureTenant, praxis dev) by its listed id', async () => {
    const { ensureTenant } = await import('../platform/store/index.js')
    const { apiKey } = await ensureTenant(p.db.pool, 'legacy-co')
    expect((await p.request('GET', '/v1/instances', undefined, apiKey)).status).toBe(200)
    const [key] = await listApiKeys(p.db.pool, 'legacy-co')
    await revokeApiKey(p.db.pool, key!.id)
    expect((await p.request('GET', '/v1/instances', undefined, apiKey)).status).toBe(401)
  })

  it('validates tenant ids, derives them from names and refuses duplicates', async () => {
    expect(tenantIdFromName('Acme Corp!')).toBe('acme-corp')
    expect(tenantIdFromName('  Société Générale  ')).toBe('societe-generale')
    expect(tenantIdFromName('42 Things')).toBe('things')
    expect(() => tenantIdFromName('!!!')).toThrow(/--id/)
    for (const id of ['Acme', 'a.b', 'a:b', 'a_b', '1abc', '-abc', 'a'.repeat(41), '']) {
      await expect(createTenant(p.db.pool, { name: 'x', id }), id).rejects.toMatchObject({ code: 'PRX_BAD_REQUEST' })
    }
    const made = await createTenant(p.db.pool, { name: 'Initech Ltd' })
    expect(made).toMatchObject({ id: 'initech-ltd', name: 'Initech Ltd' })
    await expect(createTenant(p.db.pool, { name: 'Initech Ltd' })).rejects.toMatchObject({ code: 'PRX_TENANT_EXISTS', message: expect.stringMatching(/exists already/) })
    await expect(createTenant(p.db.pool, { name: 'Other', id: 'acme' })).rejects.toMatchObject({ code: 'PRX_TENANT_EXISTS' })
    expect((await listTenants(p.db.pool)).map((t) => t.id)).toEqual(expect.arrayContaining(['acme', 'globex', 'initech-ltd']))
    // The database refuses a non-slug id even past the library.
    await expect(p.db.pool.query("insert into praxis.tenants (id, name) values ('has_underscore', 'x')")).rejects.toThrow(/tenants_id_slug/)

    await expect(createApiKey(p.db.pool, 'nobody')).rejects.toMatchObject({ code: 'PRX_TENANT_NOT_FOUND' })
    await expect(listApiKeys(p.db.pool, 'nobody')).rejects.toMatchObject({ code: 'PRX_TENANT_NOT_FOUND' })
    await expect(revokeApiKey(p.db.pool, '000000000000')).rejects.toMatchObject({ code: 'PRX_KEY_NOT_FOUND' })
    await expect(revokeApiKey(p.db.pool, "x' or 1=1")).rejects.toMatchObject({ code: 'PRX_KEY_NOT_FOUND' })
  })
})

describe('the admin CLI', () => {
  const config = () => ({ ...loadConfig({}), databaseUrl: p.db.url })
  async function admin(group: 'tenants' | 'keys', positionals: string[], flags: { id?: string; tenant?: string; label?: string } = {}): Promise<{ code: number; lines: string[] }> {
    const lines: string[] = []
    const code = await runAdmin(config(), group, { positionals, ...flags }, (line) => lines.push(line))
    return { code, lines }
  }

  it('creates a tenant and a key, lists them, and revokes the key', async () => {
    const tenant = await admin('tenants', ['create', 'Umbrella', 'Corp'])
    expect(tenant.code).toBe(0)
    expect(tenant.lines[0]).toBe('created tenant umbrella-corp (Umbrella Corp)')
    expect((await admin('tenants', ['list'])).lines.join('\n')).toMatch(/umbrella-corp\s+Umbrella Corp\s+0/)
    await expect(admin('tenants', ['create', 'Umbrella Corp'])).rejects.toMatchObject({ code: 'PRX_TENANT_EXISTS' })

    const made = await admin('keys', ['create'], { tenant: 'umbrella-corp', label: 'ops' })
    const key = made.lines.map((l) => l.trim()).find((l) => l.startsWith('prx_'))!
    expect(key).toMatch(/^prx_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/)
    expect(made.lines.join('\n')).toMatch(/cannot be shown again/)
    expect((await p.request('GET', '/v1/instances', undefined, key)).status).toBe(200)

    const listed = (await admin('keys', ['list'], { tenant: 'umbrella-corp' })).lines
    expect(listed[0]).toMatch(/^ID\s+LABEL\s+CREATED\s+REVOKED$/)
    expect(listed[1]).toMatch(new RegExp(`^${key.slice(4, 16)}\\s+ops\\s+\\d{4}-\\S+Z\\s+-$`))
    expect(listed.join('\n')).not.toContain(key.slice(17))

    const revoked = await admin('keys', ['revoke', key.slice(4, 16)])
    expect(revoked.lines[0]).toMatch(/^revoked API key \w{12} of tenant umbrella-corp/)
    expect((await p.request('GET', '/v1/instances', undefined, key)).status).toBe(401)
    expect((await admin('keys', ['list'], { tenant: 'umbrella-corp' })).lines[1]).toMatch(/Z\s+\d{4}-\S+Z$/)
  })

  it('says what to do when neither DATABASE_URL nor praxis dev is there', async () => {
    const lines: string[] = []
    const down = { ...loadConfig({}), databaseUrl: undefined, embeddedPort: 1 }
    await expect(runAdmin(down, 'tenants', { positionals: ['list'] }, (l) => lines.push(l))).rejects.toMatchObject({
      code: 'PRX_DATABASE_UNAVAILABLE', message: expect.stringMatching(/^praxis tenants cannot reach .*Start `praxis dev`.*or set DATABASE_URL/),
    })
    // A worker that cannot reach its database says which one it tried and what to check; on main
    // it threw pg's bare "connect ECONNREFUSED 127.0.0.1:1".
    await expect(runWorker(down, ['test/fixtures/counter'], { tenant: 'acme' })).rejects.toMatchObject({
      code: 'PRX_DATABASE_UNAVAILABLE',
      message: expect.stringMatching(/^praxis worker cannot reach the embedded PostgreSQL of `praxis dev` \(127\.0\.0\.1:1\/praxis\): .*ECONNREFUSED.*Start `praxis dev`.*PRAXIS_PG_PORT \(this command tried 1\).*DATABASE_URL/),
    })
    const wrong = new URL(p.db.url)
    wrong.password = 'not-the-password'
    const refused = await runWorker({ ...loadConfig({}), databaseUrl: wrong.toString() }, ['test/fixtures/counter'], { tenant: 'acme' }).then(() => null, (error: Error) => error)
    expect(refused?.message).toMatch(/^praxis worker cannot reach the PostgreSQL of DATABASE_URL \(127\.0\.0\.1:\d+\/[\w-]+\): .*The user or password is refused: check the credentials in DATABASE_URL/)
    expect(refused?.message).not.toContain('not-the-password')
    await expect(admin('keys', ['create'])).rejects.toThrow(/needs --tenant/)
    await expect(admin('keys', ['frobnicate'])).rejects.toThrow(/unknown command praxis keys frobnicate/)
  })

  it('runs from the praxis command', async () => {
    const run = (...args: string[]) => promisify(execFile)(process.execPath, ['bin/praxis.js', ...args], { env: { ...process.env, DATABASE_URL: p.db.url } })
    const created = await run('tenants', 'create', 'Hooli', '--id', 'hooli')
    expect(created.stdout).toMatch(/^created tenant hooli \(Hooli\)/)
    const key = await run('keys', 'create', '--tenant', 'hooli', '--label', 'cli')
    expect(key.stdout).toMatch(/prx_[0-9a-f]{12}_/)
    const list = await run('keys', 'list', '--tenant', 'hooli')
    expect(list.stdout).toMatch(/\bcli\b/)
    expect(list.stdout).not.toMatch(/prx_/)
    const failed = await run('keys', 'revoke', 'nope').then(() => null, (error: { code: number; stderr: string }) => error)
    expect(failed?.code).toBe(1)
    expect(failed?.stderr).toMatch(/no API key "nope"/)
  }, 60_000)
})

describe('the tenancy boundary', () => {
  /** The body with `id` replaced, so answers about two different ids compare equal. */
  const masked = (body: unknown, ...ids: string[]) => JSON.parse(ids.reduce((text, id) => text.split(id).join('<ID>'), JSON.stringify(body)))

  it("answers another tenant's instance ids on every route exactly as a missing id", async () => {
    const acmeInstance = await startApproval('secret-plans')
    const before = await snapshot(acmeInstance)
    const missing = randomUUID()
    const probes: { method: 'GET' | 'POST'; url: (id: string) => string; body?: unknown }[] = [
      { method: 'GET', url: (id) => `/v1/instances/${id}` },
      { method: 'GET', url: (id) => `/v1/instances/${id}?wait=completed&timeoutMs=20` },
      { method: 'GET', url: (id) => `/v1/instances/${id}/timeline` },
      { method: 'GET', url: (id) => `/v1/instances/${id}/timeline?after=1&limit=5` },
      { method: 'POST', url: (id) => `/v1/instances/${id}/signals/decide`, body: { payload: { approve: true, by: 'mallory' } } },
      { method: 'POST', url: (id) => `/v1/instances/${id}/signals/decide`, body: { payload: { approve: true, by: 'mallory' }, signalId: 's-1' } },
      { method: 'POST', url: (id) => `/v1/instances/${id}/signals/nosuchsignal`, body: { payload: null } },
    ]
    for (const probe of probes) {
      const theirs = await p.request(probe.method, probe.url(acmeInstance), probe.body, globexKey)
      const none = await p.request(probe.method, probe.url(missing), probe.body, globexKey)
      expect(theirs.status, probe.url('…')).toBe(404)
      expect(masked(theirs.body, acmeInstance), probe.url('…')).toEqual(masked(none.body, missing))
    }
    const list = await p.request('GET', '/v1/instances?limit=500', undefined, globexKey)
    expect(list.body.instances.map((i: { id: string }) => i.id)).not.toContain(acmeInstance)
    const cursor = Buffer.from(acmeInstance).toString('base64url')
    const paged = await p.request('GET', `/v1/instances?limit=500&cursor=${cursor}`, undefined, globexKey)
    expect(paged.status).toBe(200)
    expect(paged.body.instances.every((i: { id: string }) => i.id !== acmeInstance)).toBe(true)
    expect(await snapshot(acmeInstance)).toEqual(before)
  })

  it("answers another tenant's services and workflows exactly as missing ones", async () => {
    const pairs: [string, string][] = [
      ['/v1/services/secret-svc/manifest', '/v1/services/never-deployed/manifest'],
      ['/v1/services/secret-svc/deployments', '/v1/services/never-deployed/deployments'],
      ['/v1/instances?workflow=secret-svc.approval', '/v1/instances?workflow=never-deployed.approval'],
    ]
    for (const [theirsUrl, noneUrl] of pairs) {
      const theirs = await p.request('GET', theirsUrl, undefined, globexKey)
      const none = await p.request('GET', noneUrl, undefined, globexKey)
      expect(theirs.status, theirsUrl).toBe(none.status)
      expect(masked(theirs.body, 'secret-svc'), theirsUrl).toEqual(masked(none.body, 'never-deployed'))
    }
    // The owner sees them.
    expect((await p.request('GET', '/v1/services/secret-svc/manifest')).status).toBe(200)
    const startTheirs = await p.request('POST', '/v1/workflows/secret-svc.approval/instances', { input: { item: 'x' } }, globexKey)
    const startNone = await p.request('POST', '/v1/workflows/never-deployed.approval/instances', { input: { item: 'x' } }, globexKey)
    expect(startTheirs.status).toBe(404)
    expect(masked(startTheirs.body, 'secret-svc')).toEqual(masked(startNone.body, 'never-deployed'))
    // The same idempotency key in two tenants names two instances.
    const a = await p.request('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'i' }, idempotencyKey: 'shared' })
    const b = await p.request('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'i' }, idempotencyKey: 'shared' }, globexKey)
    expect([a.status, b.status]).toEqual([201, 201])
    expect(a.body.id).not.toBe(b.body.id)
    // A deployment to a service name another tenant uses makes the caller's own service.
    expect(await count("select 1 from praxis.services where tenant_id = 'globex' and name = 'secret-svc'")).toBe(0)
  })

  it('shows no id shared across tenants: a deployment is named by its service and version', async () => {
    // Bundle ids come from one sequence for every tenant: showing them would tell a tenant how often
    // others deploy (found by a read of main: `bundleId` in the deploy answer and the list).
    const listed = await p.request('GET', '/v1/services/secret-svc/deployments')
    expect(listed.status).toBe(200)
    expect(listed.body.deployments.length).toBeGreaterThan(0)
    for (const d of listed.body.deployments) expect(Object.keys(d).sort()).toEqual(['active', 'codeHash', 'createdAt', 'version'])
    const { rows } = await p.db.pool.query<{ id: string }>("select id::text from praxis.bundles where tenant_id = 'acme' and service = 'secret-svc' order by version desc limit 1")
    expect(rows).toHaveLength(1)
    expect(JSON.stringify(listed.body)).not.toContain(`"${rows[0]!.id}"`)
  })
})

describe('the edge: bad input answers 400, never 500', () => {
  const deep = (n: number, leaf = '1') => '{"a":'.repeat(n) + leaf + '}'.repeat(n)
  const raw = (method: 'GET' | 'POST', url: string, payload?: string, key = p.apiKey) =>
    p.api.inject({ method, url, headers: { authorization: `Bearer ${key}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, ...(payload === undefined ? {} : { payload }) })

  it('finds depth and bad strings without recursion', () => {
    expect(findTooDeep('{"a":[1,{"b":2}]}', 3)).toBeNull()
    expect(findTooDeep('{"a":[1,{"b":2}]}', 2)).toEqual(['a', 1])
    expect(findTooDeep('{"a\\"{":"[[[["}', 1)).toBeNull()
    expect(findTooDeep('['.repeat(1_000_000), 64)).toHaveLength(64)
    expect(findBadString({ a: ['ok', 'b\u0000'] }, 'body')).toEqual({ path: 'body.a[1]', problem: expect.stringMatching(/NUL/) })
    expect(findBadString({ 'k\ud800': 1 }, 'body')?.problem).toMatch(/key that holds a lone surrogate \(\\ud800\)/)
    expect(findBadString({ emoji: '\ud83d\ude00' }, 'body')).toBeNull()
    expect(findBadString({ a: '\udc00x' }, 'query')?.path).toBe('query.a')
  })

  it('refuses JSON nested 10,000 deep in a start input and 100,000 deep in a signal payload', async () => {
    const id = await startApproval('deep')
    const before = await snapshot(id)
    const instances = await count('select 1 from praxis.instances')
    const start = await raw('POST', '/v1/workflows/approvals.approval/instances', `{"input":${deep(10_000)}}`)
    expect(start.statusCode).toBe(400)
    expect(start.json().error).toMatchObject({ code: 'PRX_BAD_REQUEST', message: expect.stringMatching(/^body nests deeper than 64 levels at body\.input(\.a){6}…$/), details: [{ path: expect.any(String), code: 'too_deep', limit: 64 }] })
    for (const payload of [deep(100_000), '['.repeat(100_000) + ']'.repeat(100_000), '['.repeat(100_000)]) {
      const signal = await raw('POST', `/v1/instances/${id}/signals/decide`, `{"payload":${payload}}`)
      expect(signal.statusCode).toBe(400)
      expect(signal.json().error.message).toMatch(/^body nests deeper than 64 levels at body\.payload/)
    }
    // 64 levels are fine: the payload reaches the workflow's schema, which refuses it.
    const ok = await raw('POST', `/v1/instances/${id}/signals/decide`, `{"payload":${deep(63)}}`)
    expect(ok.json().error.code).toBe('PRX_INPUT_INVALID')
    expect(await snapshot(id)).toEqual(before)
    expect(await count('select 1 from praxis.instances')).toBe(instances)
  })

  it('refuses \\u0000 and lone surrogates in an input, idempotencyKey, signalId, signal payload and ?workflow= with 400 naming the field', async () => {
    const id = await startApproval('nul')
    const before = await snapshot(id)
    const instances = await count('select 1 from praxis.instances')
    const cases: [string, 'GET' | 'POST', string, unknown, string][] = [
      ['input', 'POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'a\u0000b' } }, 'body.input.item'],
      ['input key', 'POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'x', ['k\u0000']: 1 } }, 'body.input.k�'],
      ['input surrogate', 'POST', '/v1/workflows/approvals.approval/instances', { input: { item: '\ud800' } }, 'body.input.item'],
      ['idempotencyKey', 'POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'x' }, idempotencyKey: 'k\u0000' }, 'body.idempotencyKey'],
      ['idempotencyKey surrogate', 'POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'x' }, idempotencyKey: 'k\udfff' }, 'body.idempotencyKey'],
      ['signalId', 'POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: '\u0000' }, 'body.signalId'],
      ['signalId surrogate', 'POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 'x\ud800' }, 'body.signalId'],
      ['payload', 'POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'a\u0000' } }, 'body.payload.by'],
      ['payload in an array', 'POST', `/v1/instances/${id}/signals/decide`, { payload: [1, ['\ud800']] }, 'body.payload[1][0]'],
      ['?workflow=', 'GET', '/v1/instances?workflow=a%00b', undefined, 'query.workflow'],
      ['?cursor=', 'GET', '/v1/instances?cursor=%00', undefined, 'query.cursor'],
    ]
    for (const [what, method, url, body, path] of cases) {
      const response = await p.request(method, url, body)
      expect(response.status, what).toBe(400)
      expect(response.body.error, what).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path })] })
      expect(response.body.error.message, what).toContain(path)
    }
    expect(await snapshot(id)).toEqual(before)
    expect(await count('select 1 from praxis.instances')).toBe(instances)
    // The connections those requests used are healthy: a signal goes through.
    const signal = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 'fine' })
    expect(signal.status).toBe(202)
  })

  it('refuses a body over the limit with 413 naming it', async () => {
    const big = await raw('POST', '/v1/workflows/approvals.approval/instances', JSON.stringify({ input: { item: 'x'.repeat(1024 * 1024) } }))
    expect(big.statusCode).toBe(413)
    expect(big.json().error).toMatchObject({ code: 'PRX_BODY_TOO_LARGE', message: 'the body is larger than 1048576 bytes', details: { limit: 1048576 } })
  })

  it('rolls back on every error: after a failed transaction the next request on a pool of one connection succeeds', async () => {
    const pool = createPool(p.db.url, 1)
    const api = await buildApi({ pool, databaseUrl: p.db.url, log: silent })
    await api.ready()
    const send = async (method: 'GET' | 'POST', url: string, body?: unknown) => {
      const r = await api.inject({ method, url, headers: { authorization: `Bearer ${p.apiKey}` }, ...(body === undefined ? {} : { payload: body as object }) })
      return { status: r.statusCode, body: r.json() }
    }
    // PostgreSQL refusing a write inside the signal's and the start's transactions: a trigger
    // raises on a marker value (no input that passes the edge makes PostgreSQL fail by itself).
    await p.db.pool.query(`create function pg_temp_refuse() returns trigger language plpgsql as $$
      begin raise exception 'refused by the test trigger'; end $$`.replace('pg_temp_refuse', 'public.refuse_marked'))
    await p.db.pool.query("create trigger refuse_events before insert on praxis.events for each row when (new.payload->'payload'->>'by' = 'boom') execute function public.refuse_marked()")
    await p.db.pool.query("create trigger refuse_instances before insert on praxis.instances for each row when (new.facts->>'item' = 'boom') execute function public.refuse_marked()")
    try {
      const id = (await send('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'pool-of-one' } })).body.id as string
      const failed = await send('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'boom' } })
      expect(failed.status).toBe(500)
      expect(failed.body).toEqual({ error: { code: 'PRX_INTERNAL', message: expect.any(String), details: null } })
      // The one connection went back to the pool outside any transaction.
      expect((await send('GET', `/v1/instances/${id}`)).status).toBe(200)
      expect((await send('GET', '/v1/instances?limit=1')).status).toBe(200)

      expect((await send('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'boom' } })).status).toBe(500)
      expect((await send('GET', '/v1/instances?limit=1')).status).toBe(200)

      const ok = await send('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' } })
      expect(ok).toEqual({ status: 202, body: { delivered: true, duplicate: false } })
      expect((await send('GET', `/v1/instances/${id}`)).body).toMatchObject({ status: 'completed', facts: { approvedBy: 'ann' } })
    } finally {
      await p.db.pool.query('drop trigger refuse_events on praxis.events; drop trigger refuse_instances on praxis.instances; drop function public.refuse_marked()')
      await api.close()
      await pool.end()
    }
  })

  it('Evaluator.signal rolls back when PostgreSQL refuses the payload, leaving the connection usable', async () => {
    const id = await startApproval('direct')
    const pool = createPool(p.db.url, 1)
    const evaluator = new Evaluator(pool, new BundleCache())
    try {
      await expect(evaluator.signal('acme', id, 'decide', { by: 'a\u0000b' }, null)).rejects.toThrow(/unsupported Unicode escape|\\u0000/)
      await expect(evaluator.signal('acme', id, 'decide', { by: 'x' }, 'nul\u0000id')).rejects.toThrow()
      const { rows } = await pool.query<{ ok: number; xact: string | null }>('select 1 as ok, txid_current_if_assigned()::text as xact')
      expect(rows[0]).toEqual({ ok: 1, xact: null })
    } finally {
      await evaluator.close()
      await pool.end()
    }
  })

  describe('over a real socket', () => {
    let server: FastifyInstance
    let port: number
    beforeAll(async () => {
      server = await buildApi({ pool: p.db.pool, databaseUrl: p.db.url, log: silent })
      await server.listen({ port: 0, host: '127.0.0.1' })
      port = (server.server.address() as AddressInfo).port
    })
    afterAll(async () => server?.close())

    const send = (path: string, headers: Record<string, string> = {}) => new Promise<{ status: number; body: any }>((resolve, reject) => {
      const request = http.request({ host: '127.0.0.1', port, path, method: 'GET', headers: { authorization: `Bearer ${p.apiKey}`, ...headers } }, (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => (text += chunk))
        response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(text) }))
      })
      request.on('error', reject)
      request.end()
    })
    const shape = { error: { code: expect.stringMatching(/^PRX_/), message: expect.any(String), details: expect.toSatisfy((d: unknown) => d !== undefined) } }

    it('answers 414 for a path parameter or a URL over the limit', async () => {
      const longParam = await send(`/v1/instances/${'a'.repeat(300)}`)
      expect(longParam.status).toBe(414)
      expect(longParam.body).toMatchObject({ ...shape, error: { code: 'PRX_URL_TOO_LONG', message: expect.stringMatching(/256 characters/) } })
      const longUrl = await send(`/v1/instances?workflow=${'w'.repeat(9000)}`)
      expect(longUrl.status).toBe(414)
      expect(longUrl.body).toMatchObject({ error: { code: 'PRX_URL_TOO_LONG', message: 'the URL is longer than 8192 bytes' } })
      // A workflow name at the schema's own limit (service.workflow, 100 + 1 + 100) is not refused as long.
      const longest = await send(`/v1/instances?workflow=${'s'.repeat(100)}.${'w'.repeat(100)}`)
      expect(longest.status).toBe(200)
    })

    it('answers 431 for headers over the limit', async () => {
      const response = await send('/v1/instances', { 'x-filler': 'f'.repeat(20_000) })
      expect(response.status).toBe(431)
      expect(response.body).toEqual({ error: { code: 'PRX_HEADERS_TOO_LARGE', message: 'the request line and headers exceed 16384 bytes', details: { limit: 16384 } } })
    })

    it('answers 400 for bad percent-encoding in the path', async () => {
      for (const path of [`/v1/instances/%E0%A4%A`, '/v1/instances/%zz/timeline', '/v1/services/%C0/manifest']) {
        const response = await send(path)
        expect(response.status, path).toBe(400)
        expect(response.body, path).toMatchObject({ ...shape, error: { code: 'PRX_BAD_REQUEST' } })
      }
      // The query string's parser keeps a value it cannot decode as it came: a name that matches nothing.
      for (const query of ['workflow=%E0%A4%A', 'workflow=%ED%A0%80', 'cursor=%FF']) {
        const response = await send(`/v1/instances?${query}`)
        expect(response.status, query).toBeLessThan(500)
        if (response.status >= 400) expect(response.body, query).toMatchObject(shape)
      }
    })
  })
})
