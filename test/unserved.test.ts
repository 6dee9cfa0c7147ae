/**
 * A start whose function has no live worker says so (issue item "Warm capacity"; found on main: a
 * new service with no worker hung silently, deploy and `start --wait` said nothing). The instance
 * view lists the pools it waits on (`waiting`), its timeline gets one `pool.unserved` entry per
 * pool however often and however concurrently it is read, the deploy answer names the pools no
 * worker serves, and `praxis start --wait` prints the notice once, then completes when a worker
 * comes. A live worker's pool is never reported; a dead one's (stale heartbeat) is.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { createApiKey, createTenant } from '../platform/store/index.js'
import { until } from './support/wait.js'
import { startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

let p: TestPlatform
const markers = mkdtempSync(path.join(tmpdir(), 'praxis-unserved-'))
beforeAll(async () => {
  process.env.PRAXIS_TEST_MARKER_DIR = markers
  p = await startTestPlatform()
})
afterAll(async () => p?.close())


const timelineOf = async (id: string, key?: string) => (await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`, undefined, key)).body.entries as { kind: string; rule: string | null; data: any }[]
const unservedEntries = async (id: string, key?: string) => (await timelineOf(id, key)).filter((e) => e.kind === 'pool.unserved')

describe('no worker serves the pool', () => {
  it('the deploy answer names the pools no live worker serves', async () => {
    const deployed = await p.deploy('test/fixtures/counter')
    expect(deployed.status).toBe(201)
    expect(deployed.body.unservedPools).toEqual(['counter:default'])
  })

  it('the instance view says what it waits on, and its timeline says it once', async () => {
    const started = await p.request('POST', '/v1/workflows/counter/instances', { input: {} })
    expect(started.status).toBe(201)
    const id = started.body.id
    const view = await p.request('GET', `/v1/instances/${id}`)
    expect(view.body, JSON.stringify(view.body)).toMatchObject({ status: 'running' })
    expect(view.body.waiting).toEqual([{
      pool: 'counter:default', function: 'bump', invocations: 1, since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      reason: `no worker serves pool counter:default since ${view.body.waiting[0].since}`,
      fix: `start one with \`praxis worker <counter-folder> --tenant ${TENANT}\` (or \`praxis pools <counter-folder> --tenant ${TENANT}\`) or \`praxis dev\``,
    }])
    // Read again, and many times at once (view and timeline): still one entry.
    await Promise.all(Array.from({ length: 12 }, (_, i) => p.request('GET', i % 2 ? `/v1/instances/${id}` : `/v1/instances/${id}/timeline`)))
    expect(await unservedEntries(id)).toEqual([expect.objectContaining({
      kind: 'pool.unserved', rule: 'bump',
      data: { pool: 'counter:default', function: 'bump', invocationId: expect.any(String), since: view.body.waiting[0].since, reason: view.body.waiting[0].reason, fix: view.body.waiting[0].fix },
    })])

    // A worker comes: the instance completes, the view waits on nothing, the entry stays history.
    const worker = await p.startWorker('test/fixtures/counter')
    onTestFinished(async () => { await worker.stop(); p.workers.splice(p.workers.indexOf(worker), 1) })
    const done = await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=30000`)
    expect(done.body).toMatchObject({ status: 'completed', waiting: [] })
    const kinds = (await timelineOf(id)).map((e) => e.kind)
    expect(kinds.filter((k) => k === 'pool.unserved')).toHaveLength(1)
    expect(kinds.indexOf('pool.unserved')).toBeLessThan(kinds.indexOf('invocation.succeeded'))
  })

  it('is written once however many readers detect it at the same moment', async () => {
    const { id } = (await p.request('POST', '/v1/workflows/counter/instances', { input: {} })).body
    // The counter worker of the last test is gone: nothing serves counter:default again.
    expect(await p.db.pool.query('select 1 from praxis.workers')).toMatchObject({ rowCount: 0 })
    await Promise.all(Array.from({ length: 20 }, () => p.request('GET', `/v1/instances/${id}`)))
    expect(await unservedEntries(id)).toHaveLength(1)
  })

  it('counts a worker whose heartbeat is older than the lease as gone', async () => {
    expect((await p.deploy('test/fixtures/gated')).status).toBe(201)
    await p.db.pool.query("insert into praxis.workers (id, tenant_id, pools, heartbeat_at) values ('praxis-worker-dead00000000', $1, '{gated:gate}', now() - interval '1 hour')", [TENANT])
    onTestFinished(async () => { await p.db.pool.query("delete from praxis.workers where id = 'praxis-worker-dead00000000'") })
    const { id } = (await p.request('POST', '/v1/workflows/gated/instances', { input: { n: 1 } })).body
    const view = await p.request('GET', `/v1/instances/${id}`)
    expect(view.body.waiting).toEqual([expect.objectContaining({ pool: 'gated:gate', function: 'hold' })])
  })
})

describe('a live worker serves the pool', () => {
  it('reports nothing while its function runs', async () => {
    const worker = await p.startWorker('test/fixtures/gated')
    onTestFinished(async () => { await worker.stop(); p.workers.splice(p.workers.indexOf(worker), 1) })
    const { id } = (await p.request('POST', '/v1/workflows/gated/instances', { input: { n: 2 } })).body
    // `hold` runs (its job is locked) and holds until the gate opens.
    await until(async () => (await p.db.pool.query("select 1 from graphile_worker._private_jobs j where j.locked_at is not null and j.payload->>'instance_id' = $1", [id])).rowCount === 1, 'hold to run')
    const view = await p.request('GET', `/v1/instances/${id}`)
    expect(view.body).toMatchObject({ status: 'running', waiting: [] })
    expect(await unservedEntries(id)).toEqual([])
    writeFileSync(path.join(markers, 'open'), '')
    expect((await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=30000`)).body).toMatchObject({ status: 'completed', waiting: [] })
    expect(await unservedEntries(id)).toEqual([])
  })
})

describe('praxis start --wait', () => {
  it('prints "no worker serves pool … since …" once, with what to run, and completes once a worker comes', async () => {
    // A tenant of its own, so no worker of the other tests serves it.
    await createTenant(p.db.pool, { name: 'Solo', id: 'solo' })
    const { key } = await createApiKey(p.db.pool, 'solo')
    const { status, body } = await p.request('POST', '/v1/services/counter/deployments', { code: (await buildBundle('test/fixtures/counter')).code, manifest: await readGeneratedManifest('test/fixtures/counter') }, key)
    expect(status).toBe(201)
    expect(body.unservedPools).toEqual(['counter:default'])
    const url = await p.api.listen({ port: 0, host: '127.0.0.1' })
    const cli = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'start', 'counter', '--input', '{}', '--wait', '--server', url, '--api-key', key], { stdio: ['ignore', 'pipe', 'inherit'] })
    onTestFinished(() => { cli.kill('SIGKILL') })
    const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)))
    const lines: string[] = []
    createInterface({ input: cli.stdout! }).on('line', (line) => lines.push(line))
    const notice = /no worker serves pool counter:default since \S+: start one with `praxis worker <counter-folder> --tenant solo` \(or `praxis pools <counter-folder> --tenant solo`\) or `praxis dev`$/
    await until(() => lines.some((l) => notice.test(l)), () => `the notice; the command printed:\n${lines.join('\n')}`)

    const worker = await p.startWorker('test/fixtures/counter', { tenantId: 'solo' })
    onTestFinished(async () => { await worker.stop(); p.workers.splice(p.workers.indexOf(worker), 1) })
    expect(await exited).toBe(0)
    expect(lines.filter((l) => notice.test(l))).toHaveLength(1)
    expect(lines).toContain('status: completed')
  })
})
