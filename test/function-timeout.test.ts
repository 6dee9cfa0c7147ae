/**
 * A function that overruns its timeout fails as a timeout: its signal is aborted (with the
 * standard TimeoutError reason, not a PRX_INTERNAL error as on main), whatever it throws then is
 * a timeout, and the rule's error section gets `kind: 'timeout'`.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/timeouts')).status).toBe(201)
  await p.startWorker('test/fixtures/timeouts')
})
afterAll(async () => p?.close())

it('reports an overrun as a timeout when the handler stops on its aborted signal', async () => {
  const started = await p.request('POST', '/v1/workflows/nap/instances', { input: { ms: 5000 } })
  const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`)
  expect(done.body.status).toBe('completed')
  expect(done.body.facts.failure).toEqual({ kind: 'timeout', message: 'sleepy did not finish within 200 ms' })
})

it('lets a function that finishes in time succeed', async () => {
  const started = await p.request('POST', '/v1/workflows/nap/instances', { input: { ms: 10 } })
  const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`)
  expect(done.body).toMatchObject({ status: 'completed', result: { slept: 10 } })
})
