/** Instance rows: creating, locking for an evaluation, and writing an evaluation's results. */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import type { InvocationRow } from './invocations.js'

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
  /** The version of the workflow's facts schema the facts are in (a workflow's `factsVersion`). */
  facts_version: number
  rule_state: Record<string, boolean>
  pending: PendingEvent[]
}

/** An event an evaluation will consume; `at` is when it was appended (ms since the epoch). */
export interface PendingEvent { id: string; kind: 'signal' | 'result' | 'failure' | 'redeploy'; payload: { name?: string; payload?: Json; invocationId?: string; version?: number; r?: number }; at?: number }

const PENDING_SQL = `select coalesce(jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id), '[]') as pending
  from praxis.events e where e.tenant_id = $1 and e.instance_id = $2 and e.consumed_at is null`

const LOCK_SQL = `
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.facts_version, i.rule_state
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
  update praxis.invocations v set status = r.status, output = r.output, failure = r.failure, attempts = greatest(v.attempts, r.attempts), finished_at = now()
  from rows from (jsonb_to_recordset($3) as (id uuid, status text, output jsonb, failure jsonb, attempts int)) with ordinality as r(id, status, output, failure, attempts, ord)
  where v.tenant_id = $1 and v.id = r.id and v.status = 'pending' returning v.*, r.ord)
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.facts_version, i.rule_state,
  coalesce((select json_agg(row_to_json(fin) order by fin.ord) from fin), '[]') as finished,
  coalesce((select jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id)
            from praxis.events e where e.tenant_id = i.tenant_id and e.instance_id = i.id and e.consumed_at is null), '[]') as pending
from praxis.instances i join praxis.services s on s.tenant_id = i.tenant_id and s.name = i.service
where i.tenant_id = $1 and i.id = $2
for no key update of i nowait`

/** A final result of an invocation, as stored. */
export type FinishedResult = { status: 'succeeded'; output: Json; attempts: number } | { status: 'failed'; failure: Json; attempts: number }

/**
 * Finishes pending invocations of one instance (one, or a micro-batch's) and locks the instance
 * (NOWAIT) in one statement. 'busy' when another evaluation holds the instance (nothing was
 * written); `finished` holds, in the order given, those that were still pending (an invocation
 * already final ran twice: its result must not react again).
 */
export async function finishAndLock(client: Queryable, ref: { tenant_id: string; instance_id: string }, results: readonly { invocationId: string; result: FinishedResult }[]): Promise<'busy' | { instance: LockedInstance | null; finished: InvocationRow[] }> {
  try {
    const { rows } = await client.query<LockedInstance & { finished: InvocationRow[] }>({
      name: 'praxis_finish_and_lock_v2',
      text: FINISH_AND_LOCK_SQL,
      values: [ref.tenant_id, ref.instance_id, JSON.stringify(resultRows(results))],
    })
    const row = rows[0]
    if (!row) return { instance: null, finished: [] }
    const { finished, ...instance } = row
    return { instance, finished }
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') return 'busy'
    throw error
  }
}

/** What one evaluation writes, all in one statement (platform/queue composes it with the jobs it adds). */
export interface EvaluationWrite {
  tenantId: string
  instanceId: string
  bundleId: string
  status: LockedInstance['status']
  facts: Record<string, Json>
  /** The facts' version, when this evaluation migrated them (else the stored one stays). */
  factsVersion?: number | null
  ruleState: Record<string, boolean>
  result: Json | null
  error: Json | null
  /** Keep the stored result and error (an ended instance that stays ended), instead of writing these. */
  keepOutcome?: boolean
  timeline: { kind: string; rule: string | null; data: unknown }[]
  /**
   * New invocations. `batch` numbers the micro-batch a call is queued in (calls of one number share
   * a job; null: a job of its own); `canWaitMs`, how long a deferred call may wait for idle capacity.
   */
  calls: { rule: string; function: string; pool: string; input: Json; key: string | null; priority: number; retry: unknown; timeoutMs: number; fairnessKey: string | null; batch: number | null; canWaitMs: number | null }[]
  consumedEventIds: string[]
  /** The reprocessing runs whose redeploy events this evaluation consumed, and what it did (their progress). */
  reprocessed?: { id: number; fired: number; failed: boolean }[]
  /** Whether the instance ends with this write (wakes long-polling readers). */
  ended: boolean
}

/** The parameters of the step write's praxis-schema parts, by name and type. */
export const STEP_PARAMS = {
  tenant: 'text',
  instance: 'uuid',
  facts: 'jsonb',
  ruleState: 'jsonb',
  status: 'text',
  result: 'jsonb',
  error: 'jsonb',
  bundle: 'bigint',
  timeline: 'jsonb',
  calls: 'jsonb',
  consumed: 'bigint[]',
  ended: 'boolean',
  reprocessed: 'jsonb',
  keepOutcome: 'boolean',
  factsVersion: 'int',
  // The optimistic fused step's guard (both null on a locked instance): the revision the evaluation
  // read, and the invocation results it records (one, or a micro-batch's: [{ id, status, output,
  // failure, attempts }]).
  expectedRevision: 'int',
  results: 'jsonb',
} as const

type StepParams = { readonly [K in keyof typeof STEP_PARAMS]: string }

/** The values of STEP_PARAMS for one write. */
export function stepValues(w: EvaluationWrite, guard?: { expectedRevision: number; results: readonly { invocationId: string; result: FinishedResult }[] }): { [K in keyof typeof STEP_PARAMS]: unknown } {
  return {
    tenant: w.tenantId, instance: w.instanceId, facts: JSON.stringify(w.facts), ruleState: JSON.stringify(w.ruleState), status: w.status,
    result: JSON.stringify(w.result), error: JSON.stringify(w.error), bundle: w.bundleId, timeline: JSON.stringify(w.timeline), calls: JSON.stringify(w.calls),
    consumed: w.consumedEventIds, ended: w.ended, reprocessed: w.reprocessed?.length ? JSON.stringify(w.reprocessed) : null, keepOutcome: w.keepOutcome === true,
    factsVersion: w.factsVersion ?? null,
    expectedRevision: guard?.expectedRevision ?? null,
    results: guard ? JSON.stringify(resultRows(guard.results)) : null,
  }
}

/** Invocation results as rows for `jsonb_to_recordset` (the fused step's and finishAndLock's). */
function resultRows(results: readonly { invocationId: string; result: FinishedResult }[]): { id: string; status: string; output: Json | null; failure: Json | null; attempts: number }[] {
  return results.map(({ invocationId, result: r }) => ({
    id: invocationId, status: r.status, output: r.status === 'succeeded' ? r.output : null, failure: r.status === 'failed' ? r.failure : null, attempts: r.attempts,
  }))
}

/**
 * The step write's praxis-schema parts, in order. With a guard (the optimistic fused step, no
 * lock held) `fin` finishes the invocations (every one, or the write does not apply), and `inst` applies only when the instance is still at
 * the revision read, its inbox is empty (an event queued before this result is applied first, by
 * the locked path, whatever the facts' size) and its row lock is free: `lk` takes it with NOWAIT,
 * so a busy instance raises 55P03 at once instead of waiting. An instance that moved raises 40001
 * (`moved`), so the finish rolls back too.
 *
 *   fin        the invocations' results (guarded writes only)
 *   lk         the instance's row lock, NOWAIT (guarded writes only)
 *   inst       the instance row; its revision, service and workflow
 *   tl         timeline entries
 *   inv        new invocations (deduplicated by call key); `flow` is the fair-share flow of each
 *   ev         consumed events
 *   rp         what this evaluation did for the reprocessing runs whose events it consumed
 *   ended      NOTIFY for long-polling readers when the instance ends
 *   parent_fin a child that ends finishes its parent's invocation …
 *   parent_ev  … and queues the parent's evaluation (its job: platform/queue)
 */
export const STEP_PARTS: readonly (readonly [string, (p: StepParams) => string])[] = [
  ['fin', (p) => `
  update praxis.invocations v set status = r.status, output = r.output, failure = r.failure, attempts = greatest(v.attempts, r.attempts), finished_at = now()
  from jsonb_to_recordset(coalesce(${p.results}, '[]')) as r(id uuid, status text, output jsonb, failure jsonb, attempts int)
  where v.tenant_id = ${p.tenant} and v.id = r.id and v.status = 'pending' returning v.id`],
  ['lk', (p) => `
  select 1 from praxis.instances where ${p.expectedRevision} is not null and tenant_id = ${p.tenant} and id = ${p.instance} for no key update nowait`],
  ['inst', (p) => `
  update praxis.instances set facts = ${p.facts}, rule_state = ${p.ruleState}, status = ${p.status},
    result = case when ${p.keepOutcome} then result else ${p.result} end, error = case when ${p.keepOutcome} then error else ${p.error} end,
    bundle_id = ${p.bundle}, facts_version = coalesce(${p.factsVersion}, facts_version), revision = revision + 1, updated_at = now()
  where tenant_id = ${p.tenant} and id = ${p.instance}
    and (${p.expectedRevision} is null or (revision = ${p.expectedRevision} and exists (select 1 from lk)
      and not exists (select 1 from praxis.events e where e.tenant_id = ${p.tenant} and e.instance_id = ${p.instance} and e.consumed_at is null)))
    and (${p.results} is null or (select count(*) from fin) = jsonb_array_length(${p.results}))
  returning revision, service, workflow, facts_version`],
  ['tl', (p) => `
  insert into praxis.timeline (tenant_id, instance_id, revision, kind, rule, data)
  select ${p.tenant}, ${p.instance}, inst.revision, t.kind, t.rule, coalesce(t.data, '{}')
  from inst, rows from (jsonb_to_recordset(${p.timeline}) as (kind text, rule text, data jsonb)) with ordinality as t(kind, rule, data, ord) order by t.ord`],
  ['inv', (p) => `
  insert into praxis.invocations (tenant_id, instance_id, rule, function, pool, input, call_key, priority, retry, timeout_ms, fairness_key, batch_no, defer_until)
  select ${p.tenant}, ${p.instance}, c.rule, c.function, c.pool, c.input, c.key, c.priority, c.retry, c."timeoutMs", c."fairnessKey", c.batch,
    now() + c."canWaitMs" * interval '1 millisecond'
  from inst, jsonb_to_recordset(${p.calls}) as c(rule text, function text, pool text, input jsonb, key text, priority int, retry jsonb, "timeoutMs" int, "fairnessKey" text, batch int, "canWaitMs" int)
  on conflict (tenant_id, instance_id, call_key) where call_key is not null do nothing
  returning id, rule, function, pool, input, call_key, priority, retry, timeout_ms, (select service from inst) || coalesce('/' || fairness_key, '') as flow, batch_no, defer_until`],
  ['ev', (p) => `
  update praxis.events set consumed_at = now() where tenant_id = ${p.tenant} and id = any(${p.consumed}) and consumed_at is null and exists (select 1 from inst) returning id`],
  ['rp', (p) => `
  insert into praxis.reprocessed (tenant_id, reprocessing_id, instance_id, fired, failed)
  select ${p.tenant}, r.id, ${p.instance}, r.fired, r.failed from inst, jsonb_to_recordset(coalesce(${p.reprocessed}, '[]')) as r(id bigint, fired int, failed boolean)
  on conflict do nothing returning 1`],
  ['ended', (p) => `
  select pg_notify('praxis_instance_ended', ${p.tenant} || ':' || ${p.instance}) from inst where ${p.ended}`],
  ['parent_fin', (p) => `
  update praxis.invocations v set status = case when ${p.status} = 'completed' then 'succeeded' else 'failed' end,
    output = case when ${p.status} = 'completed' then ${p.result} end,
    failure = case when ${p.status} <> 'completed' then jsonb_build_object('kind', case when ${p.status} = 'cancelled' then 'cancelled' else 'fatal' end,
      'message', 'child workflow ' || c.service || '.' || c.workflow || ' ' || ${p.status} || coalesce(': ' || (${p.error}->>'message'), ''), 'attempts', 1) end,
    attempts = 1, finished_at = now()
  from praxis.instances c
  where ${p.ended} and exists (select 1 from inst) and c.tenant_id = ${p.tenant} and c.id = ${p.instance} and c.parent_invocation_id is not null
    and v.tenant_id = ${p.tenant} and v.id = c.parent_invocation_id and v.status = 'pending'
  returning v.id, v.instance_id, v.status`],
  ['parent_ev', (p) => `
  insert into praxis.events (tenant_id, instance_id, kind, payload)
  select ${p.tenant}, instance_id, case when status = 'succeeded' then 'result' else 'failure' end, jsonb_build_object('invocationId', id) from parent_fin
  returning instance_id`],
]

/** The step write's praxis-schema figures, for its final select. */
export const STEP_FIGURES = `(select revision from inst) as revision, (select count(*) from inv)::int as invocations, (select count(*) from ended) as notified,
  (select count(*) from ev)::int as consumed, (select count(*) from fin)::int as finished,
  case when exists (select 1 from fin) and not exists (select 1 from inst) then praxis.instance_moved() end as moved`

const READ_SQL = `
select i.tenant_id, i.id, i.service, i.workflow, i.bundle_id::text, s.active_bundle_id::text, i.status, i.revision, i.facts, i.facts_version, i.rule_state,
  coalesce((select jsonb_agg(jsonb_build_object('id', e.id::text, 'kind', e.kind, 'payload', e.payload, 'at', floor(extract(epoch from e.created_at) * 1000)) order by e.id)
            from praxis.events e where e.tenant_id = i.tenant_id and e.instance_id = i.id and e.consumed_at is null), '[]') as pending
from praxis.instances i join praxis.services s on s.tenant_id = i.tenant_id and s.name = i.service
where i.tenant_id = $1 and i.id = $2`

/** Reads an instance as an evaluation needs it, without a lock (the optimistic fused step). */
export async function readInstance(client: Queryable, tenantId: string, instanceId: string): Promise<LockedInstance | null> {
  const { rows } = await client.query<LockedInstance>({ name: 'praxis_read_instance', text: READ_SQL, values: [tenantId, instanceId] })
  return rows[0] ?? null
}

/** The instance, and its invocation, that started a child workflow. */
export interface ParentLink { instanceId: string; invocationId: string }

/** Inserts a new instance (or returns the one with the same idempotency key). */
export async function insertInstance(client: Queryable, row: { tenantId: string; service: string; workflow: string; bundleId: string; facts: Record<string, Json>; factsVersion?: number; idempotencyKey: string | null; parent?: ParentLink | null }): Promise<{ id: string; created: boolean }> {
  const inserted = await client.query<{ id: string }>(
    `insert into praxis.instances (tenant_id, service, workflow, bundle_id, facts, idempotency_key, parent_instance_id, parent_invocation_id, facts_version) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     on conflict (tenant_id, service, workflow, idempotency_key) where idempotency_key is not null do nothing returning id`,
    [row.tenantId, row.service, row.workflow, row.bundleId, JSON.stringify(row.facts), row.idempotencyKey, row.parent?.instanceId ?? null, row.parent?.invocationId ?? null, row.factsVersion ?? 1],
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
  /** The version of the workflow's facts schema the facts are in. */
  factsVersion: number
  result: Json | null
  error: Json | null
  bundleVersion: number
  createdAt: string
  updatedAt: string
}

const VIEW = `select i.id, i.workflow, i.service, i.status, i.revision, i.facts, i.facts_version as "factsVersion", i.result, i.error, b.version as "bundleVersion", i.created_at as "createdAt", i.updated_at as "updatedAt"
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
