/**
 * Retention (issue: per-tenant retention for finished instances, consumed events, timeline entries
 * and invocations, run as a graphile-worker cron task). Data is made by real workflows where one
 * exists for it (counter: one call; approval: waits for a signal), aged by moving its timestamps
 * back, and purged for real on the embedded PostgreSQL; states no fixture reaches (parent and child
 * links, a pending invocation or an unconsumed event on a finished instance) are written as rows.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runAdmin } from '../platform/cli/admin.js'
import { DEFAULT_RETENTION, loadConfig, type Config, type RetentionPolicy } from '../platform/config.js'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { loadService, startWorker } from '../platform/pools/index.js'
import {
  ensureTenant, getTenantRetention, purgeExpired, purgeTenant, resolveRetention, retentionCronItems, retentionSettings, retentionTask, setTenantRetention,
} from '../platform/store/index.js'
import { silent, startTestPlatform, type TestPlatform } from './support/platform.js'

const POLICY: RetentionPolicy = { finishedDays: 30, eventsDays: 7, runningTimelineDays: null }

let p: TestPlatform
const keys = new Map<string, string>()
const built = new Map<string, { name: string; code: string; manifest: unknown }>()

/**
 * A tenant of its own for each test (so counts are exact whatever ran before): counter and
 * approvals deployed, and, with `worker`, a counter worker with no retention job of its own.
 */
async function tenant(id: string, options: { worker?: boolean } = {}): Promise<string> {
  const { apiKey } = await ensureTenant(p.db.pool, id)
  keys.set(id, apiKey)
  for (const dir of ['test/fixtures/counter', 'test/fixtures/approvals']) {
    let bundle = built.get(dir)
    if (!bundle) built.set(dir, (bundle = { name: (await loadService(dir)).name, code: (await buildBundle(dir)).code, manifest: await readGeneratedManifest(dir) }))
    const deployed = await p.request('POST', `/v1/services/${bundle.name}/deployments`, { code: bundle.code, ...(bundle.manifest ? { manifest: bundle.manifest } : {}) }, apiKey)
    expect(deployed.status).toBe(201)
  }
  if (options.worker ?? true) {
    const { functions } = await loadService('test/fixtures/counter')
    p.workers.push(await startWorker({ pool: p.db.pool, log: silent, tenantId: id, functions, concurrency: 2, leaseMs: 15_000, retention: false }))
  }
  return id
}

/** A counter instance of `tenantId`, run to completion by the worker: its timeline and one invocation. */
async function completedCounter(tenantId: string): Promise<string> {
  const started = await p.request('POST', '/v1/workflows/counter/instances', { input: {} }, keys.get(tenantId))
  expect(started.status).toBe(201)
  const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`, undefined, keys.get(tenantId))
  expect(done.body.status).toBe('completed')
  return started.body.id
}

/** An approval instance: running (waiting for its signal), or completed by a `decide` signal sent with `signalId`. */
async function approval(tenantId: string, signalId?: string): Promise<string> {
  const started = await p.request('POST', '/v1/workflows/approval/instances', { input: { item: 'invoice' } }, keys.get(tenantId))
  expect(started.status).toBe(201)
  if (signalId) {
    const sent = await p.request('POST', `/v1/instances/${started.body.id}/signals/decide`, { payload: { approve: true, by: 'ana' }, signalId }, keys.get(tenantId))
    expect(sent.status).toBe(202)
    const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`, undefined, keys.get(tenantId))
    expect(done.body.status).toBe('completed')
  }
  return started.body.id
}

/** Moves everything about these instances `days` into the past, as if it had happened then. */
async function age(ids: string[], days: number): Promise<void> {
  const back = [ids, days]
  await p.db.pool.query("update praxis.instances set created_at = created_at - $2 * interval '1 day', updated_at = updated_at - $2 * interval '1 day' where id = any($1::uuid[])", back)
  await p.db.pool.query("update praxis.timeline set at = at - $2 * interval '1 day' where instance_id = any($1::uuid[])", back)
  await p.db.pool.query("update praxis.events set created_at = created_at - $2 * interval '1 day', consumed_at = consumed_at - $2 * interval '1 day' where instance_id = any($1::uuid[])", back)
  await p.db.pool.query("update praxis.invocations set created_at = created_at - $2 * interval '1 day', finished_at = finished_at - $2 * interval '1 day' where instance_id = any($1::uuid[])", back)
}

type Counts = { instances: number; events: number; timeline: number; invocations: number }

/** Rows of these instances in each table. */
async function rowsOf(ids: string[]): Promise<Counts> {
  const { rows: [r] } = await p.db.pool.query<Counts>(
    `select (select count(*) from praxis.instances where id = any($1::uuid[]))::int as instances, (select count(*) from praxis.events where instance_id = any($1::uuid[]))::int as events,
       (select count(*) from praxis.timeline where instance_id = any($1::uuid[]))::int as timeline, (select count(*) from praxis.invocations where instance_id = any($1::uuid[]))::int as invocations`, [ids])
  return r!
}

const none: Counts = { instances: 0, events: 0, timeline: 0, invocations: 0 }
const countsOf = (r: Counts): Counts => ({ instances: r.instances, events: r.events, timeline: r.timeline, invocations: r.invocations })

/** Instance rows written directly, for states no fixture reaches; `finishedDaysAgo` null: running. */
async function rowInstance(tenantId: string, finishedDaysAgo: number | null, parent?: string): Promise<string> {
  const { rows: [row] } = await p.db.pool.query<{ id: string }>(
    `insert into praxis.instances (tenant_id, service, workflow, bundle_id, facts, status, parent_instance_id, created_at, updated_at)
     select $1, 'counter', 'counter', b.id, '{}', case when $2::float8 is null then 'running' else 'completed' end, $3::uuid,
       now() - coalesce($2::float8 + 1, 60) * interval '1 day', now() - coalesce($2::float8, 60) * interval '1 day'
     from praxis.bundles b where b.tenant_id = $1 and b.service = 'counter' order by b.id desc limit 1 returning id`, [tenantId, finishedDaysAgo, parent ?? null])
  await p.db.pool.query("insert into praxis.timeline (tenant_id, instance_id, revision, kind, at) values ($1, $2, 1, 'instance.started', now() - interval '60 days')", [tenantId, row!.id])
  return row!.id
}

beforeAll(async () => {
  p = await startTestPlatform()
})
afterAll(async () => p?.close())

describe('purgeExpired', () => {
  it('deletes finished instances past the retention with their events, timeline and invocations; keeps recent and running ones', async () => {
    const t = await tenant('finished-co')
    const old = [await completedCounter(t), await completedCounter(t), await completedCounter(t), await approval(t, 'sig-old')]
    const recent = [await completedCounter(t), await approval(t, 'sig-recent')]
    const running = await approval(t)
    await age(old, 40)
    await age([running], 40)
    // The running instance's inbox: consumed 10 days ago (one plain event, one signal sent with a
    // signalId) and 1 day ago.
    await p.db.pool.query(
      `insert into praxis.events (tenant_id, instance_id, kind, payload, dedupe_key, created_at, consumed_at) values
         ($1, $2, 'result', '{}', null, now() - interval '10 days', now() - interval '10 days'),
         ($1, $2, 'signal', '{}', 'sig-running', now() - interval '10 days', now() - interval '10 days'),
         ($1, $2, 'signal', '{}', null, now() - interval '1 day', now() - interval '1 day')`, [t, running])
    const before = { old: await rowsOf(old), recent: await rowsOf(recent), running: await rowsOf([running]) }
    // What the fixtures made: every counter one invocation, the approval its signal event.
    expect(before.old).toMatchObject({ instances: 4, invocations: 3 })
    expect(before.old.events).toBeGreaterThanOrEqual(1)
    expect(before.old.timeline).toBeGreaterThanOrEqual(4 * 2)
    expect(before.running).toMatchObject({ instances: 1, events: 3 })
    expect(before.running.timeline).toBeGreaterThan(0)

    const result = await purgeExpired(p.db.pool, t, POLICY)
    expect(result).toMatchObject({ complete: true, skipped: false })
    // The old instances' rows, and the running instance's plain event consumed 10 days ago.
    expect(countsOf(result)).toEqual({ ...before.old, events: before.old.events + 1 })
    expect(await rowsOf(old)).toEqual(none)
    expect(await rowsOf(recent)).toEqual(before.recent)
    // The running instance keeps its timeline, the signal sent with an id, the recent event.
    expect(await rowsOf([running])).toEqual({ ...before.running, events: 2 })
    const { rows } = await p.db.pool.query('select dedupe_key from praxis.events where instance_id = $1 order by id', [running])
    expect(rows).toEqual([{ dedupe_key: 'sig-running' }, { dedupe_key: null }])
    // Nothing more to do: a second purge deletes nothing.
    expect(countsOf(await purgeExpired(p.db.pool, t, POLICY))).toEqual(none)
  })

  it('keeps a finished instance a running parent or child is linked to, or with a pending invocation or an unconsumed event, until it has none', async () => {
    const t = await tenant('links-co', { worker: false })
    const parent = await rowInstance(t, null)
    const childOfRunning = await rowInstance(t, 40, parent)
    const finishedParent = await rowInstance(t, 40)
    const runningChild = await rowInstance(t, null, finishedParent)
    const withPending = await rowInstance(t, 40)
    await p.db.pool.query(`insert into praxis.invocations (tenant_id, instance_id, rule, function, pool, input, retry, timeout_ms, status)
      values ($1, $2, 'bump', 'bump', 'counter:default', '{}', '{}', 1000, 'pending')`, [t, withPending])
    const withInbox = await rowInstance(t, 40)
    await p.db.pool.query("insert into praxis.events (tenant_id, instance_id, kind, created_at) values ($1, $2, 'signal', now() - interval '40 days')", [t, withInbox])
    // Control: a finished child of a finished parent goes, and so does the parent.
    const gone = await rowInstance(t, 40)
    const goneChild = await rowInstance(t, 40, gone)
    const kept = [parent, childOfRunning, finishedParent, runningChild, withPending, withInbox]

    const first = await purgeExpired(p.db.pool, t, POLICY)
    expect(countsOf(first)).toEqual({ instances: 2, timeline: 2, events: 0, invocations: 0 })
    expect(await rowsOf([gone, goneChild])).toEqual(none)
    expect(await rowsOf(kept)).toEqual({ instances: 6, timeline: 6, events: 1, invocations: 1 })

    // Once the parent and the child end, and the invocation and the event are done with, they go too.
    await p.db.pool.query("update praxis.instances set status = 'completed', updated_at = now() - interval '40 days' where id = any($1::uuid[])", [[parent, runningChild]])
    await p.db.pool.query("update praxis.invocations set status = 'succeeded', finished_at = now() where instance_id = $1", [withPending])
    await p.db.pool.query('update praxis.events set consumed_at = now() where instance_id = $1', [withInbox])
    const second = await purgeExpired(p.db.pool, t, POLICY)
    expect(countsOf(second)).toEqual({ instances: 6, timeline: 6, events: 1, invocations: 1 })
    expect(await rowsOf(kept)).toEqual(none)
  })

  it('deletes in batches, each its own statement: 35 instances with a batch of 10', async () => {
    const t = await tenant('batches-co', { worker: false })
    const ids: string[] = []
    for (let n = 0; n < 35; n++) ids.push(await rowInstance(t, 40))
    const result = await purgeExpired(p.db.pool, t, POLICY, { batchSize: 10 })
    expect(countsOf(result)).toEqual({ instances: 35, timeline: 35, events: 0, invocations: 0 })
    // 10, 10, 10 and 5 instances: the fourth statement scanned fewer than a batch and was the last
    // of the instances; one more looked for consumed events.
    expect(result.batches).toBe(5)
    expect(await rowsOf(ids)).toEqual(none)
  })

  it('stops between batches when asked (time budget, worker stopping), and the next purge goes on', async () => {
    const t = await tenant('budget-co', { worker: false })
    const ids: string[] = []
    for (let n = 0; n < 25; n++) ids.push(await rowInstance(t, 40))
    let asked = 0
    const stopped = await purgeExpired(p.db.pool, t, POLICY, { batchSize: 10, shouldStop: () => ++asked > 2 })
    expect(stopped).toMatchObject({ complete: false, instances: 20, batches: 2 })
    expect((await rowsOf(ids)).instances).toBe(5)
    expect(await purgeExpired(p.db.pool, t, POLICY, { batchSize: 10 })).toMatchObject({ complete: true, instances: 5 })
    // A budget spent before the first statement deletes nothing; the next purge does.
    const more = [await rowInstance(t, 40)]
    expect(await purgeExpired(p.db.pool, t, POLICY, { budgetMs: 0 })).toMatchObject({ complete: false, instances: 0, batches: 0 })
    expect((await rowsOf(more)).instances).toBe(1)
    expect((await purgeExpired(p.db.pool, t, POLICY)).instances).toBe(1)
  })

  it('skips an instance another transaction has locked, and takes it on the next run', async () => {
    const t = await tenant('locks-co', { worker: false })
    const busy = await rowInstance(t, 40)
    const free = await rowInstance(t, 40)
    const client = await p.db.pool.connect()
    try {
      await client.query('begin')
      // What an evaluation holds.
      await client.query('select 1 from praxis.instances where tenant_id = $1 and id = $2 for no key update', [t, busy])
      expect(await purgeExpired(p.db.pool, t, POLICY)).toMatchObject({ complete: true, instances: 1 })
      expect((await rowsOf([busy])).instances).toBe(1)
      await client.query('commit')
    } finally {
      client.release()
    }
    expect((await purgeExpired(p.db.pool, t, POLICY)).instances).toBe(1)
    expect(await rowsOf([busy, free])).toEqual(none)
  })

  it('runs one purge of a tenant at a time: one started meanwhile does nothing', async () => {
    const t = await tenant('single-co', { worker: false })
    const other = await tenant('single-other', { worker: false })
    const id = await rowInstance(t, 40)
    const theirs = await rowInstance(other, 40)
    const client = await p.db.pool.connect()
    try {
      // What a running purge of the tenant holds.
      await client.query('select pg_advisory_lock(7211002, hashtext($1))', [t])
      expect(await purgeExpired(p.db.pool, t, POLICY)).toMatchObject({ skipped: true, instances: 0 })
      expect((await rowsOf([id])).instances).toBe(1)
      // Another tenant's purge is not held up.
      expect(await purgeExpired(p.db.pool, other, POLICY)).toMatchObject({ skipped: false, instances: 1 })
      expect((await rowsOf([theirs])).instances).toBe(0)
      await client.query('select pg_advisory_unlock(7211002, hashtext($1))', [t])
    } finally {
      client.release()
    }
    expect((await purgeExpired(p.db.pool, t, POLICY)).instances).toBe(1)
  })

  it('trims the timeline of running instances only when runningTimelineDays is set', async () => {
    const t = await tenant('timeline-co')
    const running = await approval(t)
    const finished = await completedCounter(t)
    await age([running, finished], 20)
    await p.db.pool.query("insert into praxis.timeline (tenant_id, instance_id, revision, kind) values ($1, $2, 1, 'signal.received')", [t, running])
    const before = { running: await rowsOf([running]), finished: await rowsOf([finished]) }
    expect(before.running.timeline).toBeGreaterThan(1)
    expect(countsOf(await purgeExpired(p.db.pool, t, POLICY))).toEqual(none)
    expect(await rowsOf([running])).toEqual(before.running)

    const trimmed = await purgeExpired(p.db.pool, t, { ...POLICY, runningTimelineDays: 10 })
    expect(countsOf(trimmed)).toEqual({ ...none, timeline: before.running.timeline - 1 })
    // Only the entry written now is left of the running instance's; the finished one keeps its own.
    const { rows } = await p.db.pool.query<{ kind: string }>('select kind from praxis.timeline where instance_id = $1', [running])
    expect(rows.map((r) => r.kind)).toEqual(['signal.received'])
    expect(await rowsOf([finished])).toEqual(before.finished)
  })
})

describe('per-tenant retention', () => {
  it("a tenant's own setting beats the default, and purging one tenant leaves another's data alone", async () => {
    const own = await tenant('own-co')
    const plain = await tenant('plain-co')
    const mine = [await completedCounter(own)]
    const theirs = [await completedCounter(plain)]
    await age([...mine, ...theirs], 5)
    const theirsBefore = await rowsOf(theirs)
    expect(await setTenantRetention(p.db.pool, own, { finishedDays: 1 })).toEqual({ finishedDays: 1 })
    const settings = retentionSettings({ finishedDays: 30 })

    expect((await purgeTenant(p.db.pool, own, settings)).instances).toBe(1)
    expect(await rowsOf(mine)).toEqual(none)
    expect(await rowsOf(theirs)).toEqual(theirsBefore)
    // The other tenant, on the default of 30 days, keeps its 5-day-old instance.
    expect((await purgeTenant(p.db.pool, plain, settings)).instances).toBe(0)
    expect(await rowsOf(theirs)).toEqual(theirsBefore)

    // null keeps for ever what the default would delete; 'default' gives the default back.
    const ancient = [await completedCounter(own)]
    await age(ancient, 400)
    expect(await setTenantRetention(p.db.pool, own, { finishedDays: null })).toEqual({ finishedDays: null })
    expect((await purgeTenant(p.db.pool, own, settings)).instances).toBe(0)
    expect(await setTenantRetention(p.db.pool, own, { finishedDays: 'default' })).toBeNull()
    expect((await purgeTenant(p.db.pool, own, settings)).instances).toBe(1)
    expect(await rowsOf(ancient)).toEqual(none)
    expect(await rowsOf(theirs)).toEqual(theirsBefore)
  })

  it('resolves the policy key by key and refuses settings out of range, in code and in the table', async () => {
    const t = await tenant('range-co', { worker: false })
    expect(resolveRetention(POLICY, null)).toEqual(POLICY)
    expect(resolveRetention(POLICY, { eventsDays: null, runningTimelineDays: 2 })).toEqual({ finishedDays: 30, eventsDays: null, runningTimelineDays: 2 })
    await expect(setTenantRetention(p.db.pool, t, { finishedDays: 0 })).rejects.toThrow(/above 0/)
    await expect(setTenantRetention(p.db.pool, t, { eventsDays: 40_000 })).rejects.toThrow(/at most 36500/)
    await expect(setTenantRetention(p.db.pool, 'nobody', { eventsDays: 1 })).rejects.toMatchObject({ code: 'PRX_TENANT_NOT_FOUND' })
    await expect(p.db.pool.query(`update praxis.tenants set retention = '{"finishedDays": "30"}' where id = $1`, [t])).rejects.toThrow(/tenants_retention/)
    await expect(p.db.pool.query(`update praxis.tenants set retention = '{"keepAll": true}' where id = $1`, [t])).rejects.toThrow(/tenants_retention/)
    await expect(p.db.pool.query(`update praxis.tenants set retention = '{"eventsDays": -1}' where id = $1`, [t])).rejects.toThrow(/tenants_retention/)
    expect(await getTenantRetention(p.db.pool, t)).toBeNull()
  })

  it("praxis tenants retention shows and sets a tenant's retention", async () => {
    const t = await tenant('cli-co', { worker: false })
    const config: Config = { ...loadConfig({}), databaseUrl: p.db.url }
    const lines: string[] = []
    expect(await runAdmin(config, 'tenants', { positionals: ['retention', t], finishedDays: '14', eventsDays: 'off' }, (l) => lines.push(l))).toBe(0)
    expect(await getTenantRetention(p.db.pool, t)).toEqual({ finishedDays: 14, eventsDays: null })
    expect(lines.join('\n')).toMatch(/--finished-days\s+finished instances.*\s14\s+30\s+14\n--events-days\s+consumed events\s+off\s+7\s+off\n--running-timeline-days\s.*\s-\s+off\s+off/)
    const old = await rowInstance(t, 20)
    lines.length = 0
    expect(await runAdmin(config, 'tenants', { positionals: ['retention', t], finishedDays: 'default', purge: true }, (l) => lines.push(l))).toBe(0)
    expect(await getTenantRetention(p.db.pool, t)).toEqual({ eventsDays: null })
    // The default (30 days) keeps the 20-day-old instance; 14 would not have.
    expect(lines.at(-1)).toMatch(/^purged 0 instances, 0 events, 0 timeline entries, 0 invocations/)
    expect(await runAdmin(config, 'tenants', { positionals: ['retention', t], finishedDays: '10', purge: true }, (l) => lines.push(l))).toBe(0)
    expect(lines.at(-1)).toMatch(/^purged 1 instances, 0 events, 1 timeline entries, 0 invocations/)
    expect(await rowsOf([old])).toEqual(none)
    await expect(runAdmin(config, 'tenants', { positionals: ['retention', t], finishedDays: 'soon' }, () => undefined)).rejects.toThrow(/--finished-days "soon"/)
  })

  it('takes its defaults from the environment', () => {
    expect(loadConfig({}).retention).toEqual(DEFAULT_RETENTION)
    expect(loadConfig({ PRAXIS_RETAIN_FINISHED_DAYS: '90', PRAXIS_RETAIN_EVENTS_DAYS: 'off', PRAXIS_RETAIN_RUNNING_TIMELINE_DAYS: '0.5', PRAXIS_RETENTION_SCHEDULE: 'off', PRAXIS_RETENTION_BATCH: '200' }).retention)
      .toEqual({ ...DEFAULT_RETENTION, finishedDays: 90, eventsDays: null, runningTimelineDays: 0.5, schedule: null, batchSize: 200 })
    expect(() => loadConfig({ PRAXIS_RETAIN_FINISHED_DAYS: '0' })).toThrow(/PRAXIS_RETAIN_FINISHED_DAYS/)
    expect(() => loadConfig({ PRAXIS_RETENTION_SCHEDULE: 'hourly' })).toThrow(/PRAXIS_RETENTION_SCHEDULE/)
    expect(() => retentionCronItems('acme', { schedule: '99 * * * *' })).toThrow(/PRAXIS_RETENTION_SCHEDULE/)
  })
})

describe('the retention job', () => {
  type Line = Record<string, unknown>
  /** A pino logger writing into `lines` (what the worker logs, kept to read). */
  const recorder = (lines: Line[]) => pino({ level: 'info' }, new Writable({ write(chunk, _encoding, done) { lines.push(JSON.parse(String(chunk)) as Line); done() } }))
  const purges = (lines: Line[]) => lines.filter((l) => l.msg === 'retention purge done')
  const until = async (done: () => Promise<boolean>): Promise<void> => {
    const deadline = Date.now() + 20_000
    while (!(await done()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  }

  it("runs on the tenant's workers as praxis.retention.<tenant>, and logs its counts", async () => {
    const t = await tenant('sweep-co')
    const old = [await completedCounter(t), await completedCounter(t)]
    await age(old, 40)
    const before = await rowsOf(old)
    const lines: Line[] = []
    const worker = await startWorker({ pool: p.db.pool, log: recorder(lines), tenantId: t, functions: [], concurrency: 1, leaseMs: 15_000, retention: { finishedDays: 30 } })
    try {
      await p.db.pool.query('select graphile_worker.add_job($1, $2::json)', [retentionTask(t), '{}'])
      await until(async () => (await rowsOf(old)).instances === 0 && purges(lines).length > 0)
    } finally {
      await worker.stop()
    }
    expect(await rowsOf(old)).toEqual(none)
    expect(purges(lines)[0]).toMatchObject({ level: 30, tenantId: t, ...countsOf(before), complete: true, finishedDays: '30', eventsDays: '7', runningTimelineDays: 'off' })
  })

  it('is scheduled by graphile-worker cron: a worker that starts after missed runs backfills them and purges once', async () => {
    const t = await tenant('cron-co')
    const old = [await completedCounter(t)]
    await age(old, 40)
    const identifier = retentionTask(t)
    // The schedule has been known for an hour and last ran 30 minutes ago: the tenant's workers
    // were all down since. A worker starting now backfills the runs missed meanwhile.
    await p.db.pool.query("insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution) values ($1, now() - interval '1 hour', now() - interval '30 minutes')", [identifier])
    const lines: Line[] = []
    const worker = await startWorker({ pool: p.db.pool, log: recorder(lines), tenantId: t, functions: [], concurrency: 1, leaseMs: 15_000, retention: { schedule: '*/5 * * * *' } })
    try {
      await until(async () => (await rowsOf(old)).instances === 0 && purges(lines).length > 0)
    } finally {
      await worker.stop()
    }
    expect(await rowsOf(old)).toEqual(none)
    // The missed runs (every 5 minutes) fold into one job by its key, or, run meanwhile, find nothing left.
    expect(purges(lines).reduce((n, l) => n + Number(l.instances), 0)).toBe(1)
    const { rows: [known] } = await p.db.pool.query<{ recent: boolean }>("select last_execution > now() - interval '6 minutes' as recent from graphile_worker._private_known_crontabs where identifier = $1", [identifier])
    expect(known!.recent).toBe(true)
  })

  it('is neither scheduled nor taken by a worker without retention', async () => {
    const t = await tenant('idle-co')
    expect(retentionCronItems(t, { schedule: null })).toEqual([])
    const worker = await startWorker({ pool: p.db.pool, log: silent, tenantId: t, functions: [], concurrency: 1, leaseMs: 15_000, retention: { schedule: null } })
    try {
      const { rows: [job] } = await p.db.pool.query<{ id: string }>('select (graphile_worker.add_job($1, $2::json)).id', [retentionTask(t), '{}'])
      // The tenant's workers run a whole instance meanwhile; the retention job is never taken.
      await completedCounter(t)
      const { rows: [still] } = await p.db.pool.query('select locked_by, attempts from graphile_worker._private_jobs where id = $1', [job!.id])
      expect(still).toEqual({ locked_by: null, attempts: 0 })
      await p.db.pool.query('delete from graphile_worker._private_jobs where id = $1', [job!.id])
    } finally {
      await worker.stop()
    }
  })
})
