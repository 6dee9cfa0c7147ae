/**
 * What `/metrics` reads at scrape time (platform/api/metrics.ts), in one read-only transaction
 * (one snapshot) under a statement timeout. These are the only queries that aggregate across
 * tenants, for the operator's view; the tenant view keeps its own tenant's series only.
 *
 * Each read is bounded: the job table holds live jobs only (graphile-worker deletes completed
 * ones), its task table one row per queue, the worker table one row per live worker; invocations
 * are read only where they finished in the window since the previous scrape, through the BRIN index
 * on finished_at (000008), so a scrape never reads the table's history.
 */
import type pg from 'pg'

/** One graphile-worker task (a queue) and its jobs. */
export interface QueueStat {
  identifier: string
  /** Unlocked jobs due now. */
  ready: number
  /** Unlocked jobs due later (a retry waiting for its backoff). */
  delayed: number
  /** Jobs a worker holds (running). */
  locked: number
  /** Jobs that spent all their attempts: graphile-worker keeps them and never runs them again. */
  exhausted: number
  /** Seconds the oldest ready job has waited (since it was added or came due, whichever is later); 0 when none is ready. */
  oldestSeconds: number
}

/** Live workers (heartbeat within the lease) of a tenant serving a pool. */
export interface WorkerStat { tenantId: string; pool: string; live: number }

/**
 * Invocations that finished in the window, grouped. `bucket` is the index of the first bound not
 * below the duration (Prometheus' `le`), `bounds.length` for above the last; every duration of the
 * group lies in that bucket.
 */
export interface FinishedStat {
  tenantId: string
  pool: string
  status: 'succeeded' | 'failed' | 'cancelled'
  /** The failure's kind for a failed invocation (retryable, fatal, timeout, cancelled, other); '' otherwise. */
  failureClass: string
  bucket: number
  count: number
  /** Sum of the durations, created to finished, in seconds. */
  seconds: number
  /** Attempts beyond the first. */
  retries: number
}

export interface MetricsRead {
  queues: QueueStat[]
  workers: WorkerStat[]
  finished: FinishedStat[]
  /** The window read, as timestamps of the database's clock: the next read starts at `to`. */
  window: { from: string; to: string }
}

export interface MetricsReadOptions {
  /** End of the previous window; null on the first read (the window is then empty and starts now). */
  since: string | null
  /** Invocations finished in the last `settleMs` wait for the next read (their transaction may not have committed). */
  settleMs: number
  /** A worker whose heartbeat is older is not counted. */
  leaseMs: number
  /** statement_timeout of each query. */
  timeoutMs: number
  /** Histogram bucket bounds of invocation durations, in seconds, ascending. */
  bounds: readonly number[]
}

// A job has waited since it was added or since it came due, whichever is later: an invoke job's
// run_at is its fair-share place (000006: 2000-01-01 plus virtual time, always in the past), a
// due or cron job's run_at a wall-clock time.
const QUEUES_SQL = `
select t.identifier,
  count(j.id) filter (where j.is_available and j.run_at <= now())::int as ready,
  count(j.id) filter (where j.is_available and j.run_at > now())::int as delayed,
  count(j.id) filter (where j.locked_at is not null)::int as locked,
  count(j.id) filter (where j.locked_at is null and j.attempts >= j.max_attempts)::int as exhausted,
  greatest(extract(epoch from now() - min(greatest(j.created_at, j.run_at)) filter (where j.is_available and j.run_at <= now()))::float8, 0) as "oldestSeconds"
from graphile_worker._private_tasks t
left join graphile_worker._private_jobs j on j.task_id = t.id
where t.identifier like 'praxis.%'
group by t.identifier`

const WORKERS_SQL = `
select w.tenant_id as "tenantId", p.pool, count(*)::int as live
from praxis.workers w, unnest(w.pools) as p(pool)
where w.tenant_id is not null and w.heartbeat_at > now() - $1 * interval '1 millisecond'
group by 1, 2`

// The window is (from, to]: `finished_at` is the finishing transaction's start, so the last
// settleMs are left for the next read, by when that transaction has committed.
const WINDOW_SQL = `
select coalesce($1::timestamptz, now())::text as "from",
  greatest(coalesce($1::timestamptz, now()), now() - $2 * interval '1 millisecond')::text as "to"`

const FINISHED_SQL = `
select v.tenant_id as "tenantId", v.pool, v.status,
  case when v.status <> 'failed' then ''
       when v.failure->>'kind' in ('retryable', 'fatal', 'timeout', 'cancelled') then v.failure->>'kind'
       else 'other' end as "failureClass",
  b.bucket, count(*)::int as count, sum(v.seconds)::float8 as seconds, sum(greatest(v.attempts - 1, 0))::int as retries
from (select tenant_id, pool, status, failure, attempts, greatest(extract(epoch from finished_at - created_at)::float8, 0) as seconds
      from praxis.invocations
      where finished_at > $1::timestamptz and finished_at <= $2::timestamptz and status <> 'pending') v,
  lateral (select count(*)::int as bucket from unnest($3::float8[]) as bound where bound < v.seconds) b
group by 1, 2, 3, 4, 5`

/** Reads queues, workers and the invocations finished since `since`, in one snapshot. */
export async function readMetrics(pool: pg.Pool, options: MetricsReadOptions): Promise<MetricsRead> {
  const client = await pool.connect()
  try {
    await client.query('begin isolation level repeatable read read only')
    await client.query("select set_config('statement_timeout', $1, true)", [String(Math.max(1, Math.round(options.timeoutMs)))])
    const { rows: [window] } = await client.query<{ from: string; to: string }>(WINDOW_SQL, [options.since, options.settleMs])
    const queues = (await client.query<QueueStat>(QUEUES_SQL)).rows
    const workers = (await client.query<WorkerStat>(WORKERS_SQL, [options.leaseMs])).rows
    const finished = (await client.query<FinishedStat>(FINISHED_SQL, [window!.from, window!.to, options.bounds])).rows
    await client.query('commit')
    return { queues, workers, finished, window: window! }
  } catch (error) {
    await client.query('rollback').catch(() => undefined)
    throw error
  } finally {
    client.release()
  }
}
