/**
 * The REST API's answers to bad input, and tenant isolation, through `inject`. Every error is
 * checked for its stable code and for what it must NOT have done (no instance row, facts unchanged).
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BundleCache, buildBundle, Evaluator } from '../platform/engine/index.js'
import { ensureTenant } from '../platform/store/index.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

const SERVICE = 'test/fixtures/approvals'
const TENANT = 'acme'

let p: TestPlatform
let otherKey: string
let approvalsCode: string

beforeAll(async () => {
  p = await startTestPlatform()
  const deployed = await p.deploy(SERVICE)
  expect(deployed.status).toBe(201)
  expect(deployed.body).toMatchObject({ service: 'approvals', version: 1, created: true })
  approvalsCode = (await buildBundle(SERVICE)).code
  otherKey = (await ensureTenant(p.db.pool, 'other')).apiKey
})
afterAll(async () => p?.close())

const count = async (sql: string, values: unknown[] = []): Promise<number> =>
  (await p.db.pool.query<{ n: number }>(`select count(*)::int as n from (${sql}) q`, values)).rows[0]!.n

const countInstances = (): Promise<number> => count('select 1 from praxis.instances')

async function startApproval(item = 'laptop', extra: Record<string, unknown> = {}, key?: string): Promise<string> {
  const started = await p.request('POST', '/v1/workflows/approval/instances', { input: { item }, ...extra }, key)
  expect(started.status).toBe(201)
  expect(started.body).toMatchObject({ status: 'running', created: true })
  return started.body.id as string
}

/** A tenant of its own with the approvals service deployed: its instance list holds only what a test puts there. */
async function freshTenant(id: string): Promise<string> {
  const { apiKey } = await ensureTenant(p.db.pool, id)
  const deployed = await p.request('POST', '/v1/services/approvals/deployments', { code: approvalsCode }, apiKey)
  expect(deployed.status).toBe(201)
  return apiKey
}

/** Holds the instance row lock the way a running evaluation does, until `release`. */
async function holdInstanceLock(tenantId: string, id: string): Promise<{ release(): Promise<void> }> {
  const client = await p.db.pool.connect()
  await client.query('begin')
  await client.query('select 1 from praxis.instances where tenant_id = $1 and id = $2 for no key update', [tenantId, id])
  return {
    async release() {
      try { await client.query('commit') } finally { client.release() }
    },
  }
}

describe('authentication', () => {
  it('refuses a request without an API key with 401 PRX_UNAUTHORIZED', async () => {
    const before = await countInstances()
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }, { authorization: 'Bearer ' }]) {
      const get = await p.api.inject({ method: 'GET', url: '/v1/instances', headers })
      expect(get.statusCode).toBe(401)
      expect(get.json()).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED', message: expect.stringMatching(/missing API key/) } })
    }
    const post = await p.api.inject({ method: 'POST', url: '/v1/workflows/approval/instances', payload: { input: { item: 'x' } } })
    expect(post.statusCode).toBe(401)
    expect(post.json()).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED' } })
    expect(await countInstances()).toBe(before)
  })

  it('refuses an unknown API key with 401 PRX_UNAUTHORIZED', async () => {
    const before = await countInstances()
    const get = await p.request('GET', '/v1/instances', undefined, 'prx_not-a-key-anyone-was-given')
    expect(get.status).toBe(401)
    expect(get.body).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED', message: expect.stringMatching(/unknown API key/) } })
    const post = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'x' } }, 'prx_not-a-key-anyone-was-given')
    expect(post.status).toBe(401)
    expect(post.body).toMatchObject({ error: { code: 'PRX_UNAUTHORIZED' } })
    expect(await countInstances()).toBe(before)
  })

  it('serves health without a key', async () => {
    const health = await p.api.inject({ method: 'GET', url: '/v1/health' })
    expect(health.statusCode).toBe(200)
    expect(health.json()).toEqual({ status: 'ok' })
  })
})

describe('starting instances', () => {
  it('rejects an input that violates the workflow input schema with 400 PRX_INPUT_INVALID and creates no instance', async () => {
    const before = await countInstances()

    const wrongType = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 42 } })
    expect(wrongType.status).toBe(400)
    expect(wrongType.body.error.code).toBe('PRX_INPUT_INVALID')
    expect(wrongType.body.error.message).toMatch(/item/)
    expect(wrongType.body.error.details.map((i: { path: unknown }) => i.path)).toEqual([['item']])

    const missing = await p.request('POST', '/v1/workflows/approval/instances', {})
    expect(missing.status).toBe(400)
    expect(missing.body.error.code).toBe('PRX_INPUT_INVALID')
    expect(missing.body.error.details.map((i: { path: unknown }) => i.path)).toEqual([['item']])

    const empty = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: '' } })
    expect(empty.status).toBe(400)
    expect(empty.body.error.code).toBe('PRX_INPUT_INVALID')
    expect(empty.body.error.details).toEqual([expect.objectContaining({ path: ['item'], code: 'too_small' })])

    expect(await countInstances()).toBe(before)
  })

  it('rejects a body with an unknown property with 400 PRX_BAD_REQUEST and details', async () => {
    const before = await countInstances()
    const started = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'x' }, priority: 5 })
    expect(started.status).toBe(400)
    expect(started.body.error.code).toBe('PRX_BAD_REQUEST')
    expect(started.body.error.message).toMatch(/priority/)
    expect(started.body.error.details).toEqual([expect.objectContaining({ path: 'body', code: 'unrecognized_keys' })])

    const badKey = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'x' }, idempotencyKey: '' })
    expect(badKey.status).toBe(400)
    expect(badKey.body.error).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'body.idempotencyKey' })] })
    expect(await countInstances()).toBe(before)
  })

  it('rejects a body that is not JSON with 400 PRX_BAD_REQUEST', async () => {
    const before = await countInstances()
    const response = await p.api.inject({
      method: 'POST', url: '/v1/workflows/approval/instances',
      headers: { authorization: `Bearer ${p.apiKey}`, 'content-type': 'application/json' }, payload: '{"input": {',
    })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject({ error: { code: 'PRX_BAD_REQUEST' } })
    expect(await countInstances()).toBe(before)
  })

  it('answers an unknown workflow with 404 PRX_WORKFLOW_NOT_FOUND', async () => {
    const before = await countInstances()
    for (const name of ['nope', 'approvals.nope', 'other-service.approval']) {
      const started = await p.request('POST', `/v1/workflows/${name}/instances`, { input: { item: 'x' } })
      expect(started.status).toBe(404)
      expect(started.body).toMatchObject({ error: { code: 'PRX_WORKFLOW_NOT_FOUND' } })
    }
    const malformed = await p.request('POST', '/v1/workflows/9lives/instances', { input: { item: 'x' } })
    expect(malformed.status).toBe(400)
    expect(malformed.body).toMatchObject({ error: { code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'params.workflow' })] } })
    expect(await countInstances()).toBe(before)
  })

  it('starts by service.workflow as well as by the bare name', async () => {
    const started = await p.request('POST', '/v1/workflows/approvals.approval/instances', { input: { item: 'desk' } })
    expect(started.status).toBe(201)
    const view = await p.request('GET', `/v1/instances/${started.body.id}`)
    expect(view.body).toMatchObject({ service: 'approvals', workflow: 'approval', status: 'running', facts: { item: 'desk', state: 'pending' } })
  })

  it('returns the first instance for a repeated idempotency key: 201 then 200, the same id, one row', async () => {
    const body = { input: { item: 'chair' }, idempotencyKey: 'order-17' }
    const first = await p.request('POST', '/v1/workflows/approval/instances', body)
    expect(first.status).toBe(201)
    expect(first.body).toMatchObject({ created: true, status: 'running' })
    const second = await p.request('POST', '/v1/workflows/approval/instances', body)
    expect(second.status).toBe(200)
    expect(second.body).toMatchObject({ id: first.body.id, created: false, status: 'running', revision: first.body.revision })
    expect(await count("select 1 from praxis.instances where tenant_id = $1 and idempotency_key = 'order-17'", [TENANT])).toBe(1)
    // One start, one evaluation: the repeat did not evaluate the instance again.
    const timeline = await p.request('GET', `/v1/instances/${first.body.id}/timeline`)
    expect(timeline.body.entries.filter((e: { kind: string }) => e.kind === 'instance.started')).toHaveLength(1)

    // The key is the tenant's own: another tenant with the same key gets its own instance.
    const otherTenantKey = await freshTenant('idem')
    const elsewhere = await p.request('POST', '/v1/workflows/approval/instances', body, otherTenantKey)
    expect(elsewhere.status).toBe(201)
    expect(elsewhere.body.id).not.toBe(first.body.id)
  })

  it('creates one instance when two starts with the same idempotency key race', async () => {
    const body = { input: { item: 'race' }, idempotencyKey: 'order-race' }
    const both = await Promise.all([p.request('POST', '/v1/workflows/approval/instances', body), p.request('POST', '/v1/workflows/approval/instances', body)])
    expect(both.map((r) => r.status).sort()).toEqual([200, 201])
    expect(both[0]!.body.id).toBe(both[1]!.body.id)
    expect(await count("select 1 from praxis.instances where tenant_id = $1 and idempotency_key = 'order-race'", [TENANT])).toBe(1)
  })
})

describe('reading instances', () => {
  it('rejects an instance id that is not a UUID with 400 PRX_BAD_REQUEST', async () => {
    for (const [method, url] of [['GET', '/v1/instances/42'], ['GET', '/v1/instances/not-a-uuid/timeline'], ['POST', '/v1/instances/not-a-uuid/signals/decide']] as const) {
      const response = await p.request(method, url, method === 'POST' ? { payload: { approve: true, by: 'ann' } } : undefined)
      expect(response.status, url).toBe(400)
      expect(response.body.error).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'params.id' })] })
    }
  })

  it('answers an unknown UUID with 404 PRX_INSTANCE_NOT_FOUND', async () => {
    const id = randomUUID()
    for (const [method, url] of [['GET', `/v1/instances/${id}`], ['GET', `/v1/instances/${id}?wait=completed&timeoutMs=50`], ['GET', `/v1/instances/${id}/timeline`], ['POST', `/v1/instances/${id}/signals/decide`]] as const) {
      const response = await p.request(method, url, method === 'POST' ? { payload: { approve: true, by: 'ann' } } : undefined)
      expect(response.status, url).toBe(404)
      expect(response.body).toMatchObject({ error: { code: 'PRX_INSTANCE_NOT_FOUND' } })
    }
    expect(await count('select 1 from praxis.events where instance_id = $1', [id])).toBe(0)
  })

  it("hides another tenant's instance: 404 on read, timeline and signal, absent from its list", async () => {
    const id = await startApproval('secret-plans')
    const before = await p.request('GET', `/v1/instances/${id}`)

    const read = await p.request('GET', `/v1/instances/${id}`, undefined, otherKey)
    expect(read.status).toBe(404)
    expect(read.body).toMatchObject({ error: { code: 'PRX_INSTANCE_NOT_FOUND' } })
    const timeline = await p.request('GET', `/v1/instances/${id}/timeline`, undefined, otherKey)
    expect(timeline.status).toBe(404)
    expect(timeline.body).toMatchObject({ error: { code: 'PRX_INSTANCE_NOT_FOUND' } })
    const signal = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'mallory' } }, otherKey)
    expect(signal.status).toBe(404)
    expect(signal.body).toMatchObject({ error: { code: 'PRX_INSTANCE_NOT_FOUND' } })
    const list = await p.request('GET', '/v1/instances?limit=500', undefined, otherKey)
    expect(list.status).toBe(200)
    expect(list.body.instances.map((i: { id: string }) => i.id)).not.toContain(id)
    // Nor can it start the workflow: its deployments are its own.
    const start = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'x' } }, otherKey)
    expect(start.status).toBe(404)
    expect(start.body).toMatchObject({ error: { code: 'PRX_WORKFLOW_NOT_FOUND' } })

    const after = await p.request('GET', `/v1/instances/${id}`)
    expect(after.body).toMatchObject({ status: 'running', revision: before.body.revision, facts: before.body.facts })
    expect(await count('select 1 from praxis.events where instance_id = $1', [id])).toBe(0)
  })

  it('paginates the instance list with limit=1 and nextCursor', async () => {
    const key = await freshTenant('pager')
    const created: string[] = []
    for (const item of ['a', 'b', 'c']) created.push(await startApproval(item, {}, key))

    const all = await p.request('GET', '/v1/instances?limit=500', undefined, key)
    expect(all.body.nextCursor).toBeNull()
    const expected = all.body.instances.map((i: { id: string }) => i.id)
    expect([...expected].sort()).toEqual([...created].sort())

    const seen: string[] = []
    let cursor: string | null = null
    for (let page = 0; page < 10; page++) {
      const response: { status: number; body: any } = await p.request('GET', `/v1/instances?limit=1${cursor ? `&cursor=${cursor}` : ''}`, undefined, key)
      expect(response.status).toBe(200)
      seen.push(...response.body.instances.map((i: { id: string }) => i.id))
      cursor = response.body.nextCursor
      if (!cursor) {
        expect(response.body.instances).toHaveLength(0)
        break
      }
      expect(response.body.instances).toHaveLength(1)
    }
    expect(cursor).toBeNull()
    expect(seen).toEqual(expected)

    const filtered = await p.request('GET', '/v1/instances?limit=500&status=completed', undefined, key)
    expect(filtered.body.instances).toHaveLength(0)
    const byWorkflow = await p.request('GET', '/v1/instances?limit=2&workflow=approvals.approval', undefined, key)
    expect(byWorkflow.body.instances.map((i: { id: string }) => i.id)).toEqual(expected.slice(0, 2))
    expect(byWorkflow.body.nextCursor).toEqual(expect.any(String))
  })

  // Regression: the cursor once carried created_at as a JS Date (milliseconds) and skipped rows.
  it('does not skip an instance created in the same millisecond as the last row of a page', async () => {
    const key = await freshTenant('pager-us')
    const older = await startApproval('older', {}, key)
    const newer = await startApproval('newer', {}, key)
    await p.db.pool.query("update praxis.instances set created_at = '2024-05-01 12:00:00.123400+00' where tenant_id = 'pager-us' and id = $1", [older])
    await p.db.pool.query("update praxis.instances set created_at = '2024-05-01 12:00:00.123700+00' where tenant_id = 'pager-us' and id = $1", [newer])
    const first = await p.request('GET', '/v1/instances?limit=1', undefined, key)
    expect(first.body.instances.map((i: { id: string }) => i.id)).toEqual([newer])
    const second = await p.request('GET', `/v1/instances?limit=1&cursor=${first.body.nextCursor}`, undefined, key)
    expect(second.body.instances.map((i: { id: string }) => i.id)).toEqual([older])
  })

  it('rejects a malformed list query or cursor with 400 PRX_BAD_REQUEST', async () => {
    for (const query of ['limit=0', 'limit=501', 'limit=x', 'status=sleeping', 'cursor=not-a-cursor', `cursor=${Buffer.from('[1,2]').toString('base64url')}`]) {
      const response = await p.request('GET', `/v1/instances?${query}`)
      expect(response.status, query).toBe(400)
      expect(response.body.error.code, query).toBe('PRX_BAD_REQUEST')
    }
  })

  it('pages the timeline with `after`', async () => {
    const id = await startApproval('monitor')
    const signalled = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: false, by: 'bob' } })
    expect(signalled.status).toBe(202)

    const full = await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)
    expect(full.status).toBe(200)
    const kinds = full.body.entries.map((e: { kind: string }) => e.kind)
    expect(kinds[0]).toBe('instance.started')
    expect(kinds).toContain('signal.received')
    expect(kinds[kinds.length - 1]).toBe('instance.completed')
    expect(full.body.entries.length).toBeGreaterThanOrEqual(4)
    expect(full.body.nextCursor).toBeNull()

    const paged: unknown[] = []
    let after: string | null = null
    for (let page = 0; page < 20; page++) {
      const response: { status: number; body: any } = await p.request('GET', `/v1/instances/${id}/timeline?limit=2${after ? `&after=${after}` : ''}`)
      expect(response.status).toBe(200)
      expect(response.body.entries.length).toBeLessThanOrEqual(2)
      paged.push(...response.body.entries)
      after = response.body.nextCursor
      if (!after) break
      expect(after).toBe(response.body.entries[response.body.entries.length - 1].id)
    }
    expect(after).toBeNull()
    expect(paged).toEqual(full.body.entries)

    const rest = await p.request('GET', `/v1/instances/${id}/timeline?after=${full.body.entries[0].id}`)
    expect(rest.body.entries).toEqual(full.body.entries.slice(1))
    const none = await p.request('GET', `/v1/instances/${id}/timeline?after=${full.body.entries.at(-1).id}`)
    expect(none.body).toEqual({ entries: [], nextCursor: null })

    const bad = await p.request('GET', `/v1/instances/${id}/timeline?after=abc`)
    expect(bad.status).toBe(400)
    expect(bad.body.error).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'query.after' })] })
  })

  // Regression: a cursor beyond bigint once reached PostgreSQL and answered 500.
  it('rejects a timeline cursor beyond bigint with 400 PRX_BAD_REQUEST', async () => {
    const id = await startApproval('overflow')
    const response = await p.request('GET', `/v1/instances/${id}/timeline?after=99999999999999999999`)
    expect(response.body.error.code).toBe('PRX_BAD_REQUEST')
    expect(response.status).toBe(400)
  })
})

describe('signals', () => {
  it('completes the instance on a valid signal', async () => {
    const id = await startApproval('monitor')
    const signalled = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' } })
    expect(signalled.status).toBe(202)
    expect(signalled.body).toEqual({ delivered: true, duplicate: false })
    const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=5000`)
    expect(done.status).toBe(200)
    expect(done.body).toMatchObject({
      status: 'completed',
      facts: { item: 'monitor', state: 'approved', approvedBy: 'ann' },
      result: { item: 'monitor', state: 'approved', approvedBy: 'ann' },
      error: null,
    })
    const timeline = await p.request('GET', `/v1/instances/${id}/timeline`)
    expect(timeline.body.entries.filter((e: { kind: string }) => e.kind === 'signal.received')).toEqual([
      expect.objectContaining({ data: { name: 'decide', payload: { approve: true, by: 'ann' } } }),
    ])
    expect(timeline.body.entries.filter((e: { kind: string }) => e.kind === 'rule.fired').map((e: { rule: string }) => e.rule)).toEqual(['finish'])
  })

  it('refuses a signal to an ended instance with 409 PRX_INSTANCE_ENDED', async () => {
    const id = await startApproval('keyboard')
    expect((await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: false, by: 'bob' } })).status).toBe(202)
    const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=5000`)
    expect(done.body).toMatchObject({ status: 'completed', facts: { state: 'rejected' }, result: { state: 'rejected', approvedBy: null } })

    const late = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' } })
    expect(late.status).toBe(409)
    expect(late.body).toMatchObject({ error: { code: 'PRX_INSTANCE_ENDED' } })
    const after = await p.request('GET', `/v1/instances/${id}`)
    expect(after.body).toMatchObject({ status: 'completed', revision: done.body.revision, facts: done.body.facts })
    expect(await count("select 1 from praxis.events where instance_id = $1 and kind = 'signal'", [id])).toBe(1)
  })

  it('delivers the same signalId once: the repeat answers duplicate: true', async () => {
    const id = await startApproval('mouse')
    // While an evaluation holds the instance, a signal is queued, not applied, so the instance is
    // still running when the repeat arrives.
    const lock = await holdInstanceLock(TENANT, id)
    try {
      const first = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 'sig-1' })
      expect(first.status).toBe(202)
      expect(first.body).toEqual({ delivered: true, duplicate: false })
      const repeat = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, signalId: 'sig-1' })
      expect(repeat.status).toBe(202)
      expect(repeat.body).toEqual({ delivered: false, duplicate: true })
      // The id is what dedupes, not the payload.
      const sameIdOtherPayload = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: false, by: 'bob' }, signalId: 'sig-1' })
      expect(sameIdOtherPayload.body).toEqual({ delivered: false, duplicate: true })
      expect(await count("select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and kind = 'signal'", [TENANT, id])).toBe(1)
      expect((await p.request('GET', `/v1/instances/${id}`)).body.status).toBe('running')
    } finally {
      await lock.release()
    }
    // What the evaluate job does with the queued signal.
    const summary = await new Evaluator(p.db.pool, new BundleCache()).evaluatePending(TENANT, id, { nowait: false })
    expect(summary).toMatchObject({ instanceId: id, status: 'completed' })
    const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=5000`)
    expect(done.body).toMatchObject({ status: 'completed', facts: { state: 'approved', approvedBy: 'ann' } })
    const timeline = await p.request('GET', `/v1/instances/${id}/timeline`)
    expect(timeline.body.entries.filter((e: { kind: string }) => e.kind === 'signal.received')).toHaveLength(1)
    expect(timeline.body.entries.filter((e: { kind: string }) => e.kind === 'instance.completed')).toHaveLength(1)
  })

  it('answers an unknown signal name with 400 PRX_SIGNAL_UNKNOWN and changes nothing', async () => {
    const id = await startApproval('pen')
    const before = await p.request('GET', `/v1/instances/${id}`)
    const response = await p.request('POST', `/v1/instances/${id}/signals/cancelIt`, { payload: { approve: true, by: 'ann' } })
    expect(response.status).toBe(400)
    expect(response.body.error.code).toBe('PRX_SIGNAL_UNKNOWN')
    expect(response.body.error.message).toMatch(/decide/)
    const malformed = await p.request('POST', `/v1/instances/${id}/signals/-nope`, { payload: null })
    expect(malformed.status).toBe(400)
    expect(malformed.body.error).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'params.name' })] })
    const after = await p.request('GET', `/v1/instances/${id}`)
    expect(after.body).toMatchObject({ status: 'running', revision: before.body.revision, facts: before.body.facts })
    expect(await count('select 1 from praxis.events where instance_id = $1', [id])).toBe(0)
  })

  it('rejects an invalid signal payload with 400 PRX_INPUT_INVALID and leaves facts and revision unchanged', async () => {
    const id = await startApproval('lamp')
    const before = await p.request('GET', `/v1/instances/${id}`)
    const response = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: 'yes' } })
    expect(response.status).toBe(400)
    expect(response.body.error.code).toBe('PRX_INPUT_INVALID')
    expect(response.body.error.details.map((i: { path: string[] }) => i.path.join('.')).sort()).toEqual(['approve', 'by'])
    const noPayload = await p.request('POST', `/v1/instances/${id}/signals/decide`, {})
    expect(noPayload.status).toBe(400)
    expect(noPayload.body.error.code).toBe('PRX_INPUT_INVALID')
    const unknownProperty = await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' }, urgent: true })
    expect(unknownProperty.status).toBe(400)
    expect(unknownProperty.body.error).toMatchObject({ code: 'PRX_BAD_REQUEST', details: [expect.objectContaining({ path: 'body', code: 'unrecognized_keys' })] })

    const after = await p.request('GET', `/v1/instances/${id}`)
    expect(after.body).toMatchObject({ status: 'running', revision: before.body.revision, facts: { item: 'lamp', state: 'pending' } })
    expect(after.body.facts).toEqual(before.body.facts)
    expect(await count('select 1 from praxis.events where instance_id = $1', [id])).toBe(0)
  })
})

describe('deployments', () => {
  it('refuses a bundle that does not load with 400 PRX_BUNDLE_INVALID and keeps serving the active one', async () => {
    const before = await p.request('GET', '/v1/services/approvals/deployments')
    expect(before.status).toBe(200)
    const active = before.body.deployments.find((d: { active: boolean }) => d.active)
    expect(active).toBeDefined()

    const garbage = await p.request('POST', '/v1/services/approvals/deployments', { code: 'this is not js(' })
    expect(garbage.status).toBe(400)
    expect(garbage.body.error.code).toBe('PRX_BUNDLE_INVALID')
    expect(garbage.body.error.message).toMatch(/failed to load/)

    const after = await p.request('GET', '/v1/services/approvals/deployments')
    expect(after.body.deployments).toEqual(before.body.deployments)

    const id = await startApproval('still-served')
    const view = await p.request('GET', `/v1/instances/${id}`)
    expect(view.body).toMatchObject({ status: 'running', bundleVersion: active.version, facts: { item: 'still-served', state: 'pending' } })
    expect((await p.request('POST', `/v1/instances/${id}/signals/decide`, { payload: { approve: true, by: 'ann' } })).status).toBe(202)
    expect((await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=5000`)).body.status).toBe('completed')
  })

  it('rejects a malformed deployment body with 400 PRX_BAD_REQUEST', async () => {
    for (const body of [{}, { code: '' }, { code: 'x', extra: 1 }, { code: approvalsCode, codeHash: 'deadbeef' }]) {
      const response = await p.request('POST', '/v1/services/approvals/deployments', body)
      expect(response.status, JSON.stringify(body).slice(0, 40)).toBe(400)
      expect(response.body.error.code).toBe('PRX_BAD_REQUEST')
    }
  })

  // Regression: code that runs but defines no praxis runtime once answered 500.
  it('refuses a bundle that loads but is not a praxis bundle with 400 PRX_BUNDLE_INVALID', async () => {
    const response = await p.request('POST', '/v1/services/approvals/deployments', { code: 'var notAPraxisBundle = 1' })
    expect(response.body.error.code).toBe('PRX_BUNDLE_INVALID')
    expect(response.status).toBe(400)
  })
})
