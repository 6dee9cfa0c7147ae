/**
 * Retention benchmark: table sizes under a steady load, with the retention purge running next to
 * the same load without it (the baseline), in the same run on one embedded PostgreSQL.
 *
 * Two databases, each with the bench tenant, its worker and the same load: ROUNDS rounds of N
 * one-step instances (`bench/fixtures/steps` with k = 1: one invocation, its timeline) and N
 * approvals (`test/fixtures/approvals`, completed by one signal: one consumed event, its timeline).
 * In one database `purgeExpired` runs in a loop throughout (every PURGE_EVERY_MS, keeping what
 * finished in the last RETAIN_MS: a short retention, as a 30-day one is on a 30-day-old database);
 * in the other nothing is deleted. Rounds alternate between the two (which goes first, too). As
 * soon as its round ends a database is vacuumed (plain VACUUM, what autovacuum does on its own on a
 * real server: deleted rows' space is reused, never returned) and pg_total_relation_size (rows,
 * indexes, TOAST) of instances, events, timeline and invocations is read. With retention the sizes should stay flat after the first
 * rounds; without, they grow with every round.
 *
 * Sizes: BENCH_RETENTION_N (instances of each kind per round, 100), BENCH_RETENTION_ROUNDS (5).
 */
import { rm } from 'node:fs/promises'
import path from 'node:path'
import type pg from 'pg'
import pino from 'pino'
import { DEFAULT_RETENTION, type RetentionPolicy } from '../platform/config.js'
import { BundleCache, buildBundle, deployBundle, Evaluator, readGeneratedManifest } from '../platform/engine/index.js'
import { loadService, startWorker, type WorkerHandle } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, purgeExpired, resolveWorkflow, startEmbedded, type PurgeCounts } from '../platform/store/index.js'
import type { RecordRow } from './sandbox.js'

const N = Number(process.env.BENCH_RETENTION_N ?? 100)
const ROUNDS = Number(process.env.BENCH_RETENTION_ROUNDS ?? 5)
const RETAIN_MS = 1000
const PURGE_EVERY_MS = 500
const TENANT = 'bench'
const TABLES = ['instances', 'events', 'timeline', 'invocations'] as const
type Table = (typeof TABLES)[number]
const log = pino({ level: 'silent' })
const MB = 1024 * 1024

/** One database with its tenant, services, worker and evaluator. */
interface Side {
  name: string
  pool: pg.Pool
  evaluator: Evaluator
  worker: WorkerHandle
  steps: { service: string; workflow: string; bundleId: string }
  approval: { service: string; workflow: string; bundleId: string }
  /** Sizes in bytes after each round. */
  sizes: Record<Table, number>[]
  /** Milliseconds each round's load took. */
  roundMs: number[]
}

async function openSide(adminUrl: string, urlFor: (db: string) => string, name: string, code: { steps: string; approvals: string; stepsManifest: Awaited<ReturnType<typeof readGeneratedManifest>> }): Promise<Side> {
  await ensureDatabase(adminUrl, name)
  const pool = createPool(urlFor(name), 30)
  await migrate(pool)
  await ensureTenant(pool, TENANT)
  const bundles = new BundleCache()
  await deployBundle(pool, bundles, TENANT, 'steps', code.steps, 'steps', code.stepsManifest)
  await deployBundle(pool, bundles, TENANT, 'approvals', code.approvals, 'approvals', null)
  const { functions } = await loadService('bench/fixtures/steps')
  // The purge is driven by the bench (a short retention, every PURGE_EVERY_MS), not the cron job.
  const worker = await startWorker({ pool, log, tenantId: TENANT, functions, concurrency: 8, leaseMs: 60_000, retention: false })
  const [steps] = await resolveWorkflow(pool, TENANT, 'steps.steps')
  const [approval] = await resolveWorkflow(pool, TENANT, 'approvals.approval')
  return { name, pool, evaluator: new Evaluator(pool, bundles), worker, steps: steps!, approval: approval!, sizes: [], roundMs: [] }
}

/** Runs `items` through `fn`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
}

/** One round of load: N one-step instances and N approvals, each approval sent its signal; returns when all have finished. */
async function round(side: Side, label: string): Promise<void> {
  const t0 = performance.now()
  const ids: string[] = []
  await inParallel(Array.from({ length: N }, (_, n) => n), 8, async (n) => {
    ids.push((await side.evaluator.start(TENANT, side.steps, { run: `${label}-${n}`, k: 1 }, null)).id)
    const approval = (await side.evaluator.start(TENANT, side.approval, { item: `${label}-${n}` }, null)).id
    ids.push(approval)
    await side.evaluator.signal(TENANT, approval, 'decide', { approve: true, by: 'bench' }, null)
  })
  // Done when none is running (a purged instance had finished: only finished ones are purged).
  const deadline = Date.now() + 120_000
  for (;;) {
    const { rows: [r] } = await side.pool.query<{ running: number; failed: number }>(
      "select count(*) filter (where status = 'running')::int as running, count(*) filter (where status = 'failed')::int as failed from praxis.instances where tenant_id = $1 and id = any($2::uuid[])", [TENANT, ids])
    if (r!.failed > 0) throw new Error(`retention bench: ${r!.failed} instances of ${side.name} failed`)
    if (r!.running === 0) break
    if (Date.now() > deadline) throw new Error(`retention bench: ${r!.running} instances of ${side.name} still running after 120 s`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  side.roundMs.push(performance.now() - t0)
}

async function measure(side: Side): Promise<void> {
  // What autovacuum does by itself on a real server: dead rows' space becomes reusable.
  await side.pool.query(`vacuum ${TABLES.map((t) => `praxis.${t}`).join(', ')}`)
  const { rows: [r] } = await side.pool.query<Record<Table, string>>(`select ${TABLES.map((t) => `pg_total_relation_size('praxis.${t}') as ${t}`).join(', ')}`)
  const sizes = Object.fromEntries(TABLES.map((t) => [t, Number(r![t])])) as Record<Table, number>
  side.sizes.push(sizes)
}

const total = (s: Record<Table, number>): number => TABLES.reduce((n, t) => n + s[t], 0)
const mb = (bytes: number): string => (bytes / MB).toFixed(2)

export async function benchRetention(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-retention-pg')
  await rm(dataDir, { recursive: true, force: true })
  progress('[retention] starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 54900 + (process.pid % 90) })
  const sides: Side[] = []
  let purging: Promise<void> | undefined
  let stop = false
  try {
    const code = { steps: (await buildBundle('bench/fixtures/steps')).code, approvals: (await buildBundle('test/fixtures/approvals')).code, stepsManifest: await readGeneratedManifest('bench/fixtures/steps') }
    const keep = await openSide(server.adminUrl, server.urlFor, 'bench_keep', code)
    sides.push(keep)
    const purge = await openSide(server.adminUrl, server.urlFor, 'bench_purge', code)
    sides.push(purge)

    // Warm both (isolates, prepared statements), then start from empty tables.
    for (const side of sides) {
      await round(side, 'warm')
      await side.pool.query('truncate praxis.instances, praxis.events, praxis.timeline, praxis.invocations')
      side.roundMs.length = 0
    }

    const policy: RetentionPolicy = { finishedDays: RETAIN_MS / 86_400_000, eventsDays: RETAIN_MS / 86_400_000, runningTimelineDays: null }
    const purged: PurgeCounts & { runs: number; ms: number } = { instances: 0, events: 0, timeline: 0, invocations: 0, runs: 0, ms: 0 }
    purging = (async () => {
      while (!stop) {
        const r = await purgeExpired(purge.pool, TENANT, policy, { batchSize: DEFAULT_RETENTION.batchSize })
        for (const t of TABLES) purged[t] += r[t]
        purged.runs++
        purged.ms += r.ms
        await new Promise((resolve) => setTimeout(resolve, PURGE_EVERY_MS))
      }
    })()

    progress(`[retention] ${ROUNDS} rounds of ${N} one-step instances + ${N} signalled approvals, alternating: without retention, then with (kept ${RETAIN_MS} ms, purged every ${PURGE_EVERY_MS} ms)`)
    for (let r = 1; r <= ROUNDS; r++) {
      // Alternate which goes first, so drift on this shared machine lands on both; each is
      // measured as soon as its round ends.
      for (const side of r % 2 === 1 ? [keep, purge] : [purge, keep]) {
        await round(side, `r${r}`)
        await measure(side)
      }
      const [k, p] = [keep.sizes.at(-1)!, purge.sizes.at(-1)!]
      progress(`  round ${r}: instances+events+timeline+invocations ${mb(total(k))} MB without retention, ${mb(total(p))} MB with (${TABLES.map((t) => `${t} ${mb(k[t])}/${mb(p[t])}`).join(', ')})`)
      record('retention', `4 tables after round ${r} (${2 * N * r} instances run)`, total(p) / MB, 'MB', total(k) / MB)
    }
    stop = true
    await purging

    const [k, p] = [keep.sizes.at(-1)!, purge.sizes.at(-1)!]
    for (const t of TABLES) record('retention', `${t} after round ${ROUNDS}`, p[t] / 1024, 'kB', k[t] / 1024)
    // Growth from the end of round 2 (the purge's steady state reached) to the end.
    const growth = { keep: total(k) - total(keep.sizes[1] ?? k), purge: total(p) - total(purge.sizes[1] ?? p) }
    record('retention', `growth, round 2 → ${ROUNDS}`, growth.purge / MB, 'MB', growth.keep / MB, { text: 'flat: ≤ 10% of the baseline\'s', met: growth.purge <= 0.1 * Math.max(growth.keep, 1) })
    const { rows: [left] } = await purge.pool.query<{ n: number }>('select count(*)::int as n from praxis.instances')
    const { rows: [all] } = await keep.pool.query<{ n: number }>('select count(*)::int as n from praxis.instances')
    record('retention', 'instance rows left at the end', left!.n, 'rows', all!.n)
    const deleted = TABLES.reduce((n, t) => n + purged[t], 0)
    progress(`  during the load: purged ${purged.instances} instances, ${purged.events} events, ${purged.timeline} timeline entries, ${purged.invocations} invocations in ${purged.runs} purges (${Math.round(purged.ms)} ms in all)`)
    record('retention', `one purge during the load (${purged.runs} runs, ${Math.round(deleted / Math.max(purged.runs, 1))} rows each)`, purged.ms / Math.max(purged.runs, 1), 'ms', null)
    const rate = (side: Side): number => (ROUNDS * 2 * N) / (side.roundMs.reduce((a, b) => a + b, 0) / 1000)
    record('retention', `load throughput, purging every ${PURGE_EVERY_MS} ms`, rate(purge), 'inst/s', rate(keep))
    // A backlog: the baseline's rows, all expired, in one purge (batches of DEFAULT_RETENTION.batchSize).
    const backlog = await purgeExpired(keep.pool, TENANT, policy)
    const rows = TABLES.reduce((n, t) => n + backlog[t], 0)
    progress(`  the baseline's backlog: ${backlog.instances} instances and ${rows - backlog.instances} other rows in one purge of ${backlog.batches} batches, ${backlog.ms} ms`)
    record('retention', `a backlog purge (${rows} rows, ${backlog.batches} batches), per 1,000 rows`, (backlog.ms / Math.max(rows, 1)) * 1000, 'ms', null)
  } finally {
    stop = true
    await purging?.catch(() => undefined)
    for (const side of sides) {
      await side.worker.stop().catch(() => undefined)
      await side.evaluator.close().catch(() => undefined)
      await side.pool.end().catch(() => undefined)
    }
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
