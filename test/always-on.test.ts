/**
 * Always on, end to end: a deploy that changes a rule reaches the running instances it fires on,
 * in the background (a reprocessing run of keyset batches, each its own transaction), once each;
 * the dry run's counts are what the deploy then does; a run stopped between batches resumes at its
 * cursor without giving an instance a second evaluation; a newer deploy supersedes a run still
 * going; a rollback is a deploy of an older version's rules, previewed and reached the same way.
 * On main the whole walk ran inside the deploy request, over every running instance of the service.
 */
import { spawn } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codegen } from '../codegen/index.js'
import { walkReprocessing } from '../platform/engine/index.js'
import { runReached } from './support/wait.js'
import { startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const FIXTURE = path.resolve('test/fixtures/always-on')
const SERVICE = 'always-on'
const temps: string[] = []

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
})
afterAll(async () => {
  await p?.close()
  for (const dir of temps) await rm(dir, { recursive: true, force: true })
})

/** A copy of the fixture under test/ (its imports stay relative to the repository), deployable as the service. */
async function copy(): Promise<string> {
  const tmp = await mkdtemp(path.resolve('test', '.tmp-always-on-'))
  temps.push(tmp)
  const dir = path.join(tmp, SERVICE)
  await cp(FIXTURE, dir, { recursive: true })
  return dir
}
/** Sets `check`'s threshold in the copy and regenerates its manifest. */
async function threshold(dir: string, amount: number): Promise<void> {
  const file = path.join(dir, 'workflows.ts')
  await writeFile(file, (await readFile(file, 'utf8')).replace(/f\.amount\.gt\(\d+\)/, `f.amount.gt(${amount})`))
  await codegen({ dir })
}
const start = async (amount: number, done = false): Promise<string> => {
  const r = await p.request('POST', '/v1/workflows/order/instances', { input: { amount, done } })
  expect(r.status).toBe(201)
  return r.body.id as string
}
/** Waits until no event or call of the instance is left, then returns its facts. */
async function settled(id: string): Promise<{ reviews: number; amount: number }> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const { rows: [busy] } = await p.db.pool.query<{ n: number }>(
      `select (select count(*) from praxis.events where tenant_id = $1 and instance_id = $2 and consumed_at is null)
         + (select count(*) from praxis.invocations where tenant_id = $1 and instance_id = $2 and status = 'pending') as n`, [TENANT, id])
    if (Number(busy!.n) === 0) return (await p.request('GET', `/v1/instances/${id}`)).body.facts
    if (Date.now() > deadline) throw new Error(`instance ${id} did not settle`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
const redeployEvents = async (runId: string): Promise<Map<string, number>> => {
  const { rows } = await p.db.pool.query<{ instance_id: string; n: number }>(
    "select instance_id, count(*)::int as n from praxis.events where tenant_id = $1 and kind = 'redeploy' and payload->>'r' = $2 group by instance_id", [TENANT, runId])
  return new Map(rows.map((r) => [r.instance_id, r.n]))
}

describe('always-on deploys', () => {
  it('preview exactly what they then do, and fire a changed rule once on each running instance it matches, in the background', async () => {
    const dir = await copy()
    await codegen({ dir })
    expect((await p.deploy(dir)).status).toBe(201)
    await p.startWorker(dir)
    const amounts = [10, 60, 80, 120, 200]
    const ids = await Promise.all(amounts.map((a) => start(a)))
    await start(70, true) // completed at once
    const before = await Promise.all(ids.map(settled))
    expect(before.map((f) => f.reviews)).toEqual([0, 0, 0, 1, 1])

    // v2 lowers the threshold: `check` changes. The preview counts the running orders it would
    // fire on now (over 50, and not already seen true under the new fingerprint: all four), and
    // the completed one it matches.
    await threshold(dir, 50)
    const { code } = await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))
    const manifest = JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8'))
    const preview = await p.request('POST', `/v1/services/${SERVICE}/deployments?dryRun=true`, { code, manifest })
    expect(preview.status).toBe(200)
    expect(preview.body).toMatchObject({ service: SERVICE, version: 1, reopens: false })
    expect(preview.body.changes).toEqual([{ workflow: 'invoice', added: [], changed: [], removed: [] }, { workflow: 'order', added: [], changed: ['check'], removed: [] }])
    // `order` does not reopen: its completed order matches, and stays completed.
    expect(preview.body.fires).toEqual([{ workflow: 'order', rule: 'check', change: 'changed', running: 4, finished: 1, reopens: false, how: 'sql' }])
    // Nothing changed.
    expect((await p.request('GET', `/v1/services/${SERVICE}/deployments`)).body.deployments).toHaveLength(1)

    const deployed = await p.deploy(dir)
    expect(deployed.status).toBe(201)
    expect(deployed.body).toMatchObject({ version: 2, reevaluating: 5, changes: [{ workflow: 'invoice', changed: [] }, { workflow: 'order', changed: ['check'] }] })
    const done = await runReached(p, SERVICE, deployed.body.reprocessing.id)
    expect(done).toMatchObject({ status: 'done', total: 5, walked: 5, queued: 4, evaluated: 4, fired: 4, failed: 0 })
    const after = await Promise.all(ids.map(settled))
    expect(after.map((f) => f.reviews)).toEqual([0, 1, 1, 2, 2])
    // Only the orders the rule fires on were evaluated: the one under 50 never left PostgreSQL.
    const events = await redeployEvents(deployed.body.reprocessing.id)
    expect([...events.values()]).toEqual([1, 1, 1, 1])
    expect(events.has(ids[0]!)).toBe(false)

    // A rollback to v1 is a deploy of v1's rules: `check` changes back, and fires where v1's
    // match holds on an order whose rule state no longer holds v1's fingerprint (an evaluation
    // under v2 keeps only v2's): the two over 100. The preview says so, and so does the run.
    const rollbackPreview = await p.request('POST', `/v1/services/${SERVICE}/rollback?dryRun=true`, {})
    expect(rollbackPreview.body).toMatchObject({ from: 1, changes: [{ changed: [] }, { changed: ['check'] }], fires: [{ rule: 'check', running: 2 }] })
    const rolled = await p.request('POST', `/v1/services/${SERVICE}/rollback`, {})
    expect(rolled.status).toBe(201)
    expect(rolled.body).toMatchObject({ version: 3, from: 1, changes: [{ changed: [] }, { changed: ['check'] }] })
    expect(await runReached(p, SERVICE, rolled.body.reprocessing.id)).toMatchObject({ queued: 2, fired: 2 })
    expect((await Promise.all(ids.map(settled))).map((f) => f.reviews)).toEqual([0, 1, 1, 3, 3])
    const manifestNow = (await p.request('GET', `/v1/services/${SERVICE}/deployments`)).body.deployments
    expect(manifestNow.map((d: { version: number; active: boolean }) => [d.version, d.active])).toContainEqual([3, true])
    // An order over 100 started now is checked with v1's threshold again.
    const fresh = await start(90)
    expect((await settled(fresh)).reviews).toBe(0)
  })

  it('reopen completed instances of a workflow that opts in, fire the changed rule once, and complete them again', async () => {
    const { apiKey } = await import('../platform/store/index.js').then((m) => m.ensureTenant(p.db.pool, 'reopener'))
    const dir = await copy()
    const deploy = async (dryRun = false) => {
      await codegen({ dir })
      const { code } = await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))
      const manifest = JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8'))
      return p.request('POST', `/v1/services/${SERVICE}/deployments${dryRun ? '?dryRun=true' : ''}`, { code, manifest }, apiKey)
    }
    expect((await deploy()).status).toBe(201)
    await p.startWorker(dir, { tenantId: 'reopener' })
    const startInvoice = async (amount: number) => (await p.request('POST', '/v1/workflows/invoice/instances', { input: { amount } }, apiKey)).body.id as string
    const view = async (id: string) => (await p.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=20000`, undefined, apiKey)).body
    const big = await startInvoice(150)
    const small = await startInvoice(60)
    const low = await startInvoice(10)
    expect(await view(big)).toMatchObject({ status: 'completed', result: { reviews: 1 } })

    // v2 audits from 40: the completed invoice of 150 is reopened, the running one of 60 reached.
    const file = path.join(dir, 'workflows.ts')
    await writeFile(file, (await readFile(file, 'utf8')).replace('f.amount.gte(100)', 'f.amount.gte(40)'))
    const preview = await deploy(true)
    expect(preview.body).toMatchObject({ reopens: true })
    expect(preview.body.fires).toEqual([{ workflow: 'invoice', rule: 'audit', change: 'changed', running: 1, finished: 1, reopens: true, how: 'sql' }])
    const v2 = await deploy()
    expect(v2.body.reevaluating).toBe(3)
    const deadline = Date.now() + 30_000
    let progress: Record<string, any>
    for (;;) {
      progress = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing/${v2.body.reprocessing.id}`, undefined, apiKey)).body
      if (progress.status === 'done' && progress.evaluated >= progress.queued) break
      if (Date.now() > deadline) throw new Error(JSON.stringify(progress))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(progress).toMatchObject({ walked: 3, queued: 2, fired: 2, failed: 0 })
    expect(await view(big)).toMatchObject({ status: 'completed', result: { reviews: 2 } })
    expect(await view(small)).toMatchObject({ status: 'completed', result: { reviews: 1 } })
    expect((await p.request('GET', `/v1/instances/${low}`, undefined, apiKey)).body.status).toBe('running')
    const kinds = (await p.request('GET', `/v1/instances/${big}/timeline?limit=1000`, undefined, apiKey)).body.entries.map((e: { kind: string }) => e.kind)
    expect(kinds.filter((k: string) => k === 'instance.reopened')).toHaveLength(1)
    expect(kinds.filter((k: string) => k === 'instance.completed')).toHaveLength(2)

    // An event a completed instance ignores (here a redeploy that fires nothing) leaves its result:
    // on main the evaluation wrote result = null over it.
    const { appendEvent } = await import('../platform/queue/index.js')
    await appendEvent(p.db.pool, { tenantId: 'reopener', instanceId: big, kind: 'redeploy', payload: { version: 99 } })
    for (let i = 0; i < 300; i++) {
      const { rows: [left] } = await p.db.pool.query<{ n: number }>("select count(*)::int as n from praxis.events where tenant_id = 'reopener' and instance_id = $1 and consumed_at is null", [big])
      if (left!.n === 0) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(await view(big)).toMatchObject({ status: 'completed', result: { reviews: 2 } })

    // A deploy that changes nothing else reopens nothing again.
    await writeFile(file, (await readFile(file, 'utf8')).replace('f.amount.gt(100)', 'f.amount.gt(99)'))
    const v3 = await deploy()
    expect(v3.body.changes).toEqual([{ workflow: 'invoice', added: [], changed: [], removed: [] }, { workflow: 'order', added: [], changed: ['check'], removed: [] }])
    expect(await view(big)).toMatchObject({ status: 'completed', result: { reviews: 2 } })
  })

  it('resume a run stopped between batches at its cursor, and never give an instance two evaluations', async () => {
    const { apiKey } = await import('../platform/store/index.js').then((m) => m.ensureTenant(p.db.pool, 'resumer'))
    const dir = await copy()
    await codegen({ dir })
    const { code } = await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))
    const manifest = () => readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8').then((t) => JSON.parse(t))
    const post = async () => p.request('POST', `/v1/services/${SERVICE}/deployments`, { code: (await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))).code, manifest: await manifest() }, apiKey)
    expect((await p.request('POST', `/v1/services/${SERVICE}/deployments`, { code, manifest: await manifest() }, apiKey)).status).toBe(201)
    const ids: string[] = []
    for (let i = 0; i < 9; i++) ids.push((await p.request('POST', '/v1/workflows/order/instances', { input: { amount: 500 + i } }, apiKey)).body.id)
    // No worker yet: the run waits; one batch of 4 is walked by hand, then the walk stops.
    await threshold(dir, 400)
    const deployed = await post()
    expect(deployed.body.reevaluating).toBe(9)
    const runId = deployed.body.reprocessing.id as string
    let batches = 0
    await expect(walkReprocessing(p.db.pool, 'resumer', runId, { batchSize: 4, shouldStop: () => batches++ >= 1 })).rejects.toThrow(/resumes at its cursor/)
    const half = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing/${runId}`, undefined, apiKey)).body
    expect(half).toMatchObject({ status: 'running', walked: 4, queued: 4 })
    // A worker (as after a restart) takes the run's job and goes on from the cursor.
    await p.startWorker(dir, { tenantId: 'resumer' })
    const deadline = Date.now() + 30_000
    let final: Record<string, any>
    for (;;) {
      final = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing/${runId}`, undefined, apiKey)).body
      if (final.status === 'done' && final.evaluated >= final.queued) break
      if (Date.now() > deadline) throw new Error(JSON.stringify(final))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(final).toMatchObject({ walked: 9, queued: 9, evaluated: 9, fired: 9 })
    const { rows } = await p.db.pool.query<{ n: number }>("select count(*)::int as n from praxis.events where tenant_id = 'resumer' and kind = 'redeploy' and payload->>'r' = $1 group by instance_id", [runId])
    expect(rows.map((r) => r.n)).toEqual(Array(9).fill(1))
  })

  it('supersede a run still going with a newer deploy of the service', async () => {
    const { apiKey } = await import('../platform/store/index.js').then((m) => m.ensureTenant(p.db.pool, 'superseder'))
    const dir = await copy()
    const deploy = async () => {
      await codegen({ dir })
      const { code } = await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))
      const manifest = JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8'))
      return p.request('POST', `/v1/services/${SERVICE}/deployments`, { code, manifest }, apiKey)
    }
    expect((await deploy()).status).toBe(201)
    for (const amount of [300, 600]) await p.request('POST', '/v1/workflows/order/instances', { input: { amount } }, apiKey)
    await threshold(dir, 200)
    const v2 = await deploy()
    await threshold(dir, 500)
    const v3 = await deploy()
    const older = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing/${v2.body.reprocessing.id}`, undefined, apiKey)).body
    expect(older).toMatchObject({ status: 'superseded', walked: 0, queued: 0 })
    await p.startWorker(dir, { tenantId: 'superseder' })
    const deadline = Date.now() + 30_000
    for (;;) {
      const newer = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing/${v3.body.reprocessing.id}`, undefined, apiKey)).body
      if (newer.status === 'done' && newer.evaluated >= newer.queued) {
        expect(newer).toMatchObject({ walked: 2, queued: 1, fired: 1 })
        break
      }
      if (Date.now() > deadline) throw new Error(JSON.stringify(newer))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const runs = (await p.request('GET', `/v1/services/${SERVICE}/reprocessing`, undefined, apiKey)).body.runs
    expect(runs.map((r: { status: string }) => r.status)).toEqual(['done', 'superseded', 'done'])
  })

  it('are previewed, followed with a progress bar and rolled back from the CLI', async () => {
    const { apiKey } = await import('../platform/store/index.js').then((m) => m.ensureTenant(p.db.pool, 'clier'))
    const dir = await copy()
    await codegen({ dir })
    const url = await p.api.listen({ port: 0, host: '127.0.0.1' })
    const cli = (...args: string[]): Promise<{ code: number | null; out: string }> => new Promise((resolve) => {
      const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', ...args, '--server', url, '--api-key', apiKey], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
      child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
      child.once('exit', (code) => resolve({ code, out }))
    })
    expect((await cli('deploy', dir)).out).toMatch(/deployed: always-on version 1/)
    await p.startWorker(dir, { tenantId: 'clier' })
    for (const amount of [30, 70, 130]) await p.request('POST', '/v1/workflows/order/instances', { input: { amount } }, apiKey)
    await threshold(dir, 50)
    const dry = await cli('deploy', dir, '--dry-run')
    expect(dry.code).toBe(0)
    expect(dry.out).toMatch(/dry run: always-on, now at version 1; nothing was changed/)
    expect(dry.out).toMatch(/order: changed check/)
    expect(dry.out).toMatch(/order\.check \(changed\) would fire on 2 running instances now \(matched in SQL\)/)
    const waited = await cli('deploy', dir, '--wait')
    expect(waited.code, waited.out).toBe(0)
    expect(waited.out).toMatch(/deployed: always-on version 2/)
    expect(waited.out).toMatch(/reaching old work in the background: run \d+ over 3 running instances/)
    expect(waited.out).toMatch(/\[#+\] 3\/3 walked, 2 queued, 2 evaluated, 2 fired, 0 failed/)
    expect(waited.out).toMatch(/done: 2 instances fired a new or changed rule, 0 failed/)
    const back = await cli('rollback', SERVICE, '--dry-run')
    expect(back.out).toMatch(/order\.check \(changed\) would fire on 1 running instance now/)
  })

  it('refuse a bundle that does not load, and leave the active version as it was', async () => {
    const dir = await copy()
    await codegen({ dir })
    const { code } = await import('../platform/engine/index.js').then((m) => m.buildBundle(dir))
    const { apiKey } = await import('../platform/store/index.js').then((m) => m.ensureTenant(p.db.pool, 'refused'))
    const manifest = JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8'))
    expect((await p.request('POST', `/v1/services/${SERVICE}/deployments`, { code, manifest }, apiKey)).status).toBe(201)
    const broken = await p.request('POST', `/v1/services/${SERVICE}/deployments`, { code: `throw new Error('broken at load');\n${code}`, manifest }, apiKey)
    expect(broken.status).toBe(400)
    expect(broken.body.error.code).toBe('PRX_BUNDLE_INVALID')
    const versions = (await p.request('GET', `/v1/services/${SERVICE}/deployments`, undefined, apiKey)).body.deployments
    expect(versions.map((d: { version: number; active: boolean }) => [d.version, d.active])).toEqual([[1, true]])
    expect((await p.request('GET', `/v1/services/${SERVICE}/reprocessing`, undefined, apiKey)).body.runs).toHaveLength(1)
  })
})
