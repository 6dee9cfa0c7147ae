/**
 * The queue's contract with graphile-worker's private schema. Praxis inserts invoke jobs straight
 * into graphile_worker._private_jobs inside the step's statement (platform/queue): such a job must
 * be the row `add_jobs` would write, and graphile-worker must fetch, fail, retry, give up on and
 * complete it exactly as it does one of its own. Start-up refuses another schema version. The
 * step write is built from named parts with named parameters.
 */
import { run, type Runner } from 'graphile-worker'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkQueueSchema, QUEUE_SCHEMA_VERSION, statement, STEP_WRITE_SQL } from '../platform/queue/index.js'
import { quietLogger } from '../platform/store/index.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/queueing')).status).toBe(201)
})
afterAll(async () => p?.close())

const TASK = 'praxis.invoke.acme.queueing:default'
// Every column but the ones that differ by nature (id, payload, when).
const COLUMNS = 'task_id, job_queue_id, priority, attempts, max_attempts, last_error, locked_at, locked_by, key, revision, flags, is_available'
const row = async (id: string) => (await p.db.pool.query(`select ${COLUMNS}, run_at <= now() as runnable from graphile_worker._private_jobs where id = $1`, [id])).rows[0]

/** A job from the step write (a real start whose action calls `work`) and its twin from add_jobs, same task, payload and priority. */
async function twins(tag: string): Promise<{ direct: string; added: string }> {
  const started = await p.request('POST', '/v1/workflows/flood/instances', { input: { tag, count: 1, priority: 3 } })
  expect(started.status).toBe(201)
  const { rows: [direct] } = await p.db.pool.query<{ id: string; payload: unknown; priority: number }>(
    "select id::text, payload, priority from graphile_worker._private_jobs where payload->>'instance_id' = $1", [started.body.id])
  const { rows: [added] } = await p.db.pool.query<{ id: string }>(
    'select id::text from graphile_worker.add_jobs(array[row($1::text, $2::json, null, null, null, null, $3::int, $4::text[])::graphile_worker.job_spec])', [TASK, JSON.stringify(direct!.payload), direct!.priority, ['pool:queueing:default', 'service:queueing']])
  return { direct: direct!.id, added: added!.id }
}

describe('a directly inserted job behaves like one from add_jobs', () => {
  it('is the same row', async () => {
    const { direct, added } = await twins('same-row')
    expect(await row(direct)).toEqual(await row(added))
    expect(await row(direct)).toMatchObject({ attempts: 0, max_attempts: 25, locked_by: null, job_queue_id: null, key: null, flags: { 'pool:queueing:default': true, 'service:queueing': true }, is_available: true, runnable: true, priority: -3 })
  })

  it('is fetched, failed, retried, given up on and completed the same way by graphile-worker', async () => {
    await p.db.pool.query('delete from graphile_worker._private_jobs')
    const { direct, added } = await twins('lifecycle')
    const { direct: doomedDirect, added: doomedAdded } = await twins('doomed')
    // The doomed pair has one attempt left: its failure is its last.
    await p.db.pool.query('update graphile_worker._private_jobs set max_attempts = 1 where id = any($1::bigint[])', [[doomedDirect, doomedAdded]])
    const runs = new Map<string, number>()
    let runner: Runner | undefined
    try {
      runner = await run({
        pgPool: p.db.pool, concurrency: 2, noHandleSignals: true, pollInterval: 100, logger: quietLogger,
        taskList: {
          [TASK]: async (_payload, helpers) => {
            const n = (runs.get(helpers.job.id) ?? 0) + 1
            runs.set(helpers.job.id, n)
            if (n === 1) throw new Error(`first run of ${helpers.job.id} fails`)
          },
        },
      })
      const deadline = Date.now() + 20_000
      while ([direct, added, doomedDirect, doomedAdded].some((id) => !runs.has(id))) {
        if (Date.now() > deadline) throw new Error('graphile-worker did not fetch all four jobs')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      // Let the last failures land.
      for (;;) {
        const { rows } = await p.db.pool.query('select count(*)::int as n from graphile_worker._private_jobs where last_error is not null')
        if (rows[0].n === 4) break
        if (Date.now() > deadline) throw new Error('the failures were not recorded')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      // Failed once: the same attempts, error and backoff state for both of each pair.
      const failed = async (id: string) => {
        const { last_error: error, ...rest } = await row(id)
        return { ...rest, error: (error as string).replace(/\d+ fails/, 'N fails') }
      }
      expect(await failed(direct)).toEqual(await failed(added))
      expect(await failed(direct)).toMatchObject({ attempts: 1, locked_by: null, is_available: true, runnable: false, error: 'first run of N fails' })
      // Out of attempts: both stay, never handed out again.
      expect(await failed(doomedDirect)).toEqual(await failed(doomedAdded))
      expect(await row(doomedDirect)).toMatchObject({ attempts: 1, max_attempts: 1, is_available: false })
      // Due now: each is retried once more and completed (deleted).
      await p.db.pool.query('update graphile_worker._private_jobs set run_at = now() where id = any($1::bigint[])', [[direct, added]])
      await p.db.pool.query(`select pg_notify('jobs:insert', '{"count":2}')`)
      for (;;) {
        const { rows } = await p.db.pool.query('select id::text from graphile_worker._private_jobs where id = any($1::bigint[])', [[direct, added]])
        if (rows.length === 0) break
        if (Date.now() > deadline) throw new Error(`jobs ${rows.map((r) => r.id).join(', ')} were not completed`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect([runs.get(direct), runs.get(added), runs.get(doomedDirect), runs.get(doomedAdded)]).toEqual([2, 2, 1, 1])
    } finally {
      await runner?.stop()
    }
  })
})

describe('graphile-worker schema version', () => {
  it('accepts the version the SQL was written for and refuses another, saying what to do', async () => {
    await expect(checkQueueSchema(p.db.pool)).resolves.toBeUndefined()
    await p.db.pool.query('insert into graphile_worker.migrations (id) values ($1)', [QUEUE_SCHEMA_VERSION + 1])
    try {
      await expect(checkQueueSchema(p.db.pool)).rejects.toThrow(`graphile-worker's schema is at migration ${QUEUE_SCHEMA_VERSION + 1}, but Praxis writes jobs for migration ${QUEUE_SCHEMA_VERSION}`)
    } finally {
      await p.db.pool.query('delete from graphile_worker.migrations where id = $1', [QUEUE_SCHEMA_VERSION + 1])
    }
  })
})

describe('statements from named parts', () => {
  it('numbers each named parameter once, casts it to its type, and asks for every value by name', () => {
    const s = statement('t', { tenant: 'text', ids: 'bigint[]' }, [['a', (q) => `select id from x where tenant = ${q.tenant} and id = any(${q.ids})`]], (q) => `select ${q.tenant}, (select count(*) from a)`)
    expect(s.text).toBe('with a as (\n  select id from x where tenant = $1::text and id = any($2::bigint[]))\nselect $1::text, (select count(*) from a)')
    expect(s.values({ ids: [1], tenant: 'acme' })).toEqual(['acme', [1]])
    expect(() => s.values({ tenant: 'acme' } as never)).toThrow('statement t: parameter ids is missing')
    expect(() => statement('u', {}, [['a', () => 'select 1'], ['a', () => 'select 2']], () => 'select 1')).toThrow('statement u: two parts are named a')
  })

  it('builds the step write with no positional parameter left unnamed', () => {
    // Every placeholder carries its type, so none was written by hand as a bare $n.
    expect(STEP_WRITE_SQL).not.toMatch(/\$\d+(?!\d|::)/)
    for (const part of ['fin', 'lk', 'inst', 'tl', 'inv', 'ev', 'tasks', 'clock', 'flows', 'placed', 'eligible', 'jobs', 'woken', 'done']) expect(STEP_WRITE_SQL).toContain(`${part} as (`)
  })
})
