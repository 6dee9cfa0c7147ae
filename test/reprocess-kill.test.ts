/**
 * Always on, across a killed server: a deploy's background reprocessing run walks the service's
 * running instances in keyset batches, each its own transaction that moves the run's cursor. Here
 * the `praxis worker` process walking it is SIGKILLed mid-walk (no signal handler runs, the batch in
 * flight is rolled back by PostgreSQL); the run stays running at its cursor, and a new worker
 * process takes the run's job once the dead worker's lease has run out, walks on from the cursor
 * and finishes. Every instance the changed rule matches gets exactly one redeploy event for the
 * run and one evaluation, and the rule fires once on it; no other instance is given anything.
 * (test/always-on.test.ts stops a walk between batches with `shouldStop`; this one kills it.)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest'
import { codegen } from '../codegen/index.js'
import { REPROCESS_BATCH } from '../platform/engine/index.js'
import { WORKER_READY } from '../platform/pools/index.js'
import { reprocessTask } from '../platform/queue/index.js'
import { runReached, until } from './support/wait.js'
import { startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const FIXTURE = path.resolve('test/fixtures/always-on')
const SERVICE = 'always-on'
/**
 * Running orders copied in SQL from one real order: enough batches (of REPROCESS_BATCH) that the
 * walk takes long enough to be killed part-way on a loaded 2-core machine.
 */
const COPIES = 60_000
/** The copies' amounts are 0.0 to 99.9 (v1's `check`, over 100, holds on none); v2 checks over 98: 98.1 to 99.9, 19 in 1000. */
const V2_THRESHOLD = 98
/** Lease of the worker processes: the killed one's job is released this long after its last heartbeat. */
const LEASE_MS = 1000

let p: TestPlatform
let tmp: string | undefined
beforeAll(async () => {
  p = await startTestPlatform()
})
afterAll(async () => {
  await p?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

interface RunRow { status: string; total: number; walked: number; queued: number; cursor: string | null }
const runRow = async (id: string): Promise<RunRow> => {
  const { rows: [row] } = await p.db.pool.query<RunRow>('select status, total, walked, queued, cursor::text from praxis.reprocessing where tenant_id = $1 and id = $2', [TENANT, id])
  if (!row) throw new Error(`reprocessing run ${id} of tenant ${TENANT} is not in praxis.reprocessing`)
  return row
}

/** A `praxis worker` process for the tenant, serving `dir`; resolves once it says it is ready. */
async function startWorkerProcess(dir: string): Promise<{ child: ChildProcess; exited: Promise<NodeJS.Signals | number | null> }> {
  const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'worker', '--tenant', TENANT, dir], {
    env: { ...process.env, DATABASE_URL: p.db.url, PRAXIS_LEASE_MS: String(LEASE_MS), PRAXIS_RETENTION_SCHEDULE: 'off', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // A failed assertion must not leave the process running past the test (or the database's drop).
  onTestFinished(() => { child.kill('SIGKILL') })
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)))
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  await Promise.race([
    until(() => out.includes(WORKER_READY), () => `the praxis worker process (pid ${child.pid}) to print "${WORKER_READY}"; its stdout so far: ${JSON.stringify(out)}`, 60_000),
    exited.then((how) => { throw new Error(`the praxis worker process exited (${how}) before it was ready; its stdout: ${JSON.stringify(out)}`) }),
  ])
  return { child, exited }
}

it('resumes an always-on deploy\'s reprocessing run after its worker process is killed mid-walk, and never processes an instance twice for the deployment', async () => {
  const t0 = Date.now()
  const timings: Record<string, number> = {}
  const mark = (what: string): void => { timings[what] = Date.now() - t0 }

  // v1 of a copy of the always-on fixture (its imports stay relative to the repository).
  tmp = await mkdtemp(path.resolve('test', '.tmp-reprocess-kill-'))
  const dir = path.join(tmp, SERVICE)
  await cp(FIXTURE, dir, { recursive: true })
  await codegen({ dir })
  expect((await p.deploy(dir)).status).toBe(201)
  mark('v1 deployed')

  // One real order, evaluated by the API (no worker yet): `check` and `finish` do not hold on it.
  const seed = await p.request('POST', '/v1/workflows/order/instances', { input: { amount: 10 } })
  expect(seed.status).toBe(201)
  const seedId = seed.body.id as string
  expect((await p.request('GET', `/v1/instances/${seedId}`)).body).toMatchObject({ status: 'running', facts: { amount: 10, done: false, reviews: 0 } })
  const { rows: [settled] } = await p.db.pool.query<{ unconsumed: number }>('select count(*)::int as unconsumed from praxis.events where tenant_id = $1 and instance_id = $2 and consumed_at is null', [TENANT, seedId])
  expect(settled!.unconsumed, 'the seed order must be settled before it is copied').toBe(0)
  mark('seed started')
  // COPIES more with new ids and amounts, every other column (rule state, revision, bundle,
  // facts version) the seed's own: as if each had been started and evaluated under v1.
  const inserted = await p.db.pool.query(
    `insert into praxis.instances
     select copy.* from praxis.instances i, generate_series(1, $3::int) g,
       lateral jsonb_populate_record(null::praxis.instances, to_jsonb(i) || jsonb_build_object(
         'id', gen_random_uuid(), 'idempotency_key', null,
         'facts', i.facts || jsonb_build_object('amount', round((g % 1000) / 10.0, 1)))) copy
     where i.tenant_id = $1 and i.id = $2`, [TENANT, seedId, COPIES])
  expect(inserted.rowCount).toBe(COPIES)
  mark('copies inserted')
  await p.db.pool.query('analyze praxis.instances')
  const { rows: matchRows } = await p.db.pool.query<{ id: string }>(
    `select id::text from praxis.instances where tenant_id = $1 and service = $2 and status = 'running' and (facts->>'amount')::numeric > $3`, [TENANT, SERVICE, V2_THRESHOLD])
  const matching = new Set(matchRows.map((r) => r.id))
  expect(matching.size).toBe(Array.from({ length: COPIES }, (_, k) => ((k + 1) % 1000) / 10).filter((amount) => amount > V2_THRESHOLD).length)
  mark('instances inserted')

  // The first worker process, then v2, which lowers `check`'s threshold: a run over every running order.
  const first = await startWorkerProcess(dir)
  mark('first worker ready')
  const file = path.join(dir, 'workflows.ts')
  await writeFile(file, (await readFile(file, 'utf8')).replace(/f\.amount\.gt\(\d+\)/, `f.amount.gt(${V2_THRESHOLD})`))
  await codegen({ dir })
  const deployed = await p.deploy(dir)
  expect(deployed.status).toBe(201)
  expect(deployed.body).toMatchObject({ version: 2, reevaluating: COPIES + 1, changes: [{ workflow: 'invoice', changed: [] }, { workflow: 'order', changed: ['check'] }] })
  const runId = deployed.body.reprocessing.id as string
  const total = COPIES + 1
  mark('v2 deployed')

  // Kill the worker process as soon as the walk is part-way (a killed server mid-walk).
  let seen: RunRow = await runRow(runId)
  const deadline = Date.now() + 60_000
  while (!(seen.walked > 0 && seen.walked < total)) {
    if (seen.status !== 'running' || seen.walked >= total) {
      throw new Error(`the walk finished before the test could kill its worker mid-walk (run ${runId}: ${JSON.stringify(seen)}): nothing was tested. Raise COPIES in test/reprocess-kill.test.ts so the walk takes longer`)
    }
    if (Date.now() > deadline) throw new Error(`the first worker process never began walking run ${runId} within 60 s: ${JSON.stringify(seen)}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
    seen = await runRow(runId)
  }
  first.child.kill('SIGKILL')
  expect(await first.exited).toBe('SIGKILL')
  mark('first worker killed')
  const killedAt = await runRow(runId)
  if (killedAt.status !== 'running') {
    throw new Error(`the walk finished between the test seeing it part-way (${seen.walked}/${total}) and the kill landing (run ${runId}: ${JSON.stringify(killedAt)}): nothing was tested. Raise COPIES in test/reprocess-kill.test.ts so the walk takes longer`)
  }
  // Part-way: whole batches committed, the cursor after exactly the walked instances, and the
  // batch in flight at the kill rolled back (no redeploy event beyond the ones counted as queued).
  expect(killedAt.walked).toBeGreaterThan(0)
  expect(killedAt.walked).toBeLessThan(total)
  expect(killedAt.walked % REPROCESS_BATCH).toBe(0)
  expect(killedAt.cursor).not.toBeNull()
  const { rows: [upTo] } = await p.db.pool.query<{ n: number }>(
    `select count(*)::int as n from praxis.instances where tenant_id = $1 and service = $2 and status = 'running' and id <= $3::uuid`, [TENANT, SERVICE, killedAt.cursor])
  expect(upTo!.n).toBe(killedAt.walked)
  const { rows: [before] } = await p.db.pool.query<{ events: number; matched: number }>(
    `select count(*)::int as events, count(*) filter (where (i.facts->>'amount')::numeric > $3)::int as matched
     from praxis.events e join praxis.instances i on i.tenant_id = e.tenant_id and i.id = e.instance_id
     where e.tenant_id = $1 and e.kind = 'redeploy' and e.payload->>'r' = $2`, [TENANT, runId, V2_THRESHOLD])
  expect(before).toEqual({ events: killedAt.queued, matched: killedAt.queued })
  expect(killedAt.queued).toBeGreaterThan(0)
  expect(killedAt.queued).toBeLessThan(matching.size)
  // The run's job is still held by the dead worker: only its lease running out gives it back.
  const { rows: jobs } = await p.db.pool.query<{ locked_by: string | null; attempts: number }>(
    'select locked_by, attempts from graphile_worker.jobs where task_identifier = $1', [reprocessTask(TENANT)])
  expect(jobs).toEqual([{ locked_by: expect.any(String), attempts: 1 }])

  // A new worker process (a restarted server): it sweeps the dead worker after the lease, takes the
  // run's job again and walks on from the cursor.
  await startWorkerProcess(dir)
  mark('second worker ready')
  await until(async () => (await runRow(runId)).status !== 'running', async () => `run ${runId} to be walked to its end by the second worker: ${JSON.stringify(await runRow(runId))}`, 60_000)
  mark('walk done')
  const done = await runReached(p, SERVICE, runId)
  mark('run done and evaluated')
  expect(done).toMatchObject({ status: 'done', total, walked: total, queued: matching.size, evaluated: matching.size, fired: matching.size, failed: 0 })
  // Every review the rule called is recorded and its reaction applied.
  await until(async () => {
    const { rows: [left] } = await p.db.pool.query<{ n: number }>(
      `select (select count(*) from praxis.events where tenant_id = $1 and consumed_at is null) + (select count(*) from praxis.invocations where tenant_id = $1 and status = 'pending') as n`, [TENANT])
    return Number(left!.n) === 0
  }, 'every event consumed and every review recorded', 60_000)
  mark('reviews settled')

  // Exactly one redeploy event for this run on each matching order, none on any other.
  const { rows: events } = await p.db.pool.query<{ instance_id: string; n: number }>(
    "select instance_id::text, count(*)::int as n from praxis.events where tenant_id = $1 and kind = 'redeploy' and payload->>'r' = $2 group by instance_id", [TENANT, runId])
  expect(events.filter((e) => e.n !== 1), 'orders given more than one redeploy event by the run').toEqual([])
  expect(events.filter((e) => !matching.has(e.instance_id)), 'orders given a redeploy event the changed rule does not match').toEqual([])
  expect(events).toHaveLength(matching.size)
  // One evaluation each under v2, where `check` fired once.
  const { rows: reprocessed } = await p.db.pool.query<{ instance_id: string; fired: number; failed: boolean }>(
    'select instance_id::text, fired, failed from praxis.reprocessed where tenant_id = $1 and reprocessing_id = $2', [TENANT, runId])
  expect(reprocessed).toHaveLength(matching.size)
  expect(reprocessed.filter((r) => !matching.has(r.instance_id) || r.fired !== 1 || r.failed)).toEqual([])
  // The rule's reaction applied once per matching order (reviews 1), never on the others (0).
  const { rows: reviews } = await p.db.pool.query<{ matched: boolean; reviews: number; n: number }>(
    `select (facts->>'amount')::numeric > $3 as matched, (facts->>'reviews')::int as reviews, count(*)::int as n
     from praxis.instances where tenant_id = $1 and service = $2 group by 1, 2 order by 1, 2`, [TENANT, SERVICE, V2_THRESHOLD])
  expect(reviews).toEqual([{ matched: false, reviews: 0, n: total - matching.size }, { matched: true, reviews: 1, n: matching.size }])
  const { rows: [calls] } = await p.db.pool.query<{ invocations: number; instances: number; succeeded: number }>(
    `select count(*)::int as invocations, count(distinct instance_id)::int as instances, count(*) filter (where status = 'succeeded')::int as succeeded
     from praxis.invocations where tenant_id = $1 and function = 'review'`, [TENANT])
  expect(calls).toEqual({ invocations: matching.size, instances: matching.size, succeeded: matching.size })
  // The run's job is gone (completed by the second worker), not left to be retried.
  const { rows: left } = await p.db.pool.query('select id from graphile_worker.jobs where task_identifier = $1', [reprocessTask(TENANT)])
  expect(left).toEqual([])
  mark('checked')
  process.stdout.write(`reprocess-kill: ${total} instances, ${matching.size} matching; killed at ${killedAt.walked} walked, ${killedAt.queued} queued; timings (ms from start): ${JSON.stringify(timings)}\n`)
}, 240_000)
