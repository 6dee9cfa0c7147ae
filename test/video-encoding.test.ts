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
