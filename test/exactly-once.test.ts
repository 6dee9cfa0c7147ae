/**
 * Functions run at least once; reactions run exactly once per invocation. No worker runs here: the
 * tests deliver the invocation's result by hand, twice, in sequence, at once, and while another
 * evaluation holds the instance, and count the reactions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BundleCache, Evaluator, type InvocationResult } from '../platform/engine/index.js'
import { writeEvaluation } from '../platform/queue/index.js'
import { createPool, readInstance, resolveWorkflow, type InvocationRow } from '../platform/store/index.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

const TENANT = 'acme'
const RESULT: InvocationResult = { status: 'succeeded', output: { value: 1 }, attempts: 1 }

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  const deployed = await p.deploy('test/fixtures/counter')
  expect(deployed.status).toBe(201)
})
afterAll(async () => p?.close())

/** A new evaluator, as a separate worker process would have (its own bundle cache). */
const evaluator = (): Evaluator => new Evaluator(p.db.pool, new BundleCache())

/** Starts a counter instance through the API and returns it with its one pending invocation. */
async function startCounter(): Promise<{ id: string; invocation: InvocationRow }> {
  const started = await p.request('POST', '/v1/workflows/counter/instances', { input: {} })
  expect(started.status).toBe(201)
  const id = started.body.id as string
  const { rows } = await p.db.pool.query<InvocationRow>('select * from praxis.invocations where tenant_id = $1 and instance_id = $2', [TENANT, id])
  expect(rows).toHaveLength(1)
  expect(rows[0]).toMatchObject({ function: 'bump', rule: 'bump', status: 'pending', attempts: 0, input: { by: 1 } })
  const view = await p.request('GET', `/v1/instances/${id}`)
  expect(view.body).toMatchObject({ status: 'running', facts: { stage: 'bumping', reactions: 0 } })
  return { id, invocation: rows[0]! }
}

const count = async (sql: string, values: unknown[]): Promise<number> =>
  (await p.db.pool.query<{ n: number }>(`select count(*)::int as n from (${sql}) q`, values)).rows[0]!.n

/** The instance reacted once to its one invocation, completed, and nothing is left to evaluate. */
async function expectReactedOnce(id: string, invocationId: string): Promise<void> {
  const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=5000`)
  expect(done.body).toMatchObject({ status: 'completed', facts: { stage: 'bumping', reactions: 1, lastValue: 1 }, result: { reactions: 1 } })
  const timeline = await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)
  const entries = timeline.body.entries as { kind: string; rule: string | null; data: { invocationId?: string } }[]
  expect(entries.filter((e) => e.kind === 'invocation.succeeded')).toEqual([expect.objectContaining({ rule: 'bump', data: expect.objectContaining({ invocationId }) })])
  expect(entries.filter((e) => e.kind === 'rule.fired').map((e) => e.rule)).toEqual(['bump', 'finish'])
  expect(entries.filter((e) => e.kind === 'instance.completed')).toHaveLength(1)
  const { rows: [invocation] } = await p.db.pool.query('select status, attempts, output from praxis.invocations where tenant_id = $1 and id = $2', [TENANT, invocationId])
  expect(invocation).toEqual({ status: 'succeeded', attempts: 1, output: { value: 1 } })
  expect(await count('select 1 from praxis.invocations where tenant_id = $1 and instance_id = $2', [TENANT, id])).toBe(1)
  expect(await count('select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and consumed_at is null', [TENANT, id])).toBe(0)
}

describe('a result delivered twice reacts once', () => {
  it('ignores the second of two results delivered one after the other', async () => {
    const { id, invocation } = await startCounter()
    const first = await evaluator().recordResult(invocation, RESULT)
    expect(first).toMatchObject({ instanceId: id, status: 'completed' })
    // The same invocation row, as a second worker that also ran the function would hold it.
    const second = await evaluator().recordResult(invocation, RESULT)
    expect(second).toBeNull()
    // A third, from a later attempt with another output, is ignored as well.
    expect(await evaluator().recordResult(invocation, { status: 'succeeded', output: { value: 7 }, attempts: 2 })).toBeNull()
    await expectReactedOnce(id, invocation.id)
  })

  it('reacts once when the two results arrive at the same time', async () => {
    // A few rounds, to meet both orders: one takes the instance lock and the other finds the
    // invocation final, or the other gets in first while the instance is busy and queues.
    for (let round = 0; round < 4; round++) {
      const { id, invocation } = await startCounter()
      const outcomes = await Promise.all([evaluator().recordResult(invocation, RESULT), evaluator().recordResult(invocation, RESULT)])
      expect(outcomes.filter((o) => o === null), JSON.stringify(outcomes)).toHaveLength(1)
      const winner = outcomes.find((o) => o !== null)!
      if (winner === 'queued') {
        const summary = await evaluator().evaluatePending(TENANT, id, { nowait: false })
        expect(summary).toMatchObject({ instanceId: id, status: 'completed' })
      } else {
        expect(winner).toMatchObject({ instanceId: id, status: 'completed' })
      }
      await expectReactedOnce(id, invocation.id)
    }
  })

  it('queues the result when the instance is busy, and reacts once when the evaluate job runs', async () => {
    const { id, invocation } = await startCounter()
    const holder = await p.db.pool.connect()
    let held = true
    try {
      await holder.query('begin')
      await holder.query('select 1 from praxis.instances where tenant_id = $1 and id = $2 for no key update', [TENANT, id])

      expect(await evaluator().recordResult(invocation, RESULT)).toBe('queued')
      const { rows: events } = await p.db.pool.query('select kind, payload, consumed_at from praxis.events where tenant_id = $1 and instance_id = $2', [TENANT, id])
      expect(events).toEqual([{ kind: 'result', payload: { invocationId: invocation.id }, consumed_at: null }])
      expect(await count(`select 1 from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'praxis.evaluate.acme' and j.payload->>'i' = $1`, [id])).toBe(1)
      // The result is final already; the reaction waits for the evaluation.
      const { rows: [row] } = await p.db.pool.query('select status from praxis.invocations where tenant_id = $1 and id = $2', [TENANT, invocation.id])
      expect(row).toEqual({ status: 'succeeded' })
      expect((await p.request('GET', `/v1/instances/${id}`)).body).toMatchObject({ status: 'running', facts: { reactions: 0 } })

      // A duplicate while still busy: not queued a second time.
      expect(await evaluator().recordResult(invocation, RESULT)).toBeNull()
      expect(await count('select 1 from praxis.events where tenant_id = $1 and instance_id = $2', [TENANT, id])).toBe(1)
      // The evaluate job, running now, would find the instance busy too and leave it be.
      expect(await evaluator().evaluatePending(TENANT, id, { nowait: true })).toBeNull()

      await holder.query('commit')
      held = false
    } finally {
      if (held) await holder.query('rollback').catch(() => undefined)
      holder.release()
    }

    const summary = await evaluator().evaluatePending(TENANT, id, { nowait: false })
    expect(summary).toMatchObject({ instanceId: id, status: 'completed' })
    await expectReactedOnce(id, invocation.id)
    // Running the evaluate job again, or delivering the result again, changes nothing.
    expect(await evaluator().evaluatePending(TENANT, id, { nowait: false })).toBeNull()
    expect(await evaluator().recordResult(invocation, RESULT)).toBeNull()
    await expectReactedOnce(id, invocation.id)
  })
})

describe('the optimistic fused step (a snapshot read while the function ran)', () => {
  it('applies the result in one write when the instance did not move', async () => {
    const { id, invocation } = await startCounter()
    const e = evaluator()
    const summary = await e.recordResult(invocation, RESULT, e.snapshot(invocation))
    expect(summary).toMatchObject({ instanceId: id, status: 'completed' })
    await expectReactedOnce(id, invocation.id)
  })

  it("completes the invocation's own queue job in the same commit, so a crash after it cannot run the function again", async () => {
    const jobsOf = async (invocationId: string): Promise<string[]> => (await p.db.pool.query<{ id: string }>(
      "select j.id::text from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'praxis.invoke.acme.counter:default' and j.payload->>'id' = $1",
      [invocationId])).rows.map((r) => r.id)
    // As graphile-worker would hand it out to a worker.
    const take = async (jobId: string | undefined): Promise<{ id: string; lockedBy: string }> => {
      await p.db.pool.query("update graphile_worker._private_jobs set locked_by = 'test-worker', locked_at = now(), attempts = attempts + 1 where id = $1", [jobId])
      return { id: jobId!, lockedBy: 'test-worker' }
    }
    const e = evaluator()
    // The optimistic write deletes the job with everything else.
    const fresh = await startCounter()
    const [job] = await jobsOf(fresh.invocation.id)
    expect(job).toBeDefined()
    expect(await e.recordResult(fresh.invocation, RESULT, e.snapshot(fresh.invocation), await take(job))).toMatchObject({ instanceId: fresh.id, status: 'completed' })
    expect(await jobsOf(fresh.invocation.id)).toEqual([])
    await expectReactedOnce(fresh.id, fresh.invocation.id)
    // A snapshot the instance has moved past: the locked path records the result and leaves the job to the worker.
    const moved = await startCounter()
    const [movedJob] = await jobsOf(moved.invocation.id)
    const stale = { ...(await e.snapshot(moved.invocation))!, revision: 0 }
    expect(await e.recordResult(moved.invocation, RESULT, Promise.resolve(stale), await take(movedJob))).toMatchObject({ status: 'completed' })
    expect(await jobsOf(moved.invocation.id)).toEqual([movedJob])
    await expectReactedOnce(moved.id, moved.invocation.id)
  })

  it('ignores a duplicate result whose snapshot predates the first', async () => {
    const { id, invocation } = await startCounter()
    const e = evaluator()
    const early = e.snapshot(invocation)
    const late = e.snapshot(invocation)
    expect(await e.recordResult(invocation, RESULT, early)).toMatchObject({ status: 'completed' })
    expect(await e.recordResult(invocation, RESULT, late)).toBeNull()
    await expectReactedOnce(id, invocation.id)
  })

  it('falls back to the locked path when the instance moved after the snapshot, writing nothing twice', async () => {
    const { id, invocation } = await startCounter()
    const e = evaluator()
    const stale = await e.snapshot(invocation)
    // Another evaluation changes the instance meanwhile (here: its facts and revision directly).
    await p.db.pool.query(`update praxis.instances set revision = revision + 1, facts = facts || '{"reactions": 10}' where tenant_id = $1 and id = $2`, [TENANT, id])
    const summary = await e.recordResult(invocation, RESULT, Promise.resolve(stale))
    expect(summary).toMatchObject({ instanceId: id, status: 'completed', revision: stale!.revision + 2 })
    // The reaction ran on the current facts (10 + 1), not on the snapshot's (0 + 1), once.
    const done = await p.request('GET', `/v1/instances/${id}`)
    expect(done.body).toMatchObject({ status: 'completed', facts: { reactions: 11, lastValue: 1 }, result: { reactions: 11 } })
    expect(await count("select 1 from praxis.timeline where tenant_id = $1 and instance_id = $2 and kind = 'invocation.succeeded'", [TENANT, id])).toBe(1)
    const { rows: [row] } = await p.db.pool.query('select status, attempts from praxis.invocations where tenant_id = $1 and id = $2', [TENANT, invocation.id])
    expect(row).toEqual({ status: 'succeeded', attempts: 1 })
  })

  it('reacts once when two optimistic results race', async () => {
    for (let round = 0; round < 4; round++) {
      const { id, invocation } = await startCounter()
      const [a, b] = [evaluator(), evaluator()]
      const outcomes = await Promise.all([a.recordResult(invocation, RESULT, a.snapshot(invocation)), b.recordResult(invocation, RESULT, b.snapshot(invocation))])
      expect(outcomes.filter((o) => o === null), JSON.stringify(outcomes)).toHaveLength(1)
      await expectReactedOnce(id, invocation.id)
    }
  })
})

describe('the invoke job', () => {
  it('carries the instance as the evaluation left it, so the worker need not read it', async () => {
    const { id, invocation } = await startCounter()
    const { rows: [job] } = await p.db.pool.query(`select j.payload from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'praxis.invoke.acme.counter:default' and j.payload->>'id' = $1`, [invocation.id])
    const view = await p.request('GET', `/v1/instances/${id}`)
    expect(job.payload).toMatchObject({ id: invocation.id, instance_id: id, rule: 'bump', attempts: 0, snapshot: { revision: view.body.revision, status: 'running', workflow: 'counter', facts: view.body.facts } })
    // A stale payload snapshot is only a hint: the revision guard sends the step to the locked path.
    await p.db.pool.query('update praxis.instances set revision = revision + 1 where tenant_id = $1 and id = $2', [TENANT, id])
    const e = evaluator()
    const snapshot = Promise.resolve({ ...job.payload.snapshot, tenant_id: TENANT, id, pending: [] })
    expect(await e.recordResult(invocation, RESULT, snapshot)).toMatchObject({ status: 'completed', revision: view.body.revision + 2 })
    await expectReactedOnce(id, invocation.id)
  })
})

describe('the evaluation write never strands an invocation', () => {
  it('rolls back, with 40001, a write whose invocation has no graphile-worker task to queue on', async () => {
    const { id } = await startCounter()
    const before = (await readInstance(p.db.pool, TENANT, id))!
    const invocations = await count('select 1 from praxis.invocations where tenant_id = $1 and instance_id = $2', [TENANT, id])
    const write = writeEvaluation(p.db.pool, {
      tenantId: TENANT, instanceId: id, bundleId: before.bundle_id, status: 'running', facts: { ...before.facts, stage: 'elsewhere' }, ruleState: before.rule_state,
      result: null, error: null, timeline: [], consumedEventIds: [], ended: false,
      calls: [{ rule: 'bump', function: 'bump', pool: 'never-served-pool', input: { by: 1 }, key: null, priority: 0, retry: { attempts: 1 }, timeoutMs: 1000, fairnessKey: null, batch: null, canWaitMs: null }],
    })
    await expect(write).rejects.toMatchObject({ code: '40001', message: expect.stringMatching(/an invocation has no job/) })
    const after = (await readInstance(p.db.pool, TENANT, id))!
    expect(after.revision).toBe(before.revision)
    expect(after.facts).toEqual(before.facts)
    expect(await count('select 1 from praxis.invocations where tenant_id = $1 and instance_id = $2', [TENANT, id])).toBe(invocations)
  })

  it('creates task rows on a connection of its own: starts filling a small pool do not deadlock', async () => {
    const small = createPool(p.db.url, 2)
    const e = new Evaluator(small, new BundleCache())
    try {
      const [target] = await resolveWorkflow(small, TENANT, 'counter')
      // Each start holds a pooled connection in its transaction when it creates the task row.
      const started = await Promise.all([1, 2, 3].map(() => e.start(TENANT, target!, {}, null)))
      expect(started.map((s) => s.summary?.invocations)).toEqual([1, 1, 1])
    } finally {
      await e.close()
      await small.end()
    }
  })
})
