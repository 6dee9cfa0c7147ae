/**
 * A worker swept after stalling past its lease registers again (found on main: its heartbeat only
 * updated its row, never re-created it, so from then on it ran unprotected and, if it died, its
 * jobs stayed locked for graphile-worker's 4 hours).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
})
afterAll(async () => p?.close())

it('registers again when its row was swept, and keeps its lock ids there', async () => {
  const worker = await p.startWorker('test/fixtures/crashy', { leaseMs: 1000 })
  const row = async () => (await p.db.pool.query<{ id: string; tenant_id: string; lock_ids: string[] }>('select id, tenant_id, lock_ids from praxis.workers where id = $1', [worker.id])).rows[0]
  expect(await row()).toBeDefined()
  // What the sweeper does to a worker whose heartbeat is older than the lease.
  await p.db.pool.query('delete from praxis.workers where id = $1', [worker.id])
  const deadline = Date.now() + 10_000
  while (!(await row()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  const again = await row()
  expect(again).toMatchObject({ id: worker.id, tenant_id: 'acme' })
  expect(again!.lock_ids).toContain(worker.id)
})
