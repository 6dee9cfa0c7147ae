/**
 * A wide fan-out joins correctly: 20 chunk results race for one instance (optimistic writes that
 * move, NOWAIT locks that find it busy, queued events and evaluate jobs), and every result reacts
 * exactly once. Regression: an event once lost its evaluate job to a graphile-worker job_key race.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

let p: TestPlatform
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('examples/video-encoding')).status).toBe(201)
  await p.startWorker('examples/video-encoding', { concurrency: 8 })
})
afterAll(async () => p?.close())

it('joins 20 parallel chunk results, each reacted to once, in every round', async () => {
  for (let round = 0; round < 4; round++) {
    const started = await p.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: `s3://in/${round}.mov`, recipe: 'h264', durationSeconds: 600 } })
    expect(started.status).toBe(201)
    const done = await p.request('GET', `/v1/instances/${started.body.id}?wait=completed&timeoutMs=20000`)
    const pending = await p.db.pool.query('select id from praxis.events where instance_id = $1 and consumed_at is null', [started.body.id])
    expect({ status: done.body.status, encoded: done.body.facts.encoded, pendingEvents: pending.rowCount }).toEqual({ status: 'completed', encoded: 20, pendingEvents: 0 })
    expect(Object.keys(done.body.facts.chunks)).toHaveLength(20)
    const { rows } = await p.db.pool.query("select count(*)::int as n from praxis.timeline where instance_id = $1 and kind = 'invocation.succeeded' and data->>'function' = 'encodeChunk'", [started.body.id])
    expect(rows[0].n).toBe(20)
  }
})
