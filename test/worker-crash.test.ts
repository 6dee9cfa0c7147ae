/**
 * A worker killed mid-function loses nothing: its lease runs out, its job is released, another
 * worker runs the invocation again (the lost run counts as an attempt) and the workflow completes,
 * with the reaction applied once.
 * A worker stopped with SIGTERM or SIGINT (Ctrl-C) mid-function lets the function finish, records
 * its result, and leaves: nothing runs twice, and no lease is left to expire.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest'
import { until } from './support/wait.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
const markers = mkdtempSync(path.join(tmpdir(), 'praxis-crash-'))
beforeAll(async () => {
  process.env.PRAXIS_TEST_MARKER_DIR = markers
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/crashy')).status).toBe(201)
})
afterAll(async () => p?.close())


/**
 * Starts crashy in a child worker process, kills it while slowStep runs, then lets a worker of
 * this process finish: the invocation runs again and the reaction is applied once.
 * With `warm`, slowStep is the second step, which the child dispatched to itself eagerly.
 */
async function killMidFunction(n: number, warm: boolean): Promise<void> {
  const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'worker', '--tenant', 'acme', 'test/fixtures/crashy'], {
    env: { ...process.env, DATABASE_URL: p.db.url, PRAXIS_LEASE_MS: '1000', PRAXIS_TEST_MARKER_DIR: markers, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // A failed assertion must not leave the child serving the next test's instances.
  onTestFinished(() => { child.kill('SIGKILL') })
  const started = await p.request('POST', '/v1/workflows/crashy/instances', { input: { n, warm } })
  expect(started.status).toBe(201)
  const marker = path.join(markers, `started-${n}`)
  await until(() => existsSync(marker), 'the function to start in the child worker')
  expect(Number(readFileSync(marker, 'utf8'))).toBe(child.pid)
  // Who holds slowStep's job: graphile-worker's runner, or (eager dispatch) the Praxis worker itself.
  const { rows: [held] } = await p.db.pool.query(
    "select j.locked_by from graphile_worker._private_jobs j join praxis.invocations i on i.id::text = j.payload->>'id' where i.instance_id = $1 and i.function = 'slowStep'", [started.body.id])
  if (warm) expect(held.locked_by).toMatch(/^praxis-worker-/)
  else expect(held.locked_by).not.toMatch(/^praxis-worker-/)

  child.kill('SIGKILL')
  await exited
  const running = await p.request('GET', `/v1/instances/${started.body.id}`)
  expect(running.body.status).toBe('running')

  const worker = await p.startWorker('test/fixtures/crashy', { leaseMs: 1000 })
  const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=30000`)
  expect(done.body.status).toBe('completed')
  expect(done.body.result).toEqual({ doubled: n * 2 })
  const { rows } = await p.db.pool.query("select function, status, attempts from praxis.invocations where instance_id = $1 and function = 'slowStep'", [started.body.id])
  // The run lost with the killed worker counts as an attempt (main: attempts 1, nothing in the timeline).
  expect(rows).toEqual([{ function: 'slowStep', status: 'succeeded', attempts: 2 }])
  const timeline = await p.request('GET', `/v1/instances/${started.body.id}/timeline`)
  expect(timeline.body.entries.filter((e: { kind: string; data: { function?: string } }) => e.kind === 'invocation.succeeded' && e.data.function === 'slowStep')).toHaveLength(1)
  expect(timeline.body.entries.filter((e: { kind: string; data: { function?: string } }) => e.kind === 'invocation.lost').map((e: { data: unknown }) => e.data))
    .toEqual([expect.objectContaining({ function: 'slowStep', attempt: 1, failure: expect.objectContaining({ kind: 'lost' }) })])
  const { rows: workers } = await p.db.pool.query('select count(*)::int as n from praxis.workers')
  expect(workers[0].n).toBe(1)
  await worker.stop()
  p.workers.splice(p.workers.indexOf(worker), 1)
}

it('re-runs the invocation of a killed worker and completes the workflow', async () => {
  await killMidFunction(21, false)
})

it('re-runs an eagerly dispatched invocation of a killed worker', async () => {
  await killMidFunction(22, true)
})

/** Starts crashy in a child worker whose slowStep finishes after 1.5 s, and stops it with `signals` mid-function. */
async function stopMidFunction(n: number, signals: ('SIGTERM' | 'SIGINT')[]): Promise<void> {
  const child = spawn(process.execPath, ['--no-node-snapshot', 'bin/praxis.js', 'worker', '--tenant', 'acme', 'test/fixtures/crashy'], {
    env: { ...process.env, DATABASE_URL: p.db.url, PRAXIS_TEST_MARKER_DIR: markers, PRAXIS_TEST_FINISH_MS: '1500', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  onTestFinished(() => { child.kill('SIGKILL') })
  const started = await p.request('POST', '/v1/workflows/crashy/instances', { input: { n, warm: false } })
  expect(started.status).toBe(201)
  await until(() => existsSync(path.join(markers, `started-${n}`)), 'the function to start in the child worker')
  for (const signal of signals) child.kill(signal)
  // It waits for the function (1.5 s), records the result, then exits cleanly.
  expect(await exited).toBe(0)
  const done = await p.request('GET', `/v1/instances/${started.body.id}`)
  expect(done.body).toMatchObject({ status: 'completed', result: { doubled: n * 2 } })
  const { rows } = await p.db.pool.query("select status, attempts from praxis.invocations where instance_id = $1 and function = 'slowStep'", [started.body.id])
  expect(rows).toEqual([{ status: 'succeeded', attempts: 1 }])
  // It left no lease behind for the sweeper ("missed its lease"), and no job.
  const { rows: [left] } = await p.db.pool.query("select (select count(*) from praxis.workers)::int as workers, (select count(*) from graphile_worker._private_jobs where locked_by is not null)::int as locked")
  expect(left).toEqual({ workers: 0, locked: 0 })
}

it('lets the running function finish when its worker gets SIGTERM, and runs nothing twice', async () => {
  await stopMidFunction(23, ['SIGTERM'])
})

it('does the same on Ctrl-C (SIGINT)', async () => {
  await stopMidFunction(24, ['SIGINT'])
})

it('does the same on Ctrl-C under praxis dev, where the terminal and dev signal the worker at once', async () => {
  await stopMidFunction(25, ['SIGINT', 'SIGTERM'])
})
