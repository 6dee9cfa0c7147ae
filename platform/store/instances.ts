/** Instance rows: creating, locking for an evaluation, and writing an evaluation's results. */
import pg from 'pg'
import type { Json } from '../../sdk/index.js'
import type { InvocationRow } from './invocations.js'
import { evaluateTaskSql, invokeTask, invokeTaskSql } from './tasks.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/** An instance row as an evaluation sees it, with its service's active bundle and pending events. */
export interface LockedInstance {
  tenant_id: string
  id: string
  service: string
  workflow: string
  bundle_id: string
  active_bundle_id: string
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'paused'
  revision: number
  facts: Record<string, Json>
  rule_state: Record<string, boolean>
  pending: PendingEvent[]
}

/** An event an evaluation will consume; `at` is when it was appended (ms since the epoch). */
export interface PendingEvent { id: string; kind: 'signal' | 'result' | 'failure' | 'redeploy'; payload: { name?: string; payload?: Json; invocationId?: string; version?: number }; at?: number }

const PENDING_SQL = `select coalesce(jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id), '[]') as pending
  from praxis.events e where e.tenant_id = $1 and e.instance_id = $2 and e.consumed_at is null`

const LOCK_SQL = `
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.rule_state
from praxis.instances i join praxis.services s on s.tenant_id = i.tenant_id and s.name = i.service
where i.tenant_id = $1 and i.id = $2
for no key update of i`

/**
 * Locks an instance row for an evaluation (`FOR NO KEY UPDATE`, so event inserts, whose foreign
 * key takes KEY SHARE, are not blocked). With `nowait`, a busy row returns 'busy' at once.
 */
export async function lockInstance(client: Queryable, tenantId: string, instanceId: string, options: { nowait: boolean }): Promise<LockedInstance | 'busy' | null> {
  try {
    const { rows } = await client.query<LockedInstance>({ name: options.nowait ? 'praxis_lock_nowait' : 'praxis_lock', text: LOCK_SQL + (options.nowait ? ' nowait' : ''), values: [tenantId, instanceId] })
    const row = rows[0]
    if (row) {
      // The lock statement's snapshot can predate the commit of the evaluation that held the row
      // (it waited, or the holder committed between snapshot and lock): events read with it may be
      // consumed already. Read them in a new statement now that the lock is ours.
      const { rows: [fresh] } = await client.query<{ pending: PendingEvent[] }>({ name: 'praxis_pending_events', text: PENDING_SQL, values: [tenantId, instanceId] })
      row.pending = fresh!.pending
    }
    return row ?? null
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') return 'busy'
    throw error
  }
}

// The fused step's first statement: finish the invocation, lock its instance with NOWAIT and read
// the pending events, in one round trip. The events come from the statement's snapshot, which can
// predate the commit of an evaluation that just released the row; `writeEvaluation` reports how
// many it really consumed so the caller can detect that and take the queued path instead.
const FINISH_AND_LOCK_SQL = `
with fin as (
  update praxis.invocations set status = $4, output = $5, failure = $6, attempts = greatest(attempts, $7), finished_at = now()
  where tenant_id = $1 and id = $3 and status = 'pending' returning *)
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.rule_state,
  (select row_to_json(fin) from fin) as finished,
  coalesce((select jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id)
            from praxis.events e where e.tenant_id = i.tenant_id and e.instance_id = i.id and e.consumed_at is null), '[]') as pending
from praxis.instances i join praxis.services s on s.tenant_id = i.tenant_id and s.name = i.service
where i.tenant_id = $1 and i.id = $2
for no key update of i nowait`

/** A final result of an invocation, as stored. */
export type FinishedResult = { status: 'succeeded'; output: Json; attempts: number } | { status: 'failed'; failure: Json; attempts: number }

/**
 * Finishes a pending invocation and locks its instance (NOWAIT) in one statement. 'busy' when
 * another evaluation holds the instance (nothing was written); `finished` is null when the
 * invocation was already final.
 */
export async function finishAndLock(client: Queryable, ref: { tenant_id: string; id: string; instance_id: string }, result: FinishedResult): Promise<'busy' | { instance: LockedInstance | null; finished: InvocationRow | null }> {
  try {
    const { rows } = await client.query<LockedInstance & { finished: InvocationRow | null }>({
      name: 'praxis_finish_and_lock',
      text: FINISH_AND_LOCK_SQL,
      values: [ref.tenant_id, ref.instance_id, ref.id, result.status, result.status === 'succeeded' ? JSON.stringify(result.output) : null, result.status === 'failed' ? JSON.stringify(result.failure) : null, result.attempts],
    })
    const row = rows[0]
    if (!row) return { instance: null, finished: null }
    const { finished, ...instance } = row
    return { instance, finished }
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') return 'busy'
    throw error
  }
}

/** What one evaluation writes, all in one statement. */
export interface EvaluationWrite {
  tenantId: string
  instanceId: string
  bundleId: string
  status: LockedInstance['status']
  facts: Record<string, Json>
  ruleState: Record<string, boolean>
  result: Json | null
  error: Json | null
  timeline: { kind: string; rule: string | null; data: unknown }[]
  calls: { rule: string; function: string; pool: string; input: Json; key: string | null; priority: number; retry: unknown; timeoutMs: number }[]
  consumedEventIds: string[]
  /** Whether the instance ends with this write (wakes long-polling readers). */
  ended: boolean
}

// One round trip: the instance row, its timeline, new invocations (deduplicated by call key),
// their jobs (one NOTIFY for the whole fan-out), consumed events, and a child's result to its parent.
// With `expected` (the optimistic fused step, no lock held) it also finishes the invocation, and
// applies only if the instance is still at the revision the evaluation read and the invocation was
// still pending; an instance that moved meanwhile raises 40001 so the finish rolls back too.
const WRITE_SQL = `
with fin as (
  update praxis.invocations set status = $14, output = $15, failure = $16, attempts = greatest(attempts, $17), finished_at = now()
  where $13::uuid is not null and tenant_id = $1 and id = $13 and status = 'pending' returning id),
inst as (
  update praxis.instances set facts = $3, rule_state = $4, status = $5, result = $6, error = $7,
    bundle_id = $8, revision = revision + 1, updated_at = now()
  where tenant_id = $1 and id = $2 and ($12::int is null or revision = $12) and ($13::uuid is null or exists (select 1 from fin))
  returning revision, service, workflow),
tl as (
  insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
  select $1, $2, inst.revision, t.kind, t.rule, coalesce(t.data, '{}')
  from inst, rows from (jsonb_to_recordset($9) as (kind text, rule text, data jsonb)) with ordinality as t(kind, rule, data, ord) order by t.ord),
inv as (
  insert into praxis.invocations (tenant_id, instance_id, rule, function, pool, input, call_key, priority, retry, timeout_ms)
  select $1, $2, c.rule, c.function, c.pool, c.input, c.key, c.priority, c.retry, c."timeoutMs"
  from inst, jsonb_to_recordset($10) as c(rule text, function text, pool text, input jsonb, key text, priority int, retry jsonb, "timeoutMs" int)
  on conflict (tenant_id, instance_id, call_key) where call_key is not null do nothing
  returning id, rule, function, pool, input, call_key, priority, retry, timeout_ms),
ev as (
  update praxis.events set consumed_at = now() where tenant_id = $1 and id = any($11::bigint[]) and consumed_at is null and exists (select 1 from inst) returning id),
-- Invoke jobs go straight into graphile-worker 0.17's job table (no key, no queue, no flags), the
-- rows its add_jobs would write, without add_jobs' five statements; one 'jobs:insert' NOTIFY wakes
-- the workers as add_jobs would. The version is pinned and every test runs through this path.
-- Task rows are created beforehand (ensureTasks, committed): a task row committed by another
-- transaction after this statement's snapshot would be invisible here, so a missing one raises
-- (praxis.jobs_missing, 40001) rather than leave an invocation without its job.
-- The task is the instance's tenant's ($1) queue for the pool: a pool never names another tenant's.
tasks as (
  select id, identifier from graphile_worker._private_tasks where identifier in (select ${invokeTaskSql('$1::text', 'pool')} from inv)),
-- Eager dispatch: with an owner ($20), the first new invocation on a pool the writing worker serves
-- ($21) is inserted already locked by it, and the worker runs it at once, with no NOTIFY, fetch or
-- commit between the two steps; only when the worker serves this instance's tenant ($22 = $1), so
-- a worker never holds, let alone runs, another tenant's job. A worker that dies holding it is
-- swept like any other lock.
eligible as (
  select inv.id, row_number() over (order by inv.priority desc, inv.id) as n from inv
  where $20::text is not null and $22::text = $1::text and inv.pool = any($21::text[])),
jobs as (
  insert into graphile_worker._private_jobs (task_id, payload, priority, locked_at, locked_by)
  select tasks.id, json_build_object('tenant_id', $1::text, 'id', inv.id, 'instance_id', $2::uuid, 'rule', inv.rule, 'function', inv.function, 'pool', inv.pool,
      'input', inv.input, 'call_key', inv.call_key, 'priority', inv.priority, 'retry', inv.retry, 'timeout_ms', inv.timeout_ms, 'attempts', 0,
      -- The instance as this evaluation leaves it, so the worker need not read it (small facts only).
      'snapshot', case when octet_length($3::text) <= 8192 then json_build_object('revision', (select revision from inst), 'service', (select service from inst),
        'workflow', (select workflow from inst), 'status', $5::text, 'facts', $3::jsonb, 'rule_state', $4::jsonb, 'bundle_id', $8::bigint::text, 'active_bundle_id', $8::bigint::text) end),
    least(greatest(-inv.priority, -32768), 32767),
    case when e.n = 1 then now() end, case when e.n = 1 then $20::text end
  from inv join tasks on tasks.identifier = ${invokeTaskSql('$1::text', 'inv.pool')} left join eligible e on e.id = inv.id
  returning id, locked_by, payload),
woken as (select pg_notify('jobs:insert', '{"r":' || random()::text || ',"count":' || count(*)::text || '}') from jobs where locked_by is null having count(*) > 0),
notify as (select pg_notify('praxis_instance_ended', $1 || ':' || $2) from inst where $18::boolean),
-- A child workflow that ends finishes the parent's invocation it stands for (its result is the
-- output; failing or being cancelled is a fatal failure) and queues the parent's evaluation.
parent_fin as (
  update praxis.invocations v set status = case when $5 = 'completed' then 'succeeded' else 'failed' end,
    output = case when $5 = 'completed' then $6::jsonb end,
    failure = case when $5 <> 'completed' then jsonb_build_object('kind', case when $5 = 'cancelled' then 'cancelled' else 'fatal' end,
      'message', 'child workflow ' || c.service || '.' || c.workflow || ' ' || $5 || coalesce(': ' || ($7::jsonb->>'message'), ''), 'attempts', 1) end,
    attempts = 1, finished_at = now()
  from praxis.instances c
  where $18::boolean and exists (select 1 from inst) and c.tenant_id = $1 and c.id = $2 and c.parent_invocation_id is not null
    and v.tenant_id = $1 and v.id = c.parent_invocation_id and v.status = 'pending'
  returning v.id, v.instance_id, v.status),
parent_ev as (
  insert into praxis.events (tenant_id, instance_id, kind, payload)
  select $1, instance_id, case when status = 'succeeded' then 'result' else 'failure' end, jsonb_build_object('invocationId', id) from parent_fin
  returning instance_id),
parent_job as (select graphile_worker.add_job(${evaluateTaskSql('$1::text')}, json_build_object('t', $1::text, 'i', instance_id::text), max_attempts := 25) as job from parent_ev),
-- The fused step completes its own graphile-worker job in the same commit (a queue-less job, as
-- invoke jobs are): the worker's later completion then deletes nothing and writes no WAL, so a step
-- costs one durable commit, and a crash after it cannot run the function again.
done as (delete from graphile_worker._private_jobs where $19::bigint is not null and id = $19 and job_queue_id is null and exists (select 1 from inst) returning id)
select (select revision from inst) as revision, (select count(*) from inv)::int as invocations, (select count(*) from jobs)::int as jobs, (select count(*) from woken) as woken,
  (select count(*) from notify) as notified, (select count(*) from ev)::int as consumed, (select count(*) from fin)::int as finished,
  (select count(*) from done)::int as completed,
  (select json_build_object('jobId', id::text, 'payload', payload) from jobs where locked_by is not null limit 1) as eager, (select count(*) from parent_job)::int as parents,
  case when exists (select 1 from fin) and not exists (select 1 from inst) then praxis.instance_moved() end as moved,
  case when (select count(*) from jobs) <> (select count(*) from inv) then praxis.jobs_missing() end as stranded`

/** The optimistic fused step's guard: the revision read, and the invocation result to record with the write. */
export interface WriteGuard {
  expectedRevision: number
  invocationId: string
  result: FinishedResult
  /** The graphile-worker job running this invocation, completed by the same commit. */
  jobId?: string
  /**
   * Eager dispatch: lock the first new invocation on one of `pools` to `owner`, to run at once;
   * only when the instance belongs to `tenantId`, the tenant the worker serves.
   */
  eager?: { owner: string; tenantId: string; pools: string[] }
}

/** A job the write locked to the writing worker (eager dispatch): run it, then complete it. */
export interface EagerJob { jobId: string; payload: unknown }

/**
 * Writes an evaluation's results. With a guard, returns 'duplicate' when the invocation was no
 * longer pending and 'moved' when the instance changed since it was read (nothing written).
 */
export async function writeEvaluation(client: Queryable, w: EvaluationWrite, guard?: WriteGuard): Promise<{ revision: number; invocations: number; consumed: number; eager: EagerJob | null } | 'duplicate' | 'moved'> {
  const r = guard?.result
  try {
    const { rows } = await client.query<{ revision: number | null; invocations: number; consumed: number; finished: number; eager: EagerJob | null }>({
      name: 'praxis_write_evaluation',
      text: WRITE_SQL,
      values: [w.tenantId, w.instanceId, JSON.stringify(w.facts), JSON.stringify(w.ruleState), w.status, JSON.stringify(w.result), JSON.stringify(w.error), w.bundleId,
        JSON.stringify(w.timeline), JSON.stringify(w.calls), w.consumedEventIds, guard?.expectedRevision ?? null, guard?.invocationId ?? null,
        r?.status ?? null, r?.status === 'succeeded' ? JSON.stringify(r.output) : null, r?.status === 'failed' ? JSON.stringify(r.failure) : null, r?.attempts ?? null, w.ended, guard?.jobId ?? null, guard?.eager?.owner ?? null, guard?.eager?.pools ?? [], guard?.eager?.tenantId ?? null],
    })
    const row = rows[0]!
    if (guard && row.finished === 0) return 'duplicate'
    if (row.revision === null) return 'moved'
    return { revision: row.revision, invocations: row.invocations, consumed: row.consumed, eager: row.eager }
  } catch (error) {
    if (guard && (error as { code?: string }).code === '40001') return 'moved'
    throw error
  }
}

const READ_SQL = `
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.rule_state,
  coalesce((select jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id)
            from praxis.events e where e.tenant_id = i.tenant_id and e.instance_id = i.id and e.consumed_at is null), '[]') as pending
from praxis.instances i join praxis.services s on s.tenant_id = i.tenant_id and s.name = i.service
where i.tenant_id = $1 and i.id = $2`

/**
 * Creates graphile-worker task rows for `tenantId`'s invoke queues of `pools`, committed, so an
 * evaluation write can find them; each queue once per `known` set (it holds task identifiers).
 * `tenantId` is the tenant of the instance whose evaluation makes the calls. It runs on a
 * connection of its own, not one from the pool: its callers may hold pooled connections in open
 * transactions, and waiting for another from an exhausted pool would deadlock them.
 */
export async function ensureTasks(pool: pg.Pool, tenantId: string, pools: readonly string[], known: Set<string>): Promise<void> {
  const missing = [...new Set(pools.map((p) => invokeTask(tenantId, p)))].filter((t) => !known.has(t))
  if (missing.length === 0) return
  const client = new pg.Client(pool.options)
  await client.connect()
  try {
    await client.query('insert into graphile_worker._private_tasks (identifier) select unnest($1::text[]) on conflict do nothing', [missing])
  } finally {
    await client.end()
  }
  for (const t of missing) known.add(t)
}

/** Reads an instance as an evaluation needs it, without a lock (the optimistic fused step). */
export async function readInstance(client: Queryable, tenantId: string, instanceId: string): Promise<LockedInstance | null> {
  const { rows } = await client.query<LockedInstance>({ name: 'praxis_read_instance', text: READ_SQL, values: [tenantId, instanceId] })
  return rows[0] ?? null
}

/** The instance, and its invocation, that started a child workflow. */
export interface ParentLink { instanceId: string; invocationId: string }

/** Inserts a new instance (or returns the one with the same idempotency key). */
export async function insertInstance(client: Queryable, row: { tenantId: string; service: string; workflow: string; bundleId: string; facts: Record<string, Json>; idempotencyKey: string | null; parent?: ParentLink | null }): Promise<{ id: string; created: boolean }> {
  const inserted = await client.query<{ id: string }>(
    `insert into praxis.instances (tenant_id, service, workflow, bundle_id, facts, idempotency_key, parent_instance_id, parent_invocation_id) values ($1, $2, $3, $4, $5, $6, $7, $8)
     on conflict (tenant_id, service, workflow, idempotency_key) where idempotency_key is not null do nothing returning id`,
    [row.tenantId, row.service, row.workflow, row.bundleId, JSON.stringify(row.facts), row.idempotencyKey, row.parent?.instanceId ?? null, row.parent?.invocationId ?? null],
  )
  if (inserted.rows[0]) return { id: inserted.rows[0].id, created: true }
  const existing = await client.query<{ id: string }>('select id from praxis.instances where tenant_id = $1 and service = $2 and workflow = $3 and idempotency_key = $4', [row.tenantId, row.service, row.workflow, row.idempotencyKey])
  return { id: existing.rows[0]!.id, created: false }
}

/** An instance as the API shows it. */
export interface InstanceView {
  id: string
  workflow: string
  service: string
  status: LockedInstance['status']
  revision: number
  facts: Record<string, Json>
  result: Json | null
  error: Json | null
  bundleVersion: number
  createdAt: string
  updatedAt: string
}

const VIEW = `select i.id, i.workflow, i.service, i.status, i.revision, i.facts, i.result, i.error, b.version as "bundleVersion", i.created_at as "createdAt", i.updated_at as "updatedAt"
  from praxis.instances i join praxis.bundles b on b.tenant_id = i.tenant_id and b.id = i.bundle_id`

export async function getInstance(client: Queryable, tenantId: string, id: string): Promise<InstanceView | null> {
  const { rows } = await client.query<InstanceView>({ name: 'praxis_get_instance', text: `${VIEW} where i.tenant_id = $1 and i.id = $2`, values: [tenantId, id] })
  return rows[0] ?? null
}

/** Keyset-paginated list, newest first; `after` is the id of the previous page's last instance. */
export async function listInstances(client: Queryable, tenantId: string, filter: { workflow?: string | undefined; status?: string | undefined; limit: number; after?: string | undefined }): Promise<InstanceView[]> {
  // The cursor row's own created_at is compared in SQL, at full (microsecond) precision.
  const { rows } = await client.query<InstanceView>(
    `${VIEW} where i.tenant_id = $1 and ($2::text is null or i.workflow = $2 or i.service || '.' || i.workflow = $2) and ($3::text is null or i.status = $3)
     and ($4::uuid is null or (i.created_at, i.id) < (select c.created_at, c.id from praxis.instances c where c.tenant_id = $1 and c.id = $4))
     order by i.created_at desc, i.id desc limit $5`,
    [tenantId, filter.workflow ?? null, filter.status ?? null, filter.after ?? null, filter.limit],
  )
  return rows
}
