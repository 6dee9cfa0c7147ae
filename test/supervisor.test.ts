/**
 * Warm capacity (issue item "Warm capacity"). The scaling policy is a pure function, tested on its
 * own; the supervisor is tested end to end with real worker processes on the embedded PostgreSQL:
 * it keeps min workers per pool registered, scales up one step at a time under a deep queue (never
 * past max), restarts a worker killed with SIGKILL, scales back down to min once idle, and backs
 * off with a clear message when its workers keep dying. `praxis dev` prints "[5/5] … ready" only
 * once its workers are registered (on main it printed it on spawn, then stalled silently), and
 * says so when a service is deployed to its tenant from a folder it was not started with.
 * Nothing here is timed: every wait is for a condition, with a deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { desiredWorkers, formatEvent, groupPools, loadService, Supervisor, type PoolLoad, type ScalePolicy, type SupervisorEvent } from '../platform/pools/index.js'
import { createTestDatabase, type TestDatabase } from './support/database.js'
import { silent, startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'
import { until } from './support/wait.js'

/** Worker processes start slowly on a loaded machine (tsx, isolated-vm): the e2e tests wait long. */
const E2E_MS = 300_000
/** How long one wait for workers may take. */
const WAIT_MS = 120_000

/** Keeps an event; with TEST_LOG set, prints it too. */
function record(events: SupervisorEvent[], event: SupervisorEvent): void {
  events.push(event)
  if (process.env.TEST_LOG) process.stderr.write(`${new Date().toISOString()} ${formatEvent(event)}\n`)
}

// ---------------------------------------------------------------------------------------------

describe('the scaling policy (pure)', () => {
  const policy: ScalePolicy = { min: 1, max: 3, depthPerWorker: 4, maxAgeMs: 1000, idleMs: 5000 }
  const load = (l: Partial<PoolLoad>): PoolLoad => ({ current: 1, starting: 0, depth: 0, oldestAgeMs: 0, idleForMs: 0, ...l })

  it('brings a pool up to min and down to max', () => {
    expect(desiredWorkers(load({ current: 0 }), policy).desired).toBe(1)
    expect(desiredWorkers(load({ current: 0 }), { ...policy, min: 2 }).desired).toBe(2)
    expect(desiredWorkers(load({ current: 5, depth: 100, oldestAgeMs: 60_000 }), policy).desired).toBe(3)
  })

  it('adds one worker when the jobs per worker or the oldest wait pass the threshold', () => {
    expect(desiredWorkers(load({ depth: 4 }), policy)).toEqual({ desired: 1, reason: 'steady' })
    expect(desiredWorkers(load({ depth: 5 }), policy)).toEqual({ desired: 2, reason: '5 jobs waiting, 5 per worker > 4' })
    expect(desiredWorkers(load({ current: 2, depth: 9 }), policy)).toEqual({ desired: 3, reason: '9 jobs waiting, 4.5 per worker > 4' })
    expect(desiredWorkers(load({ depth: 1, oldestAgeMs: 1001 }), policy)).toEqual({ desired: 2, reason: 'the oldest job has waited 1.0 s > 1.0 s' })
    expect(desiredWorkers(load({ depth: 1, oldestAgeMs: 1000 }), policy).desired).toBe(1)
    // One step at a time, and never past max.
    expect(desiredWorkers(load({ current: 1, depth: 1000 }), policy).desired).toBe(2)
    expect(desiredWorkers(load({ current: 3, depth: 1000, oldestAgeMs: 60_000 }), policy).desired).toBe(3)
  })

  it('waits for a starting worker before adding another', () => {
    expect(desiredWorkers(load({ current: 2, starting: 1, depth: 1000, oldestAgeMs: 60_000 }), policy).desired).toBe(2)
  })

  it('starts a worker for a waiting job in a pool scaled to zero', () => {
    expect(desiredWorkers(load({ current: 0, depth: 1 }), { ...policy, min: 0 })).toEqual({ desired: 1, reason: '1 job waiting and no worker' })
    expect(desiredWorkers(load({ current: 0 }), { ...policy, min: 0 }).desired).toBe(0)
  })

  it('removes one worker after idleMs idle, never below min', () => {
    expect(desiredWorkers(load({ current: 3, idleForMs: 4999 }), policy).desired).toBe(3)
    expect(desiredWorkers(load({ current: 3, idleForMs: 5000 }), policy)).toEqual({ desired: 2, reason: 'idle for 5.0 s' })
    expect(desiredWorkers(load({ current: 1, idleForMs: 60_000 }), policy).desired).toBe(1)
    expect(desiredWorkers(load({ current: 1, idleForMs: 60_000 }), { ...policy, min: 0 }).desired).toBe(0)
  })

  it('always answers within min..max, and moves one step at a time from within it', () => {
    const policies = fc.record({ min: fc.integer({ min: 0, max: 5 }), extra: fc.integer({ min: 0, max: 5 }), depthPerWorker: fc.integer({ min: 1, max: 20 }), maxAgeMs: fc.integer({ min: 0, max: 10_000 }), idleMs: fc.integer({ min: 0, max: 10_000 }) })
      .map(({ extra, ...p }) => ({ ...p, max: Math.max(1, p.min + extra) }))
    const loads = fc.record({ current: fc.integer({ min: 0, max: 12 }), starting: fc.integer({ min: 0, max: 12 }), depth: fc.integer({ min: 0, max: 500 }), oldestAgeMs: fc.integer({ min: 0, max: 20_000 }), idleForMs: fc.integer({ min: 0, max: 20_000 }) })
      .map((l) => ({ ...l, starting: Math.min(l.starting, l.current) }))
    fc.assert(fc.property(policies, loads, (p, l) => {
      const { desired } = desiredWorkers(l, p)
      expect(desired).toBeGreaterThanOrEqual(p.min)
      expect(desired).toBeLessThanOrEqual(p.max)
      if (l.current >= p.min && l.current <= p.max) expect(Math.abs(desired - l.current)).toBeLessThanOrEqual(1)
      if (l.depth > 0 && l.current >= p.min) expect(desired).toBeGreaterThanOrEqual(Math.min(l.current, p.max))
    }), { seed: 7, numRuns: 2000 })
  })
})

describe('pools of services', () => {
  it("groups the services' functions by qualified pool", async () => {
    const specs = groupPools(await Promise.all(['examples/video-encoding', 'test/fixtures/gated'].map((d) => loadService(d))))
    expect(specs.map((s) => ({ pool: s.pool, dirs: s.dirs.map((d) => path.relative('.', d)), functions: s.functions.sort() }))).toEqual([
      { pool: 'gated:gate', dirs: ['test/fixtures/gated'], functions: ['hold'] },
      { pool: 'video-encoding:default', dirs: ['examples/video-encoding'], functions: ['assembleVideo', 'indexVideo', 'splitVideo'] },
      { pool: 'video-encoding:encoders', dirs: ['examples/video-encoding'], functions: ['encodeChunk'] },
    ])
  })
})

// ---------------------------------------------------------------------------------------------

describe('the supervisor, with real worker processes', () => {
  let p: TestPlatform
  const markers = mkdtempSync(path.join(tmpdir(), 'praxis-supervisor-'))
  beforeAll(async () => {
    p = await startTestPlatform()
    expect((await p.deploy('test/fixtures/gated')).status).toBe(201)
  })
  afterAll(async () => p?.close())

  const workerRows = async (tenant = TENANT) =>
    (await p.db.pool.query<{ id: string; pools: string[] }>('select id, pools from praxis.workers where tenant_id = $1 order by id', [tenant])).rows

  it('keeps min..max warm workers per pool: scales up one step at a time under a deep queue, down to min when idle', async () => {
    const events: SupervisorEvent[] = []
    const supervisor = new Supervisor({
      tenantId: TENANT, dirs: ['test/fixtures/gated'], databaseUrl: p.db.url, db: p.db.pool, log: silent,
      min: 1, max: 3, depthPerWorker: 2, maxAgeMs: 2000, idleMs: 1500, sampleMs: 200,
      env: { PRAXIS_WORKER_CONCURRENCY: '2', PRAXIS_TEST_MARKER_DIR: markers, LOG_LEVEL: 'warn' },
      onEvent: (event) => record(events, event),
    })
    onTestFinished(() => supervisor.stop())
    const specs = await supervisor.start()
    expect(specs.map((s) => s.pool)).toEqual(['gated:gate'])

    // Ready means registered: the worker's row is there when ready() resolves, with its pool.
    await supervisor.ready()
    const [first] = supervisor.status()
    expect(first).toMatchObject({ pool: 'gated:gate', ready: 1 })
    expect(await workerRows()).toEqual([{ id: first!.workerIds[0], pools: ['gated:gate'] }])

    // 50 starts, each holding its worker slot until the gate opens: one step at a time, to max.
    let most = 0
    for (let n = 0; n < 50; n++) expect((await p.request('POST', '/v1/workflows/gated/instances', { input: { n } })).status).toBe(201)
    await until(async () => {
      const rows = await workerRows()
      most = Math.max(most, rows.length)
      return rows.length === 3 && supervisor.status()[0]!.ready === 3
    }, '3 registered workers', WAIT_MS)
    const ups = events.filter((e) => e.kind === 'scale')
    expect(ups.map((e) => e.kind === 'scale' && [e.from, e.to])).toEqual([[1, 2], [2, 3]])
    expect(ups.every((e) => e.kind === 'scale' && /jobs waiting|oldest job/.test(e.reason))).toBe(true)
    expect(formatEvent(ups[0]!)).toMatch(/^gated:gate: 1 → 2 workers \(\d+ jobs waiting, [\d.]+ per worker > 2\)$/)

    // Open the gate: every instance completes, the pool goes idle, and it scales down to min.
    writeFileSync(path.join(markers, 'open'), '')
    await until(async () => (await p.db.pool.query("select count(*)::int as n from praxis.instances where tenant_id = $1 and workflow = 'gated' and status = 'running'", [TENANT])).rows[0].n === 0,
      async () => `every instance to end; jobs left: ${JSON.stringify((await p.db.pool.query('select attempts, max_attempts, locked_by, last_error from graphile_worker._private_jobs')).rows)}`, WAIT_MS)
    const { rows: ended } = await p.db.pool.query("select status, count(*)::int as n from praxis.instances where tenant_id = $1 and workflow = 'gated' group by status", [TENANT])
    expect(ended).toEqual([{ status: 'completed', n: 50 }])
    await until(async () => (await workerRows()).length === 1 && supervisor.status()[0]!.ready === 1, 'scaling down to min', WAIT_MS)
    // Down one step at a time, each after the pool was idle (a job coming back meanwhile may bring one up again).
    const downs = events.filter((e) => e.kind === 'scale' && e.to < e.from)
    expect(downs.length).toBeGreaterThanOrEqual(2)
    expect(downs.every((e) => e.kind === 'scale' && e.to === e.from - 1 && e.reason.startsWith('idle for'))).toBe(true)
    expect(most).toBeLessThanOrEqual(3)
    expect(events.every((e) => e.kind !== 'scale' || e.to <= 3)).toBe(true)
    // The instances ran on the supervised workers, more than one of them.
    const { rows } = await p.db.pool.query("select count(distinct (result->>'pid'))::int as n from praxis.instances where tenant_id = $1 and workflow = 'gated'", [TENANT])
    expect(rows[0].n).toBeGreaterThan(1)

    await supervisor.stop()
    expect(await workerRows()).toEqual([])
    expect(supervisor.status()[0]).toMatchObject({ ready: 0, starting: 0, restarting: 0, stopping: 0, pids: [] })
  }, E2E_MS)

  it('restarts a worker killed with SIGKILL', async () => {
    const events: SupervisorEvent[] = []
    const supervisor = new Supervisor({
      tenantId: TENANT, dirs: ['test/fixtures/gated'], databaseUrl: p.db.url, db: p.db.pool, log: silent,
      min: 1, max: 1, sampleMs: 200, restartMs: 100,
      env: { PRAXIS_LEASE_MS: '3000', LOG_LEVEL: 'warn' }, onEvent: (event) => record(events, event),
    })
    onTestFinished(() => supervisor.stop())
    await supervisor.start()
    await supervisor.ready()
    const [victim] = supervisor.status()[0]!.pids
    const [victimId] = supervisor.status()[0]!.workerIds
    process.kill(victim!, 'SIGKILL')
    await until(() => events.some((e) => e.kind === 'exited' && e.pid === victim && !e.expected), 'the death to be seen', WAIT_MS)
    expect(formatEvent(events.find((e) => e.kind === 'exited' && e.pid === victim)!)).toBe(`gated:gate: worker ${victim} died (signal SIGKILL); restarting it in 0.1 s`)
    await supervisor.ready()
    await until(() => supervisor.status()[0]!.ready === 1, 'a replacement worker', WAIT_MS)
    const [replacement] = supervisor.status()[0]!.workerIds
    expect(replacement).not.toBe(victimId)
    expect(events.filter((e) => e.kind === 'spawned').map((e) => e.kind === 'spawned' && e.cause)).toEqual(['start', 'restart'])
    // The killed worker's row goes once its lease runs out (the replacement's sweeper): one worker, the new one.
    await until(async () => JSON.stringify((await workerRows()).map((r) => r.id)) === JSON.stringify([replacement]), 'the dead worker swept', WAIT_MS)
    await supervisor.stop()
    expect(await workerRows()).toEqual([])
  }, E2E_MS)

  it('backs off a worker that keeps dying and says what to do', async () => {
    const events: SupervisorEvent[] = []
    // Its workers exit at once: the tenant does not exist.
    const supervisor = new Supervisor({
      tenantId: 'ghost', dirs: ['test/fixtures/gated'], databaseUrl: p.db.url, db: p.db.pool, log: silent,
      min: 1, max: 1, sampleMs: 200, restartMs: 100, env: { LOG_LEVEL: 'silent' }, onEvent: (event) => record(events, event),
    })
    onTestFinished(() => supervisor.stop())
    await supervisor.start()
    await until(() => events.some((e) => e.kind === 'crash-loop'), 'a crash loop to be reported', WAIT_MS)
    const deaths = events.filter((e) => e.kind === 'exited')
    expect(deaths.slice(0, 3).map((e) => e.kind === 'exited' && [e.expected, e.wasReady, e.restartInMs])).toEqual([[false, false, 100], [false, false, 200], [false, false, 400]])
    const loop = events.find((e) => e.kind === 'crash-loop')!
    expect(formatEvent(loop)).toMatch(/^gated:gate: its workers keep dying \(3 in a row, last: exit code 1 before it was ready\)\. Their error is in the log above: fix the service or its environment .*tries again in 0\.4 s/)
    await supervisor.stop()
    expect(supervisor.status()[0]).toMatchObject({ ready: 0, starting: 0, restarting: 0, pids: [] })
  }, E2E_MS)
})

// ---------------------------------------------------------------------------------------------

describe('praxis dev', () => {
  let db: TestDatabase
  let dev: ChildProcess | undefined
  beforeAll(async () => { db = await createTestDatabase() })
  afterAll(async () => {
    if (dev && dev.exitCode === null) dev.kill('SIGKILL')
    await db?.drop()
  })

  it('prints "[5/5] … ready" once its workers are registered, and names a deployed service it has no folder for', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'praxis-dev-'))
    dev = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'dev', 'test/fixtures/counter', '--no-demo'], {
      env: { ...process.env, DATABASE_URL: db.url, PRAXIS_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const exited = new Promise<number | null>((resolve) => dev!.once('exit', (code) => resolve(code)))
    const lines: string[] = []
    const registeredAtReady: { pools: string[] }[][] = []
    createInterface({ input: dev.stdout! }).on('line', (line) => {
      lines.push(line)
      // Read at once, before dev goes on: what is registered when it says ready.
      if (line.startsWith('[5/5]')) void db.pool.query("select pools from praxis.workers where tenant_id = 'dev'").then(({ rows }) => registeredAtReady.push(rows))
    })
    await until(() => registeredAtReady.length > 0, '[5/5]', 90_000)
    expect(lines.find((l) => l.startsWith('[5/5]'))).toMatch(/^\[5\/5\] workers ready: 1 process\(es\) for tenant "dev", 1\.\.2 per pool: counter:default/)
    expect(registeredAtReady[0]).toEqual([{ pools: ['counter:default'] }])

    // It serves: an instance completes.
    const url = /API listening on (\S+)/.exec(lines.find((l) => l.startsWith('[4/5]'))!)![1]!
    const key = readFileSync(path.join(dataDir, 'dev-api-key'), 'utf8').trim()
    const call = async (method: 'GET' | 'POST', route: string, body?: unknown) => {
      const response = await fetch(new URL(route, url), { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) })
      return { status: response.status, body: await response.json() as any }
    }
    const started = await call('POST', '/v1/workflows/counter/instances', { input: {} })
    expect(started.status).toBe(201)
    expect((await call('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=30000`)).body.status).toBe('completed')

    // A service deployed to its tenant from a folder it was not started with: dev says so.
    const manifest = await readGeneratedManifest('test/fixtures/gated')
    const deployed = await call('POST', '/v1/services/gated/deployments', { code: (await buildBundle('test/fixtures/gated')).code, manifest })
    expect(deployed.status).toBe(201)
    expect(deployed.body.unservedPools).toEqual(['gated:gate'])
    await until(() => lines.some((l) => l.startsWith('note: service gated is deployed to tenant "dev", but praxis dev was not started with its folder')), 'the note on gated', WAIT_MS)

    dev.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect((await db.pool.query("select count(*)::int as n from praxis.workers where tenant_id = 'dev'")).rows[0].n).toBe(0)
  }, E2E_MS)
})
