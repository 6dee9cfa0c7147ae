/**
 * Always-on benchmark (issue 10): a deploy's reprocessing run over stored instances of one service,
 * on an embedded PostgreSQL of its own, each figure next to a baseline measured in the same run.
 *
 * The service is a copy of test/fixtures/always-on (under bench/.tmp-reprocess-*, as the tests copy
 * it): `check` matches `amount > T`. Version 1 (T = 1,000,000: it never matched) is deployed through
 * the normal path and one instance started as the API starts it (`Evaluator#start`); its stored
 * row (facts, rule state, revision) is then copied with SQL (`insert … select … generate_series`)
 * into N instances in all (BENCH_REPROCESS_N, 100,000), amounts 0..999 spread evenly. Each
 * measurement deploys a new `check` (codegen, build, `deployBundle`: a new fingerprint each time):
 *  - 0%:  T = 5000 + k: matches no instance;
 *  - 10%: T = 899.k: matches amounts 900..999, whose instances get a redeploy event and an
 *         evaluate job in the walk.
 * For each, timed apart:
 *  - the dry run: `previewDeploy` (validation in the tenant's isolate and the count in SQL), as
 *    `POST /v1/services/:service/deployments?dryRun=true` does;
 *  - the walk: `walkReprocessing` over the run the deploy recorded (the deploy job's work, batch
 *    after batch in this process; no worker runs the queued evaluations while it is timed);
 *  - the baseline: a plain keyset pass over the same rows in batches of the same size
 *    (REPROCESS_BATCH), each its own transaction: SELECT the batch's ids and facts after the last
 *    id (the same partial index, `instances_open_by_service`), UPDATE their updated_at.
 * Before each side: VACUUM ANALYZE of the tables both touch (the baseline's updates leave dead
 * rows; the 10% walks leave events and jobs, discarded between rounds). BENCH_REPROCESS_ROUNDS (3)
 * rounds of each, the side going first alternating; medians. Ratios are recorded as rates
 * (instances walked per second), so ratio = baseline time / Praxis time: above 1, Praxis is faster.
 * This all happens at N/10 and at N instances; the process's RSS (after a collection) is read after
 * each size's dry runs and walks, and its peak sampled during them. Last, the evaluations the
 * final 10% walk queued are worked by a worker (`startWorker`, concurrency 4) for
 * BENCH_REPROCESS_DRAIN_S (15) seconds: evaluations per second (not part of the walk's time).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { makeWorkerUtils } from 'graphile-worker'
import type pg from 'pg'
import pino from 'pino'
import { codegen } from '../codegen/index.js'
import { BundleCache, buildBundle, deployBundle, Evaluator, previewDeploy, readGeneratedManifest, REPROCESS_BATCH, walkReprocessing } from '../platform/engine/index.js'
import { loadService, startWorker } from '../platform/pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, quietLogger, resolveWorkflow, startEmbedded } from '../platform/store/index.js'
import type { RecordRow } from './sandbox.js'

const N = Number(process.env.BENCH_REPROCESS_N ?? 100_000)
const ROUNDS = Number(process.env.BENCH_REPROCESS_ROUNDS ?? 3)
const DRAIN_MS = 1000 * Number(process.env.BENCH_REPROCESS_DRAIN_S ?? 15)
const SIZES = [Math.max(1000, Math.round(N / 10 / 1000) * 1000), N]
const TENANT = 'bench'
const SERVICE = 'always-on'
/** Rows a fill statement inserts. */
const CHUNK = 10_000
const MB = 1024 * 1024
const log = pino({ level: 'silent' })

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const rssMb = (): number => process.memoryUsage.rss() / MB

/** The host's garbage collector when V8 lets us have it (steadier RSS readings), as in queue.ts. */
function hostGc(): () => void {
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as unknown
    if (typeof gc === 'function') return gc as () => void
  } catch {
    // not available: RSS is read without a collection first
  }
  return () => undefined
}

/** Samples the process's RSS every 20 ms until stopped: the peak. */
function rssPeak(): () => number {
  let peak = rssMb()
  const timer = setInterval(() => { peak = Math.max(peak, rssMb()) }, 20)
  return () => { clearInterval(timer); return Math.max(peak, rssMb()) }
}

/** Copies the probe instance's row until the service has `upTo` instances, amount = n % 1000 for the n-th. */
async function fill(pool: pg.Pool, probe: string, from: number, upTo: number, progress: (line: string) => void): Promise<void> {
  for (let at = from; at < upTo; at += CHUNK) {
    const n = Math.min(CHUNK, upTo - at)
    await pool.query(
      `insert into praxis.instances (tenant_id, service, workflow, bundle_id, facts, rule_state, revision, status)
       select p.tenant_id, p.service, p.workflow, p.bundle_id, jsonb_set(p.facts, '{amount}', to_jsonb(g % 1000)), p.rule_state, p.revision, p.status
       from praxis.instances p, generate_series($3::int, $3::int + $4::int - 1) g where p.tenant_id = $1 and p.id = $2`,
      [TENANT, probe, at, n])
    progress(`  [reprocess] ${fmt(at + n)} of ${fmt(upTo)} instances stored`)
  }
}

/** VACUUM ANALYZE of what both sides read and write: each side starts on tables without dead rows, with fresh statistics. */
async function settle(pool: pg.Pool): Promise<void> {
  for (const table of ['praxis.instances', 'praxis.events', 'praxis.reprocessing', 'graphile_worker._private_jobs']) await pool.query(`vacuum analyze ${table}`)
}

/** The baseline: a keyset SELECT (ids and facts) + UPDATE (updated_at) pass over the service's open instances, batch by batch, each its own transaction. */
async function plainPass(pool: pg.Pool, batch: number): Promise<{ ms: number; walked: number }> {
  const t0 = performance.now()
  let after = '00000000-0000-0000-0000-000000000000'
  let walked = 0
  for (;;) {
    const client = await pool.connect()
    let rows: { id: string; facts: unknown }[]
    try {
      await client.query('begin')
      rows = (await client.query<{ id: string; facts: unknown }>(
        `select id, facts from praxis.instances where tenant_id = $1 and service = $2 and status in ('running', 'completed') and id > $3::uuid order by id limit $4`,
        [TENANT, SERVICE, after, batch])).rows
      if (rows.length > 0) await client.query('update praxis.instances set updated_at = now() where tenant_id = $1 and id = any($2::uuid[])', [TENANT, rows.map((r) => r.id)])
      await client.query('commit')
    } finally {
      client.release()
    }
    walked += rows.length
    if (rows.length < batch) break
    after = rows[rows.length - 1]!.id
  }
  return { ms: performance.now() - t0, walked }
}

/** Removes queued jobs whose task identifier matches `like`, through graphile-worker's own API. */
async function discardJobs(pool: pg.Pool, like: string): Promise<number> {
  const utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger })
  try {
    const { rows } = await pool.query<{ id: string }>('select id::text from graphile_worker.jobs where task_identifier like $1', [like])
    for (let i = 0; i < rows.length; i += 5000) await utils.completeJobs(rows.slice(i, i + 5000).map((r) => r.id))
    return rows.length
  } finally {
    await utils.release()
  }
}

interface Measured { previewMs: number; deployMs: number; walkMs: number; baseMs: number; queued: number; runId: string }

export async function benchReprocess(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const gc = hostGc()
  const dataDir = path.resolve('.praxis', 'bench-reprocess-pg')
  await rm(dataDir, { recursive: true, force: true })
  const tmp = await mkdtemp(path.resolve('bench', '.tmp-reprocess-'))
  const dir = path.join(tmp, SERVICE)
  await cp(path.resolve('test/fixtures/always-on'), dir, { recursive: true })
  progress('[reprocess] starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 55200 + (process.pid % 90) })
  const bundles = new BundleCache()
  let pool: pg.Pool | undefined
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    pool = createPool(server.urlFor('bench'), 10)
    const db = pool
    await migrate(db)
    await ensureTenant(db, TENANT)
    /** `check` matching `amount > threshold`, generated and built (not timed). */
    const build = async (threshold: string) => {
      const file = path.join(dir, 'workflows.ts')
      await writeFile(file, (await readFile(file, 'utf8')).replace(/f\.amount\.gt\([\d.]+\)/, `f.amount.gt(${threshold})`))
      await codegen({ dir })
      const { code, hash } = await buildBundle(dir)
      return { code, hash, manifest: await readGeneratedManifest(dir) }
    }
    const v1 = await build('1000000')
    await deployBundle(db, bundles, TENANT, SERVICE, v1.code, v1.hash, v1.manifest)
    const [order] = await resolveWorkflow(db, TENANT, `${SERVICE}.order`)
    const evaluator = new Evaluator(db, bundles)
    // The row every stored instance copies: started as the API starts one (check false, finish false).
    const { id: probe } = await evaluator.start(TENANT, order!, { amount: 0, done: false }, null)
    const { rows: [row] } = await db.query<{ rule_state: object; status: string }>('select rule_state, status from praxis.instances where tenant_id = $1 and id = $2', [TENANT, probe])
    if (row!.status !== 'running') throw new Error(`reprocess bench: the probe instance is ${row!.status}`)
    progress(`[reprocess] v1 deployed; the stored instances copy a started one (rule state ${JSON.stringify(row!.rule_state)})`)

    let stored = 1
    let k = 0
    const results: Record<number, Record<'0%' | '10%', Measured[]>> = {}
    const rss: Record<number, { after: number; peak: number }> = {}
    for (const size of SIZES) {
      await fill(db, probe, stored, size, progress)
      stored = size
      results[size] = { '0%': [], '10%': [] }
      gc()
      const peak = rssPeak()
      for (const share of ['0%', '10%'] as const) {
        const expected = share === '0%' ? 0 : Math.round(size / 10)
        for (let round = 1; round <= ROUNDS; round++) {
          k++
          const next = await build(share === '0%' ? `${5000 + k}` : `899.${k}`)
          const t0 = performance.now()
          const preview = await previewDeploy(db, bundles, TENANT, SERVICE, next.code, next.hash, next.manifest)
          const previewMs = performance.now() - t0
          const fires = preview.fires.find((f) => f.rule === 'check')
          if (fires?.running !== expected || fires.how !== 'sql') throw new Error(`reprocess bench: the dry run counts ${JSON.stringify(preview.fires)}, expected check to fire on ${expected} (by SQL)`)
          const t1 = performance.now()
          const deployed = await deployBundle(db, bundles, TENANT, SERVICE, next.code, next.hash, next.manifest)
          const deployMs = performance.now() - t1
          if (!deployed.reprocessing || deployed.reprocessing.total !== size) throw new Error(`reprocess bench: the deploy's run walks ${deployed.reprocessing?.total}, expected ${size}`)
          const runId = deployed.reprocessing.id
          const walk = async (): Promise<number> => {
            await settle(db)
            let walked = 0
            let shown = 0
            const w0 = performance.now()
            await walkReprocessing(db, TENANT, runId, {
              onBatch: (b) => {
                walked += b.walked
                if (walked - shown >= 25_000) { shown = walked; progress(`  [reprocess] ${fmt(size)}, ${share}, round ${round}: walked ${fmt(walked)} of ${fmt(size)}`) }
              },
            })
            return performance.now() - w0
          }
          const base = async (): Promise<number> => {
            await settle(db)
            const pass = await plainPass(db, REPROCESS_BATCH)
            if (pass.walked !== size) throw new Error(`reprocess bench: the plain pass read ${pass.walked} rows, expected ${size}`)
            return pass.ms
          }
          // Alternate which side goes first.
          let walkMs: number
          let baseMs: number
          if ((round + (share === '0%' ? 0 : 1)) % 2 === 1) { walkMs = await walk(); baseMs = await base() } else { baseMs = await base(); walkMs = await walk() }
          const { rows: [run] } = await db.query<{ walked: number; queued: number; status: string }>('select walked, queued, status from praxis.reprocessing where tenant_id = $1 and id = $2', [TENANT, runId])
          if (run!.status !== 'done' || run!.walked !== size || run!.queued !== expected) throw new Error(`reprocess bench: run ${runId} ended ${JSON.stringify(run)}, expected ${size} walked and ${expected} queued`)
          results[size]![share].push({ previewMs, deployMs, walkMs, baseMs, queued: run!.queued, runId })
          progress(`  [reprocess] ${fmt(size)} instances, ${share} (${fmt(run!.queued)} queued), round ${round}: walk ${fmt(walkMs)} ms, plain pass ${fmt(baseMs)} ms (${(baseMs / walkMs).toFixed(2)}x); dry run ${fmt(previewMs)} ms, deploy ${fmt(deployMs)} ms`)
          // The deploy's own job (its run is done), and the queued evaluations unless this is the
          // last 10% walk (drained below): they go, so every round starts from the same tables.
          await discardJobs(db, `praxis.reprocess.${TENANT}`)
          const last = size === N && share === '10%' && round === ROUNDS
          if (expected > 0 && !last) {
            await discardJobs(db, `praxis.evaluate.${TENANT}%`)
            await db.query("delete from praxis.events where tenant_id = $1 and kind = 'redeploy'", [TENANT])
          }
        }
      }
      const peakMb = peak()
      gc()
      rss[size] = { after: rssMb(), peak: peakMb }
      progress(`  [reprocess] ${fmt(size)} instances: RSS ${fmt(rss[size]!.after)} MB after the dry runs and walks (peak ${fmt(peakMb)} MB during them)`)
    }

    // The final 10% walk's evaluations, worked for a while (not part of any time above).
    const lastRun = results[N]!['10%'].at(-1)!
    const functions = (await loadService(dir)).functions
    const worker = await startWorker({ pool: db, log, tenantId: TENANT, functions, concurrency: 4, leaseMs: 60_000, retention: false })
    const evaluated = async (): Promise<number> => (await db.query<{ n: number }>('select count(*)::int as n from praxis.reprocessed where tenant_id = $1 and reprocessing_id = $2', [TENANT, lastRun.runId])).rows[0]!.n
    let drained: { n: number; ms: number }
    try {
      // The worker's first evaluations load the bundle in its isolate: the window opens after 20.
      const end = Date.now() + 120_000
      while ((await evaluated()) < Math.min(20, lastRun.queued)) {
        if (Date.now() > end) throw new Error('reprocess bench: the worker evaluated none of the queued instances in 2 minutes')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const from = await evaluated()
      const w0 = performance.now()
      let n = from
      while (performance.now() - w0 < DRAIN_MS && n < lastRun.queued) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        n = await evaluated()
        progress(`  [reprocess] evaluations of the last 10% walk: ${fmt(n)} of ${fmt(lastRun.queued)}`)
      }
      drained = { n: n - from, ms: performance.now() - w0 }
    } finally {
      await worker.stop()
    }
    const { rows: [fired] } = await db.query<{ n: number }>('select count(*)::int as n from praxis.reprocessed where tenant_id = $1 and reprocessing_id = $2 and fired > 0', [TENANT, lastRun.runId])
    progress(`  [reprocess] worker: ${fmt(worker.stats.evaluations)} evaluate jobs (${fmt(fired!.n)} evaluations fired check), ${fmt(worker.stats.succeeded)} calls succeeded; the rest left queued`)

    for (const size of SIZES) {
      for (const share of ['0%', '10%'] as const) {
        const m = results[size]![share]
        const walk = median(m.map((x) => x.walkMs))
        const base = median(m.map((x) => x.baseMs))
        const preview = median(m.map((x) => x.previewMs))
        const target = size !== N ? undefined : share === '0%' ? { text: '≥ 3x', met: base / walk >= 3 } : { text: '≥ 1.0x', met: base / walk >= 1 }
        record('reprocess', `walk, ${fmt(size)} instances, rule matching ${share} (${fmt(m[0]!.queued)} queued): walk ${fmt(walk)} ms vs plain pass ${fmt(base)} ms, as instances/s`, size / (walk / 1000), 'inst/s', size / (base / 1000), target)
        record('reprocess', `… dry run over ${fmt(size)}, ${share}`, preview, 'ms', null)
        if (size === N) record('reprocess', `… the deploy itself (records the run), ${share}`, median(m.map((x) => x.deployMs)), 'ms', null)
      }
    }
    const [small, large] = SIZES as [number, number]
    record('reprocess', `RSS after dry runs and walks, ${fmt(large)} instances vs ${fmt(small)}`, rss[large]!.after, 'MB', rss[small]!.after, { text: 'flat', met: rss[large]!.after <= 1.1 * rss[small]!.after })
    record('reprocess', `… peak RSS during them, ${fmt(large)} vs ${fmt(small)}`, rss[large]!.peak, 'MB', rss[small]!.peak)
    record('reprocess', `evaluations the 10% walk queued, worked by a worker (concurrency 4) over ${(drained.ms / 1000).toFixed(1)} s`, drained.n / (drained.ms / 1000), 'evals/s', null)
  } finally {
    // The evaluator's bundle cache is `bundles`.
    await bundles.close()
    await pool?.end()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
    await rm(tmp, { recursive: true, force: true })
  }
}
