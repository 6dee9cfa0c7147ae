/**
 * Micro-batches (`ctx.callEach(fn, inputs, { batchSize })`) and deferred calls (`canWaitMs`), end
 * to end with a real worker in this process: jobs of up to batchSize items, a batch handler given
 * the whole batch, each item's result or failure reaching its own reaction or error section
 * exactly once (retries alone, timeouts, a wrong answer), and a deferred call running on idle
 * capacity or by its deadline.
 */
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadService, startWorker, type WorkerHandle } from '../platform/pools/index.js'
import { recordingContext, type Command } from '../sdk/context.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const fixture = await import(pathToFileURL(path.resolve('test/fixtures/queueing/functions.ts')).href) as typeof import('./fixtures/queueing/functions.js')
const { batches, singles, starts } = fixture

let p: TestPlatform
const workers: WorkerHandle[] = []
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/queueing')).status).toBe(201)
})
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop()
  await p.db.pool.query('delete from graphile_worker._private_jobs')
  fixture.resetRecords()
  fixture.resetBatches()
})
afterAll(async () => p?.close())

const worker = async (concurrency = 2): Promise<WorkerHandle> => {
  const { functions } = await loadService('test/fixtures/queueing')
  const w = await startWorker({ pool: p.db.pool, log: silent, tenantId: TENANT, functions, concurrency, leaseMs: 15_000 })
  workers.push(w)
  return w
}
const start = async (workflow: string, input: unknown): Promise<string> => {
  const r = await p.request('POST', `/v1/workflows/${workflow}/instances`, { input })
  expect(r.status).toBe(201)
  return r.body.id as string
}
const waitFor = async (id: string): Promise<{ status: string; facts: any; result: any }> => {
  const r = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=50000`)
  expect(r.body.status).toBe('completed')
  return r.body
}
const timeline = async (id: string): Promise<{ kind: string; data: any }[]> => (await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)).body.entries
const invokeJobs = async (): Promise<{ items: number }[]> => (await p.db.pool.query<{ items: number }>(
  `select coalesce(json_array_length(payload->'items'), 1) as items from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
   where t.identifier like 'praxis.invoke.%' order by j.id`)).rows
const items = (n: number, mode: (i: number) => string = () => 'ok') => Array.from({ length: n }, (_, i) => ({ id: `i${i}`, mode: mode(i) }))
const sorted = (ids: string[]) => [...ids].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))

describe('micro-batches', () => {
  it('queue a fan-out in jobs of up to batchSize, and a batch handler gets each whole batch', async () => {
    const id = await start('batched', { items: items(25), batchSize: 10 })
    // Queued with no worker running: 3 jobs (10, 10, 5), not 25.
    expect((await invokeJobs()).map((j) => j.items).sort()).toEqual([10, 10, 5].sort())
    await worker()
    const done = await waitFor(id)
    expect(batches.map((b) => b.ids.length).sort()).toEqual([10, 10, 5].sort())
    expect(singles).toEqual([])
    // Every item reached its reaction exactly once.
    expect(sorted(done.facts.done)).toEqual(items(25).map((i) => i.id))
    expect(done.facts.failed).toEqual([])
    const succeeded = (await timeline(id)).filter((t) => t.kind === 'invocation.succeeded')
    expect(succeeded).toHaveLength(25)
    expect(new Set(succeeded.map((t) => t.data.invocationId)).size).toBe(25)
    // Stored invocations name their batch.
    const { rows } = await p.db.pool.query('select batch_no, count(*)::int as n from praxis.invocations where tenant_id = $1 and instance_id = $2 group by batch_no order by batch_no', [TENANT, id])
    expect(rows).toEqual([{ batch_no: 0, n: 10 }, { batch_no: 1, n: 10 }, { batch_no: 2, n: 5 }])
  })

  it('run the single handler once per item when the function has no batch handler', async () => {
    const id = await start('batched', { items: items(12), batchSize: 5, plain: true })
    expect((await invokeJobs()).map((j) => j.items).sort()).toEqual([5, 5, 2].sort())
    const w = await worker(1)
    const done = await waitFor(id)
    expect(starts.map((s) => s.id).sort()).toEqual(items(12).map((i) => i.id).sort())
    expect(sorted(done.facts.done)).toEqual(items(12).map((i) => i.id))
    // A batch holds one slot: its items ran one after another.
    expect(fixture.maxRunning()).toBe(1)
    // The worker counts a batch's outcomes just after the commit that completes the instance.
    for (let i = 0; i < 200 && w.stats.succeeded < 12; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(w.stats.succeeded).toBe(12)
  })

  it('retry a failed item alone and send a fatal one to its error section, each exactly once', async () => {
    const modes: Record<number, string> = { 2: 'flaky', 5: 'fatal', 7: 'flaky' }
    const id = await start('batched', { items: items(8, (i) => modes[i] ?? 'ok'), batchSize: 8 })
    await worker()
    const done = await waitFor(id)
    // One batch; the two flaky items ran again alone (their second attempt), not the batch.
    expect(batches).toHaveLength(1)
    expect(singles.map((s) => [s.id, s.attempt]).sort()).toEqual([['i2', 2], ['i7', 2]])
    expect(sorted(done.facts.done)).toEqual(['i0', 'i1', 'i2', 'i3', 'i4', 'i6', 'i7'])
    expect(done.facts.failed).toEqual([{ id: 'i5', kind: 'fatal', attempts: 1 }])
    const entries = await timeline(id)
    expect(entries.filter((t) => t.kind === 'invocation.retrying').map((t) => t.data.attempt)).toEqual([1, 1])
    expect(entries.filter((t) => t.kind === 'invocation.succeeded' || t.kind === 'invocation.failed')).toHaveLength(8)
  })

  it('retry every item when the batch handler throws', async () => {
    const id = await start('batched', { items: items(4, (i) => (i === 0 ? 'throw' : 'ok')), batchSize: 4 })
    await worker()
    const done = await waitFor(id)
    expect(batches).toHaveLength(1)
    expect(singles.map((s) => s.attempt)).toEqual([2, 2, 2, 2])
    expect(sorted(done.facts.done)).toEqual(['i0', 'i1', 'i2', 'i3'])
  })

  it('report a batch that outlives its timeout as a timeout of each item, with the signal aborted', async () => {
    const id = await start('batched', { items: items(3, (i) => (i === 1 ? 'slow' : 'ok')), batchSize: 3 })
    await worker()
    const done = await waitFor(id)
    expect(batches[0]!.aborted()).toBe(true)
    // The retries run alone, through the single handler, and succeed.
    expect(sorted(done.facts.done)).toEqual(['i0', 'i1', 'i2'])
    const retrying = (await timeline(id)).filter((t) => t.kind === 'invocation.retrying')
    expect(retrying.map((t) => t.data.failure.kind)).toEqual(['timeout', 'timeout', 'timeout'])
  })

  it('fail each item, for good, when the batch handler answers the wrong number of results', async () => {
    const id = await start('batched', { items: items(3, (i) => (i === 0 ? 'short' : 'ok')), batchSize: 3 })
    await worker()
    const done = await waitFor(id)
    expect(done.facts.done).toEqual([])
    expect(done.facts.failed.map((f: { kind: string }) => f.kind)).toEqual(['fatal', 'fatal', 'fatal'])
  })

  it('are refused when the batch size is out of range, in rule code and by the host', async () => {
    const commands: Command[] = []
    const ctx = recordingContext<Record<string, never>>(commands, 'rule x')
    for (const batchSize of [0, 1001, 2.5]) {
      expect(() => ctx.callEach(fixture.work, [{ id: 'a', ms: 0 }], { batchSize })).toThrow(/batchSize .* from 1 to 1000/)
    }
    expect(() => ctx.call(fixture.work, { id: 'a', ms: 0 }, { canWaitMs: -1 })).toThrow(/canWaitMs -1/)
    expect(commands).toEqual([])
  })
})

describe('deferred calls', () => {
  it('wait for idle capacity: a call that can wait runs after the backlog, long before its deadline', async () => {
    await start('flood', { tag: 'busy', count: 30, ms: 2 })
    const id = await start('deferred', { id: 'idle', canWaitMs: 600_000 })
    await worker(1)
    await waitFor(id)
    // It ran only once nothing else was ready: after all 30 calls queued before it.
    expect(starts.findIndex((s) => s.id === 'idle')).toBe(30)
  })

  it('run by their deadline under a backlog that would outlast it', async () => {
    // 400 calls of 15 ms each on one slot: about 6 s of work queued ahead of a call that can wait 1.5 s.
    await start('flood', { tag: 'busy', count: 400, ms: 15 })
    const id = await start('deferred', { id: 'soon', canWaitMs: 1500 })
    await worker(1)
    await waitFor(id)
    const at = starts.findIndex((s) => s.id === 'soon')
    // Not at once (the pool was busy), and not after the backlog: raised when its deadline came close.
    expect(at).toBeGreaterThan(0)
    expect(at).toBeLessThan(400)
  })
})
