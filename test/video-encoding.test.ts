import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  const deployed = await p.deploy('examples/video-encoding')
  expect(deployed.status).toBe(201)
  await p.startWorker('examples/video-encoding')
})
afterAll(async () => p?.close())

describe('the video-encoding example, end to end through the API', () => {
  it('splits, encodes the chunks in parallel, assembles once, indexes once and completes', async () => {
    const started = await p.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: 's3://in/trailer.mov', recipe: 'h264-1080p', durationSeconds: 150 } })
    expect(started.body).toMatchObject({ status: 'running' })
    expect(started.status).toBe(201)
    const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=30000`)
    expect(done.body.status).toBe('completed')
    expect(done.body.facts.chunkCount).toBe(5)
    expect(done.body.facts.encoded).toBe(5)
    expect(Object.keys(done.body.facts.chunks).sort()).toEqual(['0', '1', '2', '3', '4'])
    expect(done.body.result).toEqual({ video: 's3://in/trailer.mov.h264-1080p.mp4', bytes: expect.any(Number), index: 's3://in/trailer.mov.h264-1080p.mp4.idx', chunks: 5 })

    const timeline = await p.request('GET', `/v1/instances/${started.body.id}/timeline?limit=1000`)
    const fired = timeline.body.entries.filter((e: any) => e.kind === 'rule.fired').map((e: any) => e.rule)
    expect(fired).toEqual(['split', 'encode', 'assemble', 'index', 'finish'])
    const succeeded = timeline.body.entries.filter((e: any) => e.kind === 'invocation.succeeded').map((e: any) => e.data.function)
    expect(succeeded.filter((f: string) => f === 'encodeChunk')).toHaveLength(5)
    expect(succeeded.filter((f: string) => f === 'assembleVideo')).toHaveLength(1)
    expect(succeeded.filter((f: string) => f === 'indexVideo')).toHaveLength(1)
  })
})

describe('version 2 of the example (examples/v2/video-encoding), deployed over version 1', () => {
  it('re-encodes the videos already done with h264, reopening them, without starting a workflow', async () => {
    const start = async (recipe: string) => (await p.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: `s3://in/${recipe}.mov`, recipe, durationSeconds: 60 } })).body.id as string
    const old = await start('h264')
    const other = await start('vp9')
    const wait = async (id: string) => (await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=30000`)).body
    expect(await wait(old)).toMatchObject({ status: 'completed', result: { video: 's3://in/h264.mov.h264.mp4' } })
    expect((await wait(other)).status).toBe('completed')
    const { rows: [before] } = await p.db.pool.query<{ n: number }>('select count(*)::int as n from praxis.instances')

    const v2 = await p.deploy('examples/v2/video-encoding')
    expect(v2.status).toBe(201)
    expect(v2.body.changes).toEqual([{ workflow: 'encodeVideo', added: ['upgrade'], changed: ['encode'], removed: [] }])
    const deadline = Date.now() + 30_000
    let run: Record<string, any>
    for (;;) {
      run = (await p.request('GET', `/v1/services/video-encoding/reprocessing/${v2.body.reprocessing.id}`)).body
      if (run.status === 'done' && run.evaluated >= run.queued) break
      if (Date.now() > deadline) throw new Error(JSON.stringify(run))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    // Only the h264 video is reached; it runs again, and completes with the h265 encoding.
    expect(run).toMatchObject({ queued: 1, fired: 1, failed: 0 })
    const upgraded = await wait(old)
    expect(upgraded).toMatchObject({ status: 'completed', facts: { recipe: 'h265', encoded: 2 }, result: { video: 's3://in/h264.mov.h265.mp4', chunks: 2 } })
    expect((await wait(other)).facts.recipe).toBe('vp9')
    const entries = (await p.request('GET', `/v1/instances/${old}/timeline?limit=1000`)).body.entries as { kind: string; rule: string | null }[]
    expect(entries.filter((e) => e.kind === 'instance.reopened')).toHaveLength(1)
    expect(entries.filter((e) => e.kind === 'rule.fired' && e.rule === 'upgrade')).toHaveLength(1)
    const { rows: [after] } = await p.db.pool.query<{ n: number }>('select count(*)::int as n from praxis.instances')
    expect(after!.n).toBe(before!.n)
  })
})
