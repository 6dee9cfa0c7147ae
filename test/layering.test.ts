/**
 * Service layering end to end on the embedded PostgreSQL: the publishing service starts
 * video-encoding's workflow as a child through its generated reference and reacts to its result.
 * An application drives it with publishing's generated API client over real HTTP, and
 * `--from <server>` regenerates the layer byte for byte from the deployed manifest.
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codegen, fetchManifest } from '../codegen/index.js'
import { buildBundle } from '../platform/engine/index.js'
import { ensureTenant } from '../platform/store/index.js'
import { createPublishingClient } from '../examples/publishing/generated/client.js'
import { createVideoEncodingClient } from '../examples/video-encoding/generated/client.js'
import { PraxisApiError } from '../sdk/index.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
let url: string
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('examples/video-encoding')).status).toBe(201)
  expect((await p.deploy('examples/publishing')).status).toBe(201)
  await p.startWorker('examples/video-encoding')
  await p.startWorker('examples/publishing')
  url = await p.api.listen({ port: 0, host: '127.0.0.1' })
})
afterAll(async () => p?.close())

describe('one service starts another service\'s workflow and reacts to its completion', () => {
  it('publishTitle runs encodeVideo as a child, gets its typed result, and completes', async () => {
    const client = createPublishingClient({ url, apiKey: p.apiKey })
    const instance = await client.startPublishTitle({ title: 'The Trailer', source: 's3://in/trailer.mov' })
    expect(instance.created).toBe(true)
    const done = await instance.wait({ timeoutMs: 30_000 })
    expect(done.status).toBe('completed')
    expect(done.result).toEqual({ page: 'https://catalogue.example/titles/the-trailer', video: 's3://in/trailer.mov.h264-1080p.mp4' })
    expect(done.facts.encoded).toEqual({ video: 's3://in/trailer.mov.h264-1080p.mp4', index: 's3://in/trailer.mov.h264-1080p.mp4.idx', chunks: 4 })

    // The child is a real instance of the other service, linked to its parent.
    const { rows: children } = await p.db.pool.query(
      'select id, service, workflow, status, result from praxis.instances where tenant_id = $1 and parent_instance_id = $2', ['acme', instance.id])
    expect(children).toEqual([expect.objectContaining({ service: 'video-encoding', workflow: 'encodeVideo', status: 'completed' })])
    const child = await createVideoEncodingClient({ url, apiKey: p.apiKey }).get('encodeVideo', children[0].id)
    expect(child.result).toEqual({ video: 's3://in/trailer.mov.h264-1080p.mp4', bytes: expect.any(Number), index: 's3://in/trailer.mov.h264-1080p.mp4.idx', chunks: 4 })

    // The parent's timeline shows the start as an invocation whose output is the child's result.
    const { entries } = await instance.timeline({ limit: 1000 })
    expect(entries.filter((e) => e.kind === 'rule.fired').map((e) => e.rule)).toEqual(['encode', 'publish', 'finish'])
    const started = entries.find((e) => e.kind === 'invocation.scheduled' && e.rule === 'encode')
    expect(started?.data).toMatchObject({ function: 'video-encoding.encodeVideo', pool: '@child' })
    const reacted = entries.find((e) => e.kind === 'invocation.succeeded' && e.rule === 'encode')
    expect(reacted?.data).toMatchObject({ function: 'video-encoding.encodeVideo', output: child.result })
  })

  it("calls another service's function directly through its layered stub, on that service's pool", async () => {
    expect((await p.deploy('test/fixtures/caller')).status).toBe(201)
    const started = await p.request('POST', '/v1/workflows/indexOnly/instances', { input: { uri: 's3://in/x.mp4' } })
    expect(started.status).toBe(201)
    const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=30000`)
    expect(done.body).toMatchObject({ status: 'completed', result: { indexUri: 's3://in/x.mp4.idx' } })
    const { rows } = await p.db.pool.query('select function, pool, status from praxis.invocations where tenant_id = $1 and instance_id = $2', ['acme', started.body.id])
    expect(rows).toEqual([{ function: 'indexVideo', pool: 'video-encoding:default', status: 'succeeded' }])
  })

  it('runs the error section when the child fails', async () => {
    const client = createPublishingClient({ url, apiKey: p.apiKey })
    // video-encoding's splitVideo rejects an unknown recipe for good, so the child fails.
    const instance = await client.startPublishTitle({ title: 'Broken', source: 's3://in/broken.mov', recipe: 'unknown-recipe' })
    const done = await instance.wait({ timeoutMs: 30_000 })
    expect(done.status).toBe('failed')
    expect(done.facts.stage).toBe('failed')
    expect(done.facts.problem).toMatch(/child workflow video-encoding\.encodeVideo failed: .*unknown recipe unknown-recipe/)
    expect(done.error?.message).toMatch(/^encoding failed: child workflow/)
  })

  it('runs the error section when the child cannot start: its service is not deployed in this tenant', async () => {
    const { apiKey } = await ensureTenant(p.db.pool, 'other')
    expect((await p.request('POST', '/v1/services/publishing/deployments', { code: (await buildBundle('examples/publishing')).code }, apiKey)).status).toBe(201)
    // The other tenant's child starts run on its own worker: acme's never take its jobs.
    await p.startWorker('examples/publishing', { tenantId: 'other' })
    const instance = await createPublishingClient({ url, apiKey }).startPublishTitle({ title: 'Alone', source: 's3://in/a.mov' })
    const done = await instance.wait({ timeoutMs: 30_000 })
    expect(done.status).toBe('failed')
    expect(done.facts.problem).toMatch(/workflow video-encoding\.encodeVideo is not deployed in this tenant/)
  })

  it('checks input on the client before any request, and reports API errors with their code', async () => {
    const client = createPublishingClient({ url, apiKey: p.apiKey })
    // @ts-expect-error title is required
    await expect(client.startPublishTitle({ source: 's3://x' })).rejects.toThrow(/input of publishing.publishTitle is invalid: title/)
    const wrongKey = createPublishingClient({ url, apiKey: 'nope' })
    await expect(wrongKey.startPublishTitle({ title: 't', source: 's' })).rejects.toMatchObject({ status: 401, code: 'PRX_UNAUTHORIZED' })
    await expect(wrongKey.startPublishTitle({ title: 't', source: 's' })).rejects.toBeInstanceOf(PraxisApiError)
  })

  it('serves the manifest the deploy uploaded, and refuses a deploy whose manifest does not match its bundle', async () => {
    const generated = JSON.parse(await readFile('examples/video-encoding/generated/manifest.json', 'utf8'))
    const served = await p.request('GET', '/v1/services/video-encoding/manifest')
    expect(served.status).toBe(200)
    expect(served.body).toEqual({ ...generated, version: 1 })
    expect(Object.keys(served.body.functions[0].input.properties)).toEqual(Object.keys(generated.functions[0].input.properties))

    const missing = await p.request('GET', '/v1/services/no-such-service/manifest')
    expect(missing.status).toBe(404)
    expect(missing.body.error.code).toBe('PRX_SERVICE_NOT_FOUND')

    const { code } = await buildBundle('examples/video-encoding')
    const staleRule = structuredClone(generated)
    staleRule.workflows[0].rules[0].fingerprint = 'ffffffffffffffffffffffff'
    const staleFacts = structuredClone(generated)
    staleFacts.workflows[0].facts.properties.source = { type: 'number' }
    for (const [manifest, why] of [[staleRule, /the rules of encodeVideo differ/], [staleFacts, /the facts schema of encodeVideo differs/]] as const) {
      const refused = await p.request('POST', '/v1/services/video-encoding/deployments', { code: `${code}\n// v2`, manifest })
      expect(refused.status).toBe(400)
      expect(refused.body.error.code).toBe('PRX_BUNDLE_INVALID')
      expect(refused.body.error.message).toMatch(why)
      expect(refused.body.error.message).toMatch(/run `praxis codegen/)
    }
    const deployments = await p.request('GET', '/v1/services/video-encoding/deployments')
    expect(deployments.body.deployments.map((d: { version: number; active: boolean }) => [d.version, d.active])).toEqual([[1, true]])
    expect((await p.request('GET', '/v1/services/video-encoding/manifest')).body).toEqual({ ...generated, version: 1 })
  })

  it('regenerates the layer from the server (--from) byte for byte as from the manifest file', async () => {
    const served = await fetchManifest(url, 'video-encoding', p.apiKey)
    const work = await mkdtemp(path.join(tmpdir(), 'praxis-layer-'))
    try {
      // A copy at the same depth, so relative SDK imports come out the same.
      const copy = path.join(process.cwd(), 'examples', `.layer-${path.basename(work)}`)
      await cp('examples/publishing', copy, { recursive: true })
      try {
        await rm(path.join(copy, 'generated', 'services'), { recursive: true })
        await codegen({ dir: copy, layer: { manifest: served, origin: url } })
        for (const file of ['manifest.json', 'functions.ts', 'workflows.ts', 'client.ts']) {
          const mine = await readFile(path.join(copy, 'generated/services/video-encoding', file), 'utf8')
          const committed = await readFile(path.join('examples/publishing/generated/services/video-encoding', file), 'utf8')
          expect(mine.replace(/examples\/\.layer-[\w-]+/g, 'examples/publishing'), file).toBe(committed)
        }
      } finally {
        await rm(copy, { recursive: true, force: true })
      }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })
})
