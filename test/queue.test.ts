/**
 * The queue end to end, with a real worker in this process (so the fixture's records of which
 * call started when can be read directly): eager chains inside the worker's slots and bounded,
 * priority under a backlog, fair share between the values of a fairness key, event order in the
 * fused step (an event queued before a result is applied first, whatever the facts' size), the
 * optimistic write's NOWAIT, a lost run counted as an attempt, and stray eager locks released.
 */
import path from 'node:path'
import pino from 'pino'
import { loadConfig } from '../platform/config.js'
import { pathToFileURL } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { checkCaps, loadService, startWorker, type CapsOptions, type WorkerHandle } from '../platform/pools/index.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

// The module the worker runs (loadService imports it by its file URL): its records are these.
const { holding, maxRunning, release, releaseAll, resetRecords, starts, work } = await import(pathToFileURL(path.resolve('test/fixtures/queueing/functions.ts')).href) as typeof import('./fixtures/queueing/functions.js')

let p: TestPlatform
const workers: WorkerHandle[] = []
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/queueing')).status).toBe(201)
})
afterEach(async () => {
  releaseAll()
  for (const w of workers.splice(0)) await w.stop()
  // Whatever a test left queued is not the next one's backlog.
  await p.db.pool.query('delete from graphile_worker._private_jobs')
  resetRecords()
})
afterAll(async () => p?.close())

const worker = async (options: { concurrency: number; evaluate?: boolean; leaseMs?: number; dir?: string; caps?: CapsOptions }): Promise<WorkerHandle> => {
  const { functions } = await loadService(options.dir ?? 'test/fixtures/queueing')
  const w = await startWorker({ pool: p.db.pool, log: process.env.TEST_LOG ? pino({ level: process.env.TEST_LOG }) : silent, tenantId: TENANT, functions, concurrency: options.concurrency, leaseMs: options.leaseMs ?? 15_000, evaluate: options.evaluate ?? true, ...(options.caps ? { caps: options.caps } : {}) })
  workers.push(w)
  return w
}
const start = async (workflow: string, input: unknown): Promise<string> => {
  const r = await p.request('POST', `/v1/workflows/${workflow}/instances`, { input })
  expect(r.status).toBe(201)
  return r.body.id
}
const until = async <T>(what: string, probe: () => T | Promise<T>, timeoutMs = 50_000): Promise<NonNullable<T>> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
const startIndex = (id: string): number => starts.findIndex((s) => s.id === id)
const waitFor = async (id: string, status = 'completed') => {
  const r = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=50000`)
  expect(r.body.status).toBe(status)
  return r.body
}
const timeline = async (id: string): Promise<{ kind: string; rule: string | null; data: any }[]> => (await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)).body.entries

describe('eager chains', () => {
  it('run inside the worker\'s slots: never more handlers at once than its concurrency', async () => {
    // Sequential chains (eager dispatch) next to a backlog the queue hands out: on main the chains
    // ran beside graphile-worker's own slots, up to twice the concurrency.
    await start('flood', { tag: 'backlog', count: 40, ms: 5 })
    for (let i = 0; i < 2; i++) await start('chain', { tag: `c${i}`, steps: 15, ms: 5 })
    await worker({ concurrency: 2 })
    await until('40 backlog jobs and 30 chain steps', () => starts.length >= 70)
    expect(maxRunning()).toBeLessThanOrEqual(2)
    expect(starts.filter((s) => s.running > 2)).toEqual([])
  })

  it('return to the queue after a bounded number of steps', async () => {
    const w = await worker({ concurrency: 1 })
    const id = await start('chain', { tag: 'long', steps: 100 })
    await waitFor(id)
    // The instance completes in the last step's commit; the worker counts it just after.
    await until('the worker to count the last step', () => w.stats.succeeded + w.stats.duplicate >= 100)
    // 32 steps at most per chain: at least 3 of the 100 went through the queue (main: 99 eager).
    expect(w.stats.succeeded).toBe(100)
    expect(w.stats.eager).toBeLessThanOrEqual(100 - 3)
    expect(w.stats.eager).toBeGreaterThan(50)
  })
})

describe('concurrency caps', () => {
  it('never runs more of a pool than its cap, eager chains included, while the rest of the slots stay free for others', async () => {
    await start('flood', { tag: 'capped', count: 40, ms: 10 })
    for (let i = 0; i < 2; i++) await start('chain', { tag: `capchain${i}`, steps: 10, ms: 10 })
    const w = await worker({ concurrency: 4, caps: { pools: { 'queueing:default': 2 } } })
    await until('the flood and the chains', () => starts.length >= 60)
    // Sampled at every start: the running count never went past the cap (main had no caps: 4).
    expect(maxRunning()).toBe(2)
    expect(starts.filter((s) => s.running > 2)).toEqual([])
    expect(w.stats.succeeded).toBeGreaterThan(0)
  })

  it('holds a service cap over its pools, and refuses a child cap above its parent', async () => {
    await start('flood', { tag: 'svc', count: 30, ms: 10 })
    await worker({ concurrency: 4, caps: { services: { queueing: 3 } } })
    await until('the flood', () => starts.length >= 30)
    expect(maxRunning()).toBeLessThanOrEqual(3)
    expect(() => checkCaps({ services: { queueing: 2 }, pools: { 'queueing:default': 3 } }, 4)).toThrow("pool queueing:default is capped at 3, more than its service's cap of 2: a pool's cap cannot exceed its parent's")
    expect(() => checkCaps({ services: { queueing: 5 } }, 4)).toThrow("service queueing is capped at 5, more than the worker's concurrency of 4")
    await expect(worker({ concurrency: 2, caps: { pools: { 'queueing:default': 3 } } })).rejects.toThrow("more than its worker's concurrency of 2")
    // praxis worker takes them from PRAXIS_CAPS.
    expect(loadConfig({ PRAXIS_CAPS: 'queueing=3, queueing:default=2' }).caps).toEqual({ services: { queueing: 3 }, pools: { 'queueing:default': 2 } })
    expect(() => loadConfig({ PRAXIS_CAPS: 'queueing=lots' })).toThrow('PRAXIS_CAPS: write caps as service=N or service:pool=N, comma-separated')
  })
})

describe('priority', () => {
  it('a high-priority call overtakes a backlog of 10,000 and a running eager chain', async () => {
    // A long sequential workflow (an eager chain once a worker runs it; above the backlog's
    // priority), then 10,000 low-priority invocations, queued before any worker runs.
    await start('chain', { tag: 'chain', steps: 1000, priority: 0, ms: 1 })
    for (let i = 0; i < 10; i++) await start('flood', { tag: `low${i}`, count: 1000, priority: -5 })
    const { rows: [queued] } = await p.db.pool.query("select count(*)::int as n from graphile_worker._private_jobs")
    expect(queued.n).toBeGreaterThanOrEqual(10_000)
    const concurrency = 2
    await worker({ concurrency })
    await until('the backlog and the chain running', () => starts.length >= 50 && starts.some((s) => s.id.startsWith('chain-3')))
    await start('flood', { tag: 'high', count: 1, priority: 10 })
    const enqueuedAt = starts.length
    await until('the high-priority call to start', () => startIndex('high-0') >= 0)
    // Only calls already handed out when it was queued may start before it.
    expect(startIndex('high-0') - enqueuedAt).toBeLessThanOrEqual(concurrency)
  }, 180_000)
})

describe('fair share', () => {
  it('starts the calls of one flow in the order they were called', async () => {
    // Placed by rank in their flow: on main the rank followed the invocations' random uuids.
    await start('flood', { tag: 'ord', count: 40 })
    await worker({ concurrency: 1 })
    await until('40 calls', () => starts.length >= 40)
    expect(starts.map((s) => s.id)).toEqual(Array.from({ length: 40 }, (_, i) => `ord-${i}`))
  })

  it('interleaves the values of a fairness key: a quiet key does not wait behind another key\'s flood', async () => {
    await start('flood', { tag: 'loud', count: 300, key: 'customer-a' })
    await worker({ concurrency: 1 })
    await until('the flood to be running', () => starts.length >= 20)
    await start('flood', { tag: 'quiet', count: 1, key: 'customer-b' })
    const queuedAt = starts.length
    await until('the quiet call to start', () => startIndex('quiet-0') >= 0)
    // First come, first served (main), it would start after the rest of the flood (~280 calls).
    expect(startIndex('quiet-0') - queuedAt).toBeLessThan(25)
    expect(starts.filter((s) => s.id.startsWith('loud-')).length).toBeLessThan(200)
  })

  it('places jobs by virtual time: a flood spreads out, a new flow starts at the head', async () => {
    await start('flood', { tag: 'vt-a', count: 100, key: 'a' })
    await start('flood', { tag: 'vt-b', count: 2, key: 'b' })
    const { rows } = await p.db.pool.query<{ id: string; run_at: Date }>("select payload->'input'->>'id' as id, run_at from graphile_worker._private_jobs where payload->>'function' = 'work' order by priority, run_at, id")
    const order = rows.map((r) => r.id)
    // b's two calls sort among a's first few, not after all hundred; every run_at is in the past.
    expect(order.indexOf('vt-b-1')).toBeLessThan(5)
    expect(rows.every((r) => r.run_at.getTime() < Date.now())).toBe(true)
  })
})

describe('event order in the fused step', () => {
  for (const [size, pad] of [['small', ''], ['large (over the 8 KB snapshot limit)', 'x'.repeat(10_000)]] as const) {
    it(`applies a signal queued before a result first, with ${size} facts`, async () => {
      // No evaluate jobs here: the queued signal is consumed by the result's own step or not at all.
      await worker({ concurrency: 2, evaluate: false })
      const key = `order-${pad.length}`
      const id = await start('ordered', { id: key, pad })
      await holding(key)
      // The signal arrives while another evaluation holds the instance: it is queued, not applied.
      const blocker = await p.db.pool.connect()
      try {
        await blocker.query('begin')
        await blocker.query('select 1 from praxis.instances where id = $1 for no key update', [id])
        const signal = await p.request('POST', `/v1/instances/${id}/signals/mode`, { payload: { mode: 'after' } })
        expect(signal.status).toBeLessThan(300)
      } finally {
        await blocker.query('rollback')
        blocker.release()
      }
      const { rows: [pending] } = await p.db.pool.query('select count(*)::int as n from praxis.events where instance_id = $1 and consumed_at is null', [id])
      expect(pending.n).toBe(1)
      release(key)
      const done = await waitFor(id)
      expect(done.result).toEqual({ modeAtResult: 'after' })
      const kinds = (await timeline(id)).map((e) => e.kind)
      expect(kinds.indexOf('signal.received')).toBeGreaterThan(-1)
      expect(kinds.indexOf('signal.received')).toBeLessThan(kinds.indexOf('invocation.succeeded'))
    })
  }

  it('does not wait for an instance another evaluation holds (NOWAIT): the result is queued at once', async () => {
    await worker({ concurrency: 2, evaluate: false })
    const id = await start('ordered', { id: 'nowait' })
    await holding('nowait')
    const blocker = await p.db.pool.connect()
    try {
      await blocker.query('begin')
      await blocker.query('select 1 from praxis.instances where id = $1 for no key update', [id])
      release('nowait')
      // While the lock is held, the result is recorded and queued as an event (main: the step waited on the lock).
      await until('the result to be recorded', async () => {
        const { rows } = await p.db.pool.query("select 1 from praxis.invocations where instance_id = $1 and status = 'succeeded'", [id])
        return rows.length > 0
      }, 10_000)
      const { rows: events } = await p.db.pool.query("select kind from praxis.events where instance_id = $1 and consumed_at is null", [id])
      expect(events).toEqual([{ kind: 'result' }])
    } finally {
      await blocker.query('rollback')
      blocker.release()
    }
    // An evaluate job then applies it.
    await worker({ concurrency: 1 })
    expect((await waitFor(id)).result).toEqual({ modeAtResult: 'before' })
  })
})

describe('attempts', () => {
  it('counts a run lost with its worker as an attempt, in the timeline and in the handler\'s attempt number', async () => {
    const id = await start('chain', { tag: 'lost', steps: 1 })
    // As if a worker took the job and died: the sweeper released it, with graphile-worker's count of 1.
    await p.db.pool.query("update graphile_worker._private_jobs set attempts = 1 where payload->>'instance_id' = $1", [id])
    await worker({ concurrency: 1 })
    await waitFor(id)
    expect(starts.find((s) => s.id === 'lost-0')?.attempt).toBe(2)
    const lost = (await timeline(id)).filter((e) => e.kind === 'invocation.lost')
    expect(lost).toEqual([expect.objectContaining({ rule: 'step', data: expect.objectContaining({ attempt: 1, failure: expect.objectContaining({ kind: 'lost' }) }) })])
  })

  it('fails an invocation whose lost runs used up its attempts as `lost`, without running it again', async () => {
    const id = await start('chain', { tag: 'gone', steps: 1 })
    expect(work.retry.attempts).toBe(3)
    await p.db.pool.query("update graphile_worker._private_jobs set attempts = 3 where payload->>'instance_id' = $1", [id])
    await worker({ concurrency: 1 })
    const failed = await waitFor(id, 'failed')
    expect(starts.some((s) => s.id === 'gone-0')).toBe(false)
    expect(failed.error.details.failure).toMatchObject({ kind: 'lost', attempts: 3 })
    expect((await timeline(id)).filter((e) => e.kind === 'invocation.lost').map((e) => e.data.attempt)).toEqual([1, 2, 3])
  })
})

describe('a job that fails outside the function', () => {
  it('runs again after the retry policy\'s delay at the head of the queue, not behind the backlog', async () => {
    // A worker of an older functions.ts (no `hold`) fetches the call and fails it outside the
    // function. On main graphile-worker's own retry put the job at a wall-clock time, e^attempts
    // seconds on, which sorts behind every fairly placed job: it waited for the whole backlog.
    const { functions } = await loadService('test/fixtures/queueing')
    const stale = await startWorker({ pool: p.db.pool, log: silent, tenantId: TENANT, functions: functions.filter((f) => f.name !== 'hold'), concurrency: 1, leaseMs: 15_000 })
    workers.push(stale)
    const id = await start('ordered', { id: 'again' })
    await until('the stale worker to fail the job', async () => (await p.db.pool.query(
      "select 1 from graphile_worker._private_jobs where payload->>'instance_id' = $1 and attempts = 1 and locked_at is null and last_error is not null", [id])).rowCount)
    await stale.stop()
    workers.splice(workers.indexOf(stale), 1)
    // 300 calls of 10 ms queued after it: 3 s of work for one slot.
    await start('flood', { tag: 'after', count: 300, ms: 10 })
    await worker({ concurrency: 1 })
    await holding('again')
    expect(starts.length).toBeLessThan(100)
    release('again')
    await waitFor(id)
    expect((await timeline(id)).filter((e) => e.kind === 'invocation.lost').map((e) => e.data.attempt)).toEqual([1])
  })
})

describe('leases', () => {
  it('releases a job locked to a live worker that is not running it (an eager chain lost after its commit)', async () => {
    // A worker of another service: it holds the stray job but can never run it.
    const holder = await worker({ concurrency: 1, leaseMs: 1000, dir: 'test/fixtures/counter' })
    const id = await start('chain', { tag: 'stray', steps: 1 })
    await p.db.pool.query("update graphile_worker._private_jobs set locked_by = $2, locked_at = now() - interval '5 seconds', attempts = 1 where payload->>'instance_id' = $1", [id, holder.id])
    await until('the stray job to be released', async () => {
      const { rows } = await p.db.pool.query("select locked_by from graphile_worker._private_jobs where payload->>'instance_id' = $1", [id])
      return rows[0]?.locked_by === null
    }, 10_000)
    await worker({ concurrency: 1 })
    await waitFor(id)
  })
})
