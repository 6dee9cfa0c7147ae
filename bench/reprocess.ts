/**
 * Always-on benchmark: a deploy's reprocessing run over N stored instances (BENCH_REPROCESS_N,
 * 100,000) of one service, on an embedded PostgreSQL of its own, next to a plain keyset SELECT +
 * UPDATE pass over the same rows in batches of the same size (each batch reads the ids and facts
 * and stamps updated_at), measured in the same run, alternating which goes first.
 *
 * The service is test/fixtures/always-on (copied under bench/.tmp-reprocess-*): `check` matches
 * `amount > T`. The instances are inserted with SQL (amounts 0..999 spread evenly). Two deploys
 * change `check`: to T = 5000 (matches 0%) and to T = 899 (matches 10%, whose instances get a
 * redeploy event and an evaluate job each). The walk is `walkReprocessing` (the deploy job's work;
 * no worker runs the queued evaluations, which are not timed). Also the dry run's time
 * (`previewDeploy`: validation, and the count in SQL) and the process's RSS after a dry run and a
 * walk at a tenth of N and at N. Ratios are baseline time over Praxis time: above 1, Praxis is faster.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type pg from 'pg'
import { codegen } from '../codegen/index.js'
import { BundleCache, buildBundle, deployBundle, previewDeploy, readGeneratedManifest, REPROCESS_BATCH, walkReprocessing } from '../platform/engine/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, startEmbedded } from '../platform/store/index.js'
import type { RecordRow } from './sandbox.js'

const N = Number(process.env.BENCH_REPROCESS_N ?? 100_000)
const TENANT = 'bench'
const SERVICE = 'always-on'
const MB = 1024 * 1024

/** Inserts instances until the service has `upTo`, in chunks of 10,000, amounts 0..999. */
async function fill(pool: pg.Pool, bundleId: string, from: number, upTo: number, progress: (line: string) => void): Promise<void> {
  for (let at = from; at < upTo; at += 10_000) {
    const n = Math.min(10_000, upTo - at)
    await pool.query(
      `insert into praxis.instances (tenant_id, service, workflow, bundle_id, facts)
       select $1, $2, 'order', $3, jsonb_build_object('amount', g % 1000, 'done', false, 'reviews', 0) from generate_series($4::int, $4::int + $5::int - 1) g`,
      [TENANT, SERVICE, bundleId, at, n])
    progress(`  [reprocess] ${at + n} of ${upTo} instances stored`)
  }
  await pool.query('analyze praxis.instances')
}

/** The baseline: a keyset SELECT + UPDATE pass over the service's running instances, batch by batch. */
async function plainPass(pool: pg.Pool): Promise<number> {
  const t0 = performance.now()
  let after = '00000000-0000-0000-0000-000000000000'
  for (;;) {
    const client = await pool.connect()
    try {
      await client.query('begin')
      const { rows } = await client.query<{ id: string; facts: unknown }>(
        `select id, facts from praxis.instances where tenant_id = $1 and service = $2 and status = 'running' and id > $3::uuid order by id limit $4`, [TENANT, SERVICE, after, REPROCESS_BATCH])
      if (rows.length > 0) await client.query('update praxis.instances set updated_at = now() where tenant_id = $1 and id = any($2::uuid[])', [TENANT, rows.map((r) => r.id)])
      await client.query('commit')
      if (rows.length < REPROCESS_BATCH) break
      after = rows[rows.length - 1]!.id
    } finally {
      client.release()
    }
  }
  return performance.now() - t0
}

export async function benchReprocess(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-reprocess-pg')
  await rm(dataDir, { recursive: true, force: true })
  const tmp = await mkdtemp(path.resolve('bench', '.tmp-reprocess-'))
  const dir = path.join(tmp, SERVICE)
  await cp(path.resolve('test/fixtures/always-on'), dir, { recursive: true })
  progress('[reprocess] starting embedded PostgreSQL…')
  const server = await startEmbedded({ dataDir, port: 55100 + (process.pid % 90) })
  const bundles = new BundleCache()
  let pool: pg.Pool | undefined
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    pool = createPool(server.urlFor('bench'), 10)
    await migrate(pool)
    await ensureTenant(pool, TENANT)
    const deploy = async (threshold: number, dryRun: boolean) => {
      const file = path.join(dir, 'workflows.ts')
      await writeFile(file, (await readFile(file, 'utf8')).replace(/f\.amount\.gt\(\d+\)/, `f.amount.gt(${threshold})`))
      await codegen({ dir })
      const { code, hash } = await buildBundle(dir)
      const manifest = await readGeneratedManifest(dir)
      return dryRun ? previewDeploy(pool!, bundles, TENANT, SERVICE, code, hash, manifest) : deployBundle(pool!, bundles, TENANT, SERVICE, code, hash, manifest)
    }
    const first = await deploy(100, false)
    if (!('bundle' in first)) throw new Error('reprocess bench: the first deploy did not deploy')
    const bundleId = first.bundle.id
    let stored = 0
    let threshold = 100
    for (const size of [Math.round(N / 10), N]) {
      await fill(pool, bundleId, stored, size, progress)
      stored = size
      for (const [label, next, share] of [['0%', 5000, 0], ['10%', 899, 0.1]] as const) {
        // Alternate: another threshold each time, so each deploy changes `check`.
        threshold = threshold === next ? next + 1 : next
        const t0 = performance.now()
        const preview = await deploy(threshold, true)
        const previewMs = performance.now() - t0
        const fires = 'fires' in preview ? preview.fires[0]?.running ?? 0 : 0
        const deployed = await deploy(threshold, false)
        if (!('reprocessing' in deployed) || !deployed.reprocessing) throw new Error('reprocess bench: the deploy started no run')
        const runId = deployed.reprocessing.id
        const walk = async (): Promise<number> => {
          const w0 = performance.now()
          let walked = 0
          await walkReprocessing(pool!, TENANT, runId, { onBatch: (b) => { walked += b.walked; if (walked % 20_000 < REPROCESS_BATCH) progress(`  [reprocess] ${label}: ${walked} of ${size} walked`) } })
          return performance.now() - w0
        }
        // Alternate which side runs first; the baseline's stamping is not undone (both read the same rows).
        const flip = share > 0
        const base1 = flip ? await plainPass(pool) : 0
        const praxisMs = await walk()
        const base2 = flip ? 0 : await plainPass(pool)
        const baseMs = base1 + base2
        const { rows: [q] } = await pool.query<{ queued: number }>('select queued from praxis.reprocessing where tenant_id = $1 and id = $2', [TENANT, runId])
        progress(`  [reprocess] ${size} instances, ${label}: dry run ${Math.round(previewMs)} ms (${fires} would fire), walk ${Math.round(praxisMs)} ms (${q!.queued} queued), plain pass ${Math.round(baseMs)} ms`)
        if (size === N) {
          record('reprocess', `walk over ${N.toLocaleString('en-US')} stored instances, the changed rule matching ${label} (${q!.queued} queued), time vs a keyset SELECT + UPDATE pass (ratio: baseline / Praxis)`, baseMs / praxisMs, 'x', null, share === 0 ? { text: '≥ 3x', met: baseMs / praxisMs >= 3 } : { text: '≥ 1.0x', met: baseMs / praxisMs >= 1 })
          record('reprocess', `… the walk, ${label}`, praxisMs, 'ms', baseMs)
          record('reprocess', `… the dry run over the same ${N.toLocaleString('en-US')} (validation and the count), ${label}`, previewMs, 'ms', null)
        }
        // The queued evaluations are not run here: drop them before the next deploy.
        await pool.query("delete from praxis.events where tenant_id = $1 and kind = 'redeploy'", [TENANT])
        await pool.query("delete from graphile_worker._private_jobs where task_id in (select id from graphile_worker._private_tasks where identifier like 'praxis.evaluate.%' or identifier like 'praxis.reprocess.%')")
      }
      record('reprocess', `process RSS after the dry runs and walks over ${size.toLocaleString('en-US')} instances`, process.memoryUsage.rss() / MB, 'MB', null)
    }
  } finally {
    await bundles.close()
    await pool?.end()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
    await rm(tmp, { recursive: true, force: true })
  }
}
