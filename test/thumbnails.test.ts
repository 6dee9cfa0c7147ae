/** The thumbnails example: an error section recovers from a function that fails for good. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('examples/thumbnails')).status).toBe(201)
  await p.startWorker('examples/thumbnails')
})
afterAll(async () => p?.close())

async function run(image: string) {
  const started = await p.request('POST', '/v1/workflows/makeThumbnail/instances', { input: { image, width: 200 } })
  expect(started.status).toBe(201)
  const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=30000`)
  const timeline = await p.request('GET', `/v1/instances/${started.body.id}/timeline?limit=1000`)
  return { done: done.body, kinds: timeline.body.entries.map((e: { kind: string; rule: string | null }) => `${e.kind}${e.rule ? `:${e.rule}` : ''}`) }
}

describe('error sections', () => {
  it('renders normally when the function succeeds', async () => {
    const { done } = await run('s3://img/cat.png')
    expect(done.status).toBe('completed')
    expect(done.result).toEqual({ thumbnail: 's3://img/cat.png.w200.jpg', recovered: false })
  })

  it('recovers after the retries of a transient failure are spent', async () => {
    const { done, kinds } = await run('broken://img/dog.png')
    expect(done.status).toBe('completed')
    expect(done.facts.problem).toEqual({ kind: 'retryable', message: 'storage did not answer for broken://img/dog.png', attempts: 3 })
    expect(done.result).toEqual({ thumbnail: 'placeholder://thumbnail.w200.jpg', recovered: true })
    expect(kinds).toContain('invocation.failed:render')
    expect(kinds.filter((k: string) => k === 'rule.fired:fallback')).toHaveLength(1)
    // Every failed attempt is in the timeline, not only the last (found on main: only `attempts: 3` showed).
    expect(kinds.filter((k: string) => k === 'invocation.retrying:render')).toHaveLength(2)
  })

  it('recovers at once from a fatal failure, without retrying', async () => {
    const { done } = await run('s3://img/bad.corrupt')
    expect(done.status).toBe('completed')
    expect(done.facts.problem).toMatchObject({ kind: 'fatal', attempts: 1 })
  })
})
