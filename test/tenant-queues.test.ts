/**
 * Queues and workers scoped by tenant, on the embedded PostgreSQL: two tenants deploy services of
 * the same name, and each tenant's worker runs its own tenant's invocations only; a job put by
 * hand on a worker's queue that names another tenant is failed without running; a tenant's own
 * stub naming another tenant's function never reaches that tenant's worker; eager dispatch never
 * locks another tenant's job to a worker.
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BundleCache, buildBundle, Evaluator, readGeneratedManifest } from '../platform/engine/index.js'
import { resolveWorkerTenant } from '../platform/cli/worker.js'
import { loadService, startWorker, type WorkerHandle } from '../platform/pools/index.js'
import { evaluateTask, invokeTask, parseInvocationJob } from '../platform/queue/index.js'
import { ensureTenant } from '../platform/store/index.js'
import type { FunctionDefinition } from '../sdk/index.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const OTHER = 'globex'
let p: TestPlatform
let otherKey: string
beforeAll(async () => {
  p = await startTestPlatform()
  otherKey = (await ensureTenant(p.db.pool, OTHER)).apiKey
  // Both tenants deploy a service named counter, and acme deploys video-encoding.
  expect((await deployAs(p.apiKey, 'test/fixtures/counter')).status).toBe(201)
  expect((await deployAs(otherKey, 'test/fixtures/counter')).status).toBe(201)
  expect((await deployAs(p.apiKey, 'examples/video-encoding')).status).toBe(201)
})
afterAll(async () => p?.close())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function deployAs(apiKey: string, dir: string, withManifest = true) {
  const service = (await loadService(dir)).name
  const { code } = await buildBundle(dir)
  const manifest = withManifest ? await readGeneratedManifest(dir) : null
  return p.request('POST', `/v1/services/${service}/deployments`, { code, ...(manifest ? { manifest } : {}) }, apiKey)
}

/** A worker of `tenantId` whose handlers record the invocations it runs. */
async function recordingWorker(tenantId: string, dir: string): Promise<{ worker: WorkerHandle; ran: string[] }> {
  const ran: string[] = []
  const { functions } = await loadService(dir)
  const recording = functions.map((fn): FunctionDefinition => ({ ...fn, handler: (input, context) => { ran.push(context.invocationId); return fn.handler(input, context) } }))
  const worker = await startWorker({ pool: p.db.pool, log: silent, tenantId, functions: recording, concurrency: 4, leaseMs: 15_000 })
  p.workers.push(worker)
  return { worker, ran }
}

async function start(apiKey: string, workflow: string, input: unknown): Promise<string> {
  const started = await p.request('POST', `/v1/workflows/${workflow}/instances`, { input }, apiKey)
  expect(started.status).toBe(201)
  return started.body.id
}

async function waitEnded(apiKey: string, id: string): Promise<any> {
  const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=30000`, undefined, apiKey)
  expect(done.status).toBe(200)
  return done.body
}

async function invocationsOf(tenantId: string, instanceIds: string[]): Promise<{ id: string; status: string }[]> {
  const { rows } = await p.db.pool.query('select id, status from praxis.invocations where tenant_id = $1 and instance_id = any($2::uuid[]) order by id', [tenantId, instanceIds])
  return rows
}

async function jobRow(jobId: string): Promise<{ attempts: number; max_attempts: number; last_error: string | null; locked_by: string | null }> {
  const { rows: [row] } = await p.db.pool.query('select attempts, max_attempts, last_error, locked_by from graphile_worker._private_jobs where id = $1', [jobId])
  return row
}

async function addJob(task: string, payload: unknown): Promise<string> {
  const { rows: [row] } = await p.db.pool.query<{ id: string }>('select (graphile_worker.add_job($1, $2::json)).id::text as id', [task, JSON.stringify(payload)])
  return row!.id
}

const forgedInvocation = (tenantId: string, over: Record<string, unknown> = {}) => ({
  tenant_id: tenantId, id: randomUUID(), instance_id: randomUUID(), rule: 'bump', function: 'bump', pool: 'counter:default', input: { by: 1 }, call_key: null,
  priority: 0, retry: { attempts: 1, backoff: 'fixed', initialDelayMs: 100, maxDelayMs: 100 }, timeout_ms: 1000, attempts: 0, ...over,
})

let acmeCounter: { worker: WorkerHandle; ran: string[] }
let otherCounter: { worker: WorkerHandle; ran: string[] }

describe('queues scoped by tenant', () => {
  it('names every task by tenant, and a worker needs a tenant', async () => {
    expect(invokeTask('acme', 'video-encoding:encoders')).toBe('praxis.invoke.acme.video-encoding:encoders')
    expect(invokeTask('acme', '@child')).toBe('praxis.invoke.acme.@child')
    expect(evaluateTask('acme')).toBe('praxis.evaluate.acme')
    expect(() => invokeTask('acme.other', 'counter:default')).toThrow(/tenant id/)
    await expect(startWorker({ pool: p.db.pool, log: silent, tenantId: undefined as unknown as string, functions: [], concurrency: 1, leaseMs: 15_000 })).rejects.toThrow(/tenant id/)
    await expect(startWorker({ pool: p.db.pool, log: silent, tenantId: 'nobody', functions: [], concurrency: 1, leaseMs: 15_000 })).rejects.toThrow(/tenant nobody does not exist/)
  })

  it('praxis worker serves the tenant given by --tenant, --api-key or the environment, and refuses to start without one', async () => {
    expect(await resolveWorkerTenant(p.db.pool, { tenant: OTHER }, {})).toBe(OTHER)
    expect(await resolveWorkerTenant(p.db.pool, { apiKey: otherKey }, {})).toBe(OTHER)
    expect(await resolveWorkerTenant(p.db.pool, {}, { PRAXIS_TENANT: TENANT })).toBe(TENANT)
    expect(await resolveWorkerTenant(p.db.pool, {}, { PRAXIS_API_KEY: p.apiKey })).toBe(TENANT)
    // A flag wins over the environment.
    expect(await resolveWorkerTenant(p.db.pool, { tenant: OTHER }, { PRAXIS_API_KEY: p.apiKey })).toBe(OTHER)
    await expect(resolveWorkerTenant(p.db.pool, {}, {})).rejects.toThrow(/pass --tenant ID, or --api-key KEY/)
    await expect(resolveWorkerTenant(p.db.pool, { tenant: TENANT, apiKey: otherKey }, {})).rejects.toThrow(/belongs to tenant globex, not acme/)
    await expect(resolveWorkerTenant(p.db.pool, { apiKey: 'prx_nope' }, {})).rejects.toThrow(/belongs to no tenant/)
    await expect(resolveWorkerTenant(p.db.pool, { tenant: 'nobody' }, {})).rejects.toThrow(/tenant nobody does not exist/)
    await expect(resolveWorkerTenant(p.db.pool, { tenant: 'a.b' }, {})).rejects.toThrow(/is not a tenant id/)

    const { PRAXIS_TENANT: _t, PRAXIS_API_KEY: _k, ...env } = process.env
    const cli = spawnSync(process.execPath, ['bin/praxis.js', 'worker', 'test/fixtures/counter'], { env: { ...env, DATABASE_URL: p.db.url }, encoding: 'utf8', timeout: 30_000 })
    expect(cli.status).toBe(1)
    expect(cli.stderr).toMatch(/praxis worker serves one tenant .*pass --tenant ID/)
  })

  it("two tenants with a service of the same name never share a queue: each tenant's worker runs its own invocations only", async () => {
    acmeCounter = await recordingWorker(TENANT, 'test/fixtures/counter')
    const otherIds = await Promise.all([1, 2, 3, 4].map(() => start(otherKey, 'counter', {})))
    const acmeIds = await Promise.all([1, 2, 3, 4].map(() => start(p.apiKey, 'counter', {})))
    for (const id of acmeIds) expect((await waitEnded(p.apiKey, id)).status).toBe('completed')
    const acmeInvocations = await invocationsOf(TENANT, acmeIds)
    expect([...acmeCounter.ran].sort()).toEqual(acmeInvocations.map((i) => i.id))

    // The other tenant's jobs wait on its own queue: acme's worker, idle, never takes them.
    await sleep(500)
    expect((await invocationsOf(OTHER, otherIds)).map((i) => i.status)).toEqual(['pending', 'pending', 'pending', 'pending'])
    const { rows: queues } = await p.db.pool.query(
      "select distinct t.identifier, j.locked_by from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where j.payload->>'tenant_id' = $1", [OTHER])
    expect(queues).toEqual([{ identifier: `praxis.invoke.${OTHER}.counter:default`, locked_by: null }])
    expect(acmeCounter.ran).toHaveLength(4)

    // Its own worker runs them, and nothing of acme's.
    otherCounter = await recordingWorker(OTHER, 'test/fixtures/counter')
    for (const id of otherIds) expect((await waitEnded(otherKey, id)).status).toBe('completed')
    expect([...otherCounter.ran].sort()).toEqual((await invocationsOf(OTHER, otherIds)).map((i) => i.id))
    expect(acmeCounter.ran).toHaveLength(4)
    const { rows: workers } = await p.db.pool.query('select id, tenant_id from praxis.workers where id = any($1) order by tenant_id', [[acmeCounter.worker.id, otherCounter.worker.id]])
    expect(workers.map((w) => w.tenant_id)).toEqual([TENANT, OTHER])
  })

  it('fails for good, without running it, a job on its own queue whose payload names another tenant', async () => {
    const otherInstance = await start(otherKey, 'counter', {})
    await waitEnded(otherKey, otherInstance)
    const before = { ...acmeCounter.worker.stats }
    const forgedInvoke = forgedInvocation(OTHER)
    const forgedChild = forgedInvocation(OTHER, { function: 'counter.counter', pool: '@child', rule: 'start', input: {} })
    const jobs = [
      await addJob(invokeTask(TENANT, 'counter:default'), forgedInvoke),
      await addJob(invokeTask(TENANT, '@child'), forgedChild),
      await addJob(evaluateTask(TENANT), { t: OTHER, i: otherInstance }),
    ]
    // And the other way round: on the other tenant's queue, a job claiming to be acme's.
    const claimed = forgedInvocation(TENANT)
    const reverse = await addJob(invokeTask(OTHER, 'counter:default'), claimed)

    for (const job of [...jobs, reverse]) {
      for (let i = 0; ; i++) {
        const row = await jobRow(job)
        if (row.last_error) break
        if (i > 200) throw new Error(`job ${job} was never refused: ${JSON.stringify(row)}`)
        await sleep(25)
      }
    }
    for (const job of [...jobs, reverse]) {
      const row = await jobRow(job)
      expect(row.last_error).toMatch(/PRX_TENANT_MISMATCH/)
      expect(row).toMatchObject({ attempts: 1, max_attempts: 1, locked_by: null })
    }
    expect(acmeCounter.ran).not.toContain(forgedInvoke.id)
    expect(otherCounter.ran).not.toContain(claimed.id)
    expect(acmeCounter.worker.stats.refused - before.refused).toBe(3)
    expect(otherCounter.worker.stats.refused).toBe(1)
    expect(acmeCounter.worker.stats.evaluations).toBe(before.evaluations)
    // Never taken again.
    await sleep(300)
    for (const job of [...jobs, reverse]) expect((await jobRow(job)).attempts).toBe(1)
    const { rowCount } = await p.db.pool.query("select 1 from praxis.instances where tenant_id = $1 and idempotency_key like 'child:%'", [OTHER])
    expect(rowCount).toBe(0)
  })

  it("never runs a tenant's own stub of another tenant's function on that tenant's worker", async () => {
    const encoder = await recordingWorker(TENANT, 'examples/video-encoding')
    expect((await deployAs(otherKey, 'test/fixtures/spoof-stub', false)).status).toBe(201)
    const spoofed = await start(otherKey, 'spoof', { source: 's3://theirs/secret.mov' })
    let view: any
    for (let i = 0; i < 30; i++) {
      view = (await p.request('GET', `/v1/instances/${spoofed}`, undefined, otherKey)).body
      if (view.status !== 'running') break
      await sleep(50)
    }
    expect(view.status).not.toBe('completed')
    expect(view.facts.chunks).toBeUndefined()
    const invocations = await invocationsOf(OTHER, [spoofed])
    expect(invocations.filter((i) => i.status === 'succeeded')).toEqual([])
    for (const i of invocations) expect(encoder.ran).not.toContain(i.id)
    expect(encoder.worker.stats).toMatchObject({ succeeded: 0, failed: 0, refused: 0 })
    const { rows: queued } = await p.db.pool.query(
      "select t.identifier from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where j.payload->>'instance_id' = $1", [spoofed])
    for (const { identifier } of queued) expect(identifier).toMatch(new RegExp(`^praxis\\.invoke\\.${OTHER}\\.`))

    // The same bundle in the tenant that owns video-encoding runs on its worker.
    expect((await deployAs(p.apiKey, 'test/fixtures/spoof-stub', false)).status).toBe(201)
    const own = await start(p.apiKey, 'spoof', { source: 's3://mine/a.mov' })
    expect(await waitEnded(p.apiKey, own)).toMatchObject({ status: 'completed', facts: { chunks: 6 } })
    expect(encoder.ran).toEqual((await invocationsOf(TENANT, [own])).map((i) => i.id))
  })

  it("eager dispatch locks the next invocation only to a worker of the instance's tenant", async () => {
    // A third tenant, new to every cache, deploys video-encoding; no worker of it runs.
    const THIRD = 'initech'
    const thirdKey = (await ensureTenant(p.db.pool, THIRD)).apiKey
    expect((await deployAs(thirdKey, 'examples/video-encoding')).status).toBe(201)
    const evaluator = new Evaluator(p.db.pool, new BundleCache())
    try {
      // No worker of that tenant serves video-encoding: its splitVideo jobs wait.
      const ids = [
        await start(thirdKey, 'encodeVideo', { source: 's3://in/a.mov', recipe: 'h264', durationSeconds: 20 }),
        await start(thirdKey, 'encodeVideo', { source: 's3://in/b.mov', recipe: 'h264', durationSeconds: 20 }),
      ]
      const pools = ['video-encoding:default', 'video-encoding:encoders']
      const eagerFor = async (instanceId: string, tenantId: string) => {
        const { rows: [job] } = await p.db.pool.query("select payload from graphile_worker._private_jobs where payload->>'instance_id' = $1", [instanceId])
        const invocation = parseInvocationJob(job.payload)
        expect(invocation).toMatchObject({ tenant_id: THIRD, function: 'splitVideo' })
        const owner = `praxis-worker-test-${tenantId}`
        const summary = await evaluator.recordResult(invocation, { status: 'succeeded', output: { chunks: 2 }, attempts: 1 }, evaluator.snapshot(invocation), undefined, { owner, tenantId, pools, tasks: [] })
        const { rows: locked } = await p.db.pool.query('select payload from graphile_worker._private_jobs where locked_by = $1', [owner])
        await p.db.pool.query('update graphile_worker._private_jobs set locked_by = null, locked_at = null where locked_by = $1', [owner])
        return { summary, locked }
      }
      // A worker of acme (serving the same pools) gets nothing locked to it...
      const refused = await eagerFor(ids[0]!, TENANT)
      expect((refused.summary as { invocations: number }).invocations).toBeGreaterThan(0)
      expect((refused.summary as { eager?: unknown }).eager ?? null).toBeNull()
      expect(refused.locked).toEqual([])
      // ...a worker of the instance's own tenant does.
      const taken = await eagerFor(ids[1]!, THIRD)
      expect((taken.summary as { eager?: unknown }).eager).toBeTruthy()
      expect(taken.locked).toHaveLength(1)
      expect(taken.locked[0].payload).toMatchObject({ tenant_id: THIRD, function: 'encodeChunk' })
    } finally {
      await evaluator.close()
    }
  })
})
