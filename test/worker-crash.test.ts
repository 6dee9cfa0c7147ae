/**
 * A worker killed mid-function loses nothing: its lease runs out, its job is released, another
 * worker runs the invocation again and the workflow completes, with the reaction applied once.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
const markers = mkdtempSync(path.join(tmpdir(), 'praxis-crash-'))
beforeAll(async () => {
  process.env.PRAXIS_TEST_MARKER_DIR = markers
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/crashy')).status).toBe(201)
})
afterAll(async () => p?.close())

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

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
  expect(rows).toEqual([{ function: 'slowStep', status: 'succeeded', attempts: 1 }])
  const timeline = await p.request('GET', `/v1/instances/${started.body.id}/timeline`)
  expect(timeline.body.entries.filter((e: { kind: string; data: { function?: string } }) => e.kind === 'invocation.succeeded' && e.data.function === 'slowStep')).toHaveLength(1)
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
