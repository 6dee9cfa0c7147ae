/** Reads of graphile-worker's job table: the depth of a tenant's queues (the supervisor scales on it). */
import type pg from 'pg'
import { invokeTask } from '../store/index.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/** One pool's queue, as sampled now. */
export interface QueueSample {
  /** Jobs ready to run (due, unlocked, attempts left) and not taken yet. */
  depth: number
  /** How long the oldest of them has been due, in ms (0 when none). */
  oldestAgeMs: number
  /** Jobs locked by a worker: running, or held by a dead one until the sweeper releases them. */
  running: number
}

/**
 * Samples the invoke queues of `pools` of `tenantId` in one statement over graphile-worker's job
 * table (a pool with no job is absent from the map). A job's wait counts from when it was added or
 * came due, whichever is later: its run_at alone may be an ordering key in the past (fair share).
 */
export async function sampleQueues(client: Queryable, tenantId: string, pools: readonly string[]): Promise<Map<string, QueueSample>> {
  const tasks = new Map(pools.map((p) => [invokeTask(tenantId, p), p]))
  const { rows } = await client.query<{ identifier: string; depth: number; oldest_ms: number; running: number }>({
    name: 'praxis_sample_queues',
    text: `select t.identifier,
        count(*) filter (where j.is_available and j.run_at <= now())::int as depth,
        coalesce(floor(extract(epoch from now() - min(greatest(j.created_at, j.run_at)) filter (where j.is_available and j.run_at <= now())) * 1000), 0)::float8 as oldest_ms,
        count(*) filter (where j.locked_at is not null)::int as running
      from graphile_worker._private_tasks t join graphile_worker._private_jobs j on j.task_id = t.id
      where t.identifier = any($1::text[])
      group by t.identifier`,
    values: [[...tasks.keys()]],
  })
  return new Map(rows.map((r) => [tasks.get(r.identifier)!, { depth: r.depth, oldestAgeMs: Math.max(0, r.oldest_ms), running: r.running }]))
}
