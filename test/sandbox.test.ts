/** Rule code that loops forever fails its own instance with a clear error; the platform goes on. */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/looping')).status).toBe(201)
})
afterAll(async () => p?.close())

it('stops an endless loop in rule code, fails only that instance, and keeps serving', async () => {
  const t0 = Date.now()
  const stuck = await p.request('POST', '/v1/workflows/looping/instances', { input: { loop: true } })
  expect(stuck.status).toBe(201)
  // The first evaluation of a bundle loads it (up to 30 s allowed) and then runs its rules under the
  // 1 s rule limit: the loop is not given the loading allowance (it once was: 31 s here).
  expect(Date.now() - t0).toBeLessThan(15_000)
  const failed = await p.request('GET', `/v1/instances/${stuck.body.id}`)
  expect(failed.body.status).toBe('failed')
  expect(failed.body.error).toMatchObject({ details: { code: 'PRX_RULE_TIMEOUT' } })
  expect(failed.body.error.message).toMatch(/ran longer than \d+ ms/)
  expect(failed.body.facts).toEqual({ loop: true, done: false })

  const fine = await p.request('POST', '/v1/workflows/looping/instances', { input: { loop: false } })
  expect(fine.status).toBe(201)
  const done = await p.request('GET', `/v1/instances/${fine.body.id}`)
  expect(done.body).toMatchObject({ status: 'completed', result: { ok: true } })
})
