/**
 * Always-on deploys as background jobs: the SQL of a reprocessing run (migration 000010). A deploy
 * that adds or changes rules records a run and its job (`praxis.reprocess.<tenant>`); the job walks
 * the service's running instances in keyset batches, each its own transaction, giving a `redeploy`
 * event and an evaluate job to those a new rule may fire on (a SQL filter over the facts when the
 * rules' matches compile, every instance otherwise) and moving the run's cursor in the same commit.
 * The engine (platform/engine/reprocess.ts) builds the filter and drives the walk.
 */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import { reprocessTaskSql } from '../store/index.js'
import { evaluateJobSpecSql } from './jobs.js'

type Queryable = Pick<pg.PoolClient, 'query'>

/**
 * The rules a run reaches old work with: per workflow, the added or changed rules' names,
 * conditions and fingerprints (the rule's, then its former ones).
 */
export type RunRules = Record<string, { name: string; condition: Json; fingerprints: string[] }[]>

/** The workflows whose facts version a deploy raised, with the new version: each of their instances with older facts is reached (and migrated). */
export type RunMigrations = Record<string, number>

/** A run's progress, as the API shows it. */
export interface RunProgress {
  id: string
  service: string
  version: number
  status: 'running' | 'done' | 'superseded'
  /** Instances of the service the run walks (running when it began, and completed ones of workflows that reopen). */
  total: number
  /** Instances walked so far (the cursor's position). */
  walked: number
  /** Instances given an evaluation under the new version (a changed or added rule may fire). */
  queued: number
  /** Queued instances whose evaluation ran; of them, those where a rule fired, and those that failed. */
  evaluated: number
  fired: number
  failed: number
  createdAt: string
  updatedAt: string
  finishedAt: string | null
}

/**
 * Records a run for a deploy (in the deploy's transaction) and its job; supersedes the service's
 * runs still going. With no rules to reach old work with, the run is recorded done at once.
 */
export async function startReprocessing(client: Queryable, r: { tenantId: string; service: string; bundleId: string; version: number; rules: RunRules; reopen: string[]; migrate?: RunMigrations }): Promise<{ id: string; total: number }> {
  await client.query(`update praxis.reprocessing set status = 'superseded', finished_at = now(), updated_at = now() where tenant_id = $1 and service = $2 and status = 'running'`, [r.tenantId, r.service])
  const migrate = r.migrate ?? {}
  const workflows = [...new Set([...Object.keys(r.rules).filter((w) => (r.rules[w] ?? []).length > 0), ...Object.keys(migrate)])]
  const { rows: [run] } = await client.query<{ id: string; total: number }>(
    `insert into praxis.reprocessing (tenant_id, service, bundle_id, version, rules, reopen, migrate, status, total, finished_at)
     select $1, $2, $3, $4, $5, $7, $8, case when cardinality($6::text[]) = 0 then 'done' else 'running' end,
       case when cardinality($6::text[]) = 0 then 0 else (select count(*) from praxis.instances where tenant_id = $1 and service = $2 and workflow = any($6)
         and (status = 'running' or (status = 'completed' and workflow = any($7)))) end,
       case when cardinality($6::text[]) = 0 then now() end
     returning id::text, total`,
    [r.tenantId, r.service, r.bundleId, r.version, JSON.stringify(r.rules), workflows, r.reopen, JSON.stringify(migrate)])
  if (workflows.length > 0) {
    await client.query(`select graphile_worker.add_job(${reprocessTaskSql('$1::text')}, json_build_object('t', $1::text, 'i', $2::text), max_attempts := 25, priority := -1000)`, [r.tenantId, run!.id])
  }
  return run!
}

/** A run as its walk needs it, or null when it is no longer running (done or superseded). */
export async function runningReprocessing(client: Queryable, tenantId: string, id: string): Promise<{ service: string; version: number; rules: RunRules; migrate: RunMigrations } | null> {
  const { rows } = await client.query<{ service: string; version: number; rules: RunRules; migrate: RunMigrations }>(
    `select service, version, rules, migrate from praxis.reprocessing where tenant_id = $1 and id = $2 and status = 'running'`, [tenantId, id])
  return rows[0] ?? null
}

/** The first parameter number of a batch's filter. */
export const FILTER_FIRST_PARAM = 9

/**
 * One batch of a run, in one transaction: the next `size` running instances of the run's
 * workflows after its cursor; of them, those `filter` admits (a SQL boolean over `i`, an instance
 * row with `workflow`, `facts`, `facts_version` and `rule_state`; its parameters numbered from FILTER_FIRST_PARAM)
 * get a redeploy event (naming the run) and an evaluate job; the cursor moves past the batch. Returns what it did, and whether the run is over. A run that
 * is no longer running (superseded) is left as it is.
 */
export async function reprocessBatch(client: Queryable, tenantId: string, id: string, size: number, filter: { sql: string; params: unknown[] }): Promise<{ walked: number; queued: number; done: boolean } | null> {
  // The run first (locked: one walker at a time), so the batch's range scan starts at a known cursor.
  const { rows: [run] } = await client.query<{ service: string; version: number; cursor: string | null; reopen: string[]; workflows: string[] }>(
    `select service, version, cursor::text, reopen, array(select jsonb_object_keys(rules) union select jsonb_object_keys(migrate)) as workflows from praxis.reprocessing
     where tenant_id = $1 and id = $2 and status = 'running' for no key update`, [tenantId, id])
  if (!run) return null
  const params = [tenantId, id, size, run.service, run.workflows, run.reopen, run.cursor ?? '00000000-0000-0000-0000-000000000000', run.version]
  const { rows } = await client.query<{ walked: number; queued: number; status: string }>(
    `with batch as (
       select i.id, i.workflow, i.facts, i.facts_version, i.rule_state from praxis.instances i
       where i.tenant_id = $1 and i.service = $4 and i.status in ('running', 'completed') and i.id > $7::uuid
         and i.workflow = any($5::text[]) and (i.status = 'running' or i.workflow = any($6::text[]))
       order by i.id limit $3),
     pick as (select i.id from batch i where ${filter.sql}),
     ev as (
       insert into praxis.events (tenant_id, instance_id, kind, payload)
       select $1, pick.id, 'redeploy', jsonb_build_object('version', $8::int, 'r', $2::bigint) from pick
       returning instance_id),
     jobs as (
       select count(*) from graphile_worker.add_jobs(array(select ${evaluateJobSpecSql('$1::text', 'instance_id')} from ev))
       where exists (select 1 from ev)),
     up as (
       update praxis.reprocessing p set cursor = coalesce((select max(id::text)::uuid from batch), p.cursor),
         walked = walked + (select count(*) from batch), queued = queued + (select count(*) from ev),
         status = case when (select count(*) from batch) < $3 then 'done' else status end,
         finished_at = case when (select count(*) from batch) < $3 then now() end, updated_at = now()
       where p.tenant_id = $1 and p.id = $2
       returning status, (select count(*) from jobs) as j)
     select (select count(*) from batch)::int as walked, (select count(*) from ev)::int as queued, (select status from up) as status`,
    [...params, ...filter.params])
  const row = rows[0]!
  return { walked: row.walked, queued: row.queued, done: row.status === 'done' }
}

const PROGRESS_SQL = `
select p.id::text, p.service, p.version, p.status, p.total, p.walked, p.queued,
  (select count(*) from praxis.reprocessed d where d.tenant_id = p.tenant_id and d.reprocessing_id = p.id)::int as evaluated,
  (select count(*) from praxis.reprocessed d where d.tenant_id = p.tenant_id and d.reprocessing_id = p.id and d.fired > 0)::int as fired,
  (select count(*) from praxis.reprocessed d where d.tenant_id = p.tenant_id and d.reprocessing_id = p.id and d.failed)::int as failed,
  p.created_at as "createdAt", p.updated_at as "updatedAt", p.finished_at as "finishedAt"
from praxis.reprocessing p`

/** A run's progress, or null when the tenant has no such run of the service. */
export async function reprocessingProgress(client: Queryable, tenantId: string, service: string, id: string): Promise<RunProgress | null> {
  if (!/^\d{1,18}$/.test(id)) return null
  const { rows } = await client.query<RunProgress>(`${PROGRESS_SQL} where p.tenant_id = $1 and p.service = $2 and p.id = $3`, [tenantId, service, id])
  return rows[0] ?? null
}

/** The service's latest runs, newest first. */
export async function listReprocessing(client: Queryable, tenantId: string, service: string, limit = 20): Promise<RunProgress[]> {
  const { rows } = await client.query<RunProgress>(`${PROGRESS_SQL} where p.tenant_id = $1 and p.service = $2 order by p.id desc limit $3`, [tenantId, service, limit])
  return rows
}
