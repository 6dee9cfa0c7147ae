/** The instance inbox: events an evaluation will consume, and the evaluate job that wakes it. */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import { evaluateTaskSql } from './tasks.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/**
 * Appends an event and enqueues an evaluation of the instance on its tenant's evaluate task (the
 * tenant the event row is written for, so the instance's own). Returns false when `dedupeKey` was
 * seen before.
 *
 * The evaluate job is deliberately not keyed by instance (DESIGN.md asks for a job_key so bursts
 * coalesce): graphile-worker 0.17's add_jobs clears the key of a locked job, then upserts with
 * `where locked_at is null`; a worker that locks the job between those two statements makes the
 * upsert a no-op, and the event is left with no job after the running one has read its inbox
 * (seen here under a fan-out of 20). Unkeyed, each event has its own job; the first evaluation
 * consumes the whole inbox and the others find it empty (one lock and one read each).
 */
export async function appendEvent(client: Queryable, e: { tenantId: string; instanceId: string; kind: 'signal' | 'result' | 'failure' | 'redeploy'; payload: Json; dedupeKey?: string | null }): Promise<boolean> {
  const { rows } = await client.query<{ id: string }>({
    name: 'praxis_append_event',
    text: `with ev as (
      insert into praxis.events (tenant_id, instance_id, kind, payload, dedupe_key) values ($1, $2, $3, $4, $5)
      on conflict (tenant_id, instance_id, kind, dedupe_key) where dedupe_key is not null do nothing returning id)
    select ev.id, (select graphile_worker.add_job(${evaluateTaskSql('$1::text')}, json_build_object('t', $1::text, 'i', $2::text), max_attempts := 25)) is not null as queued
    from ev`,
    values: [e.tenantId, e.instanceId, e.kind, JSON.stringify(e.payload), e.dedupeKey ?? null],
  })
  return rows.length > 0
}

/**
 * After a deploy, gives every running instance of the service a `redeploy` event and an evaluate
 * job, in keyset batches, so changed and added rules reach old work (always on). Returns the count.
 */
export async function queueRedeploy(client: Queryable, tenantId: string, service: string, version: number, onBatch?: (done: number) => void): Promise<number> {
  let after = '00000000-0000-0000-0000-000000000000'
  let total = 0
  for (;;) {
    const { rows } = await client.query<{ n: number; last: string | null }>(
      `with batch as (
         select id from praxis.instances where tenant_id = $1 and service = $2 and status = 'running' and id > $3::uuid order by id limit 1000),
       ev as (
         insert into praxis.events (tenant_id, instance_id, kind, payload) select $1, id, 'redeploy', jsonb_build_object('version', $4::int) from batch returning instance_id),
       jobs as (
         select count(*) from graphile_worker.add_jobs(array(
           select row(${evaluateTaskSql('$1::text')}, json_build_object('t', $1::text, 'i', instance_id), null, null, 25, null, 0, null)::graphile_worker.job_spec from ev))
         where exists (select 1 from ev))
       select (select count(*) from ev)::int as n, (select max(id::text) from batch) as last, (select count(*) from jobs) as j`,
      [tenantId, service, after, version])
    const { n, last } = rows[0]!
    total += n
    if (!last || n === 0) return total
    onBatch?.(total)
    after = last
  }
}

/** Whether a signal with this id was delivered to the instance before. */
export async function signalDelivered(client: Queryable, tenantId: string, instanceId: string, signalId: string): Promise<boolean> {
  const { rowCount } = await client.query("select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and kind = 'signal' and dedupe_key = $3", [tenantId, instanceId, signalId])
  return (rowCount ?? 0) > 0
}
