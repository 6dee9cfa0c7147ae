/**
 * No invocation stays pending for ever. Found on main: a job that failed for a reason outside the
 * function (the function missing on the worker, a sandbox or database error, a crash loop) used up
 * graphile-worker's attempts and was left failed, its invocation `pending` and its instance
 * `running`, with nothing in the timeline. Now the job's last attempt records a fatal failure
 * through the normal path: the rule's error section runs, or the instance fails saying why.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { loadService, startWorker } from '../platform/pools/index.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/crashy')).status).toBe(201)
})
afterAll(async () => p?.close())

it('fails the invocation for good when its job fails its last attempt outside the function', async () => {
  const started = await p.request('POST', '/v1/workflows/crashy/instances', { input: { n: 31, warm: false } })
  expect(started.status).toBe(201)
  // One attempt left, on a worker of the pool that lacks the function (an older functions.ts).
  await p.db.pool.query("update graphile_worker._private_jobs set max_attempts = 1 where payload->>'instance_id' = $1", [started.body.id])
  const { functions } = await loadService('test/fixtures/crashy')
  const worker = await startWorker({ pool: p.db.pool, log: silent, tenantId: TENANT, functions: functions.filter((f) => f.name !== 'slowStep'), concurrency: 2, leaseMs: 15_000 })
  p.workers.push(worker)

  const ended = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`)
  expect(ended.body.status).toBe('failed')
  expect(ended.body.error.details).toMatchObject({ code: 'PRX_FUNCTION_FAILED', function: 'slowStep' })
  expect(ended.body.error.message).toMatch(/failed 1 times outside the function \(last: .*slowStep.*\); the platform gave up/)
  const { rows } = await p.db.pool.query("select status, failure->>'kind' as kind from praxis.invocations where instance_id = $1", [started.body.id])
  expect(rows).toEqual([{ status: 'failed', kind: 'fatal' }])
  const timeline = await p.request('GET', `/v1/instances/${started.body.id}/timeline`)
  expect(timeline.body.entries.map((e: { kind: string }) => e.kind)).toContain('invocation.failed')
})
