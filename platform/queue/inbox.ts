/** The instance inbox's jobs: an event appended with the evaluate job that wakes its instance. */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import { addEvaluateJobSql } from './jobs.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/**
 * Appends an event and enqueues an evaluation of the instance on its tenant's evaluate task (the
 * tenant the event row is written for, so the instance's own), at the head of the tenant's fair
 * queue. Returns false when `dedupeKey` was seen before.
 *
 * The evaluate job is deliberately not keyed by instance: graphile-worker 0.17's add_jobs clears
 * the key of a locked job, then upserts with `where locked_at is null`; a worker that locks the
 * job between those two statements makes the upsert a no-op, and the event is left with no job
 * after the running one has read its inbox (seen under a fan-out of 20). Unkeyed, each event has
 * its own job; the first evaluation consumes the whole inbox and the others find it empty.
 */
export async function appendEvent(client: Queryable, e: { tenantId: string; instanceId: string; kind: 'signal' | 'result' | 'failure' | 'redeploy'; payload: Json; dedupeKey?: string | null }): Promise<boolean> {
  const { rows } = await client.query<{ id: string }>({
    name: 'praxis_append_event_v2',
    text: `with ev as (
      insert into praxis.events (tenant_id, instance_id, kind, payload, dedupe_key) values ($1, $2, $3, $4, $5)
      on conflict (tenant_id, instance_id, kind, dedupe_key) where dedupe_key is not null do nothing returning id)
    select ev.id, (select ${addEvaluateJobSql('$1::text', '$2::uuid')}) is not null as queued
    from ev`,
    values: [e.tenantId, e.instanceId, e.kind, JSON.stringify(e.payload), e.dedupeKey ?? null],
  })
  return rows.length > 0
}

/**
 * Appends several events to one instance's inbox (a micro-batch's results), in order, with one
 * evaluate job: the evaluation that job runs consumes them all.
 */
export async function appendEvents(client: Queryable, tenantId: string, instanceId: string, events: readonly { kind: 'result' | 'failure'; payload: Json }[]): Promise<void> {
  if (events.length === 0) return
  await client.query({
    name: 'praxis_append_events',
    text: `with ev as (
      insert into praxis.events (tenant_id, instance_id, kind, payload)
      select $1, $2, e.kind, e.payload from rows from (jsonb_to_recordset($3) as (kind text, payload jsonb)) with ordinality as e(kind, payload, ord) order by e.ord
      returning id)
    select (select ${addEvaluateJobSql('$1::text', '$2::uuid')}) is not null as queued where exists (select 1 from ev)`,
    values: [tenantId, instanceId, JSON.stringify(events)],
  })
}
