/**
 * `praxis dev` (what `npm start` runs): embedded PostgreSQL, migrations, a local tenant, the
 * examples deployed, the API listening, and a supervised worker pool in child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { buildApi } from '../api/index.js'
import type { Config } from '../config.js'
import { BundleCache, buildBundle, deployBundle, readGeneratedManifest } from '../engine/index.js'
import { ensureTenant, migrate, openDatabase } from '../store/index.js'
import { apiClient } from './client.js'
import { follow } from './progress.js'

const BIN = fileURLToPath(new URL('../../bin/praxis.js', import.meta.url))
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url))
const out = (line: string): void => void process.stdout.write(line + '\n')
/** The local tenant: the examples are deployed to it, and the workers `praxis dev` spawns serve it only. */
const DEV_TENANT = 'dev'

export async function runDev(config: Config, options: { services: string[]; demo: boolean; workers: number }): Promise<number> {
  const log = pino({ level: config.logLevel }, pino.destination(2))
  const t0 = Date.now()
  out(`[1/5] starting PostgreSQL${config.databaseUrl ? '' : ` (embedded, data in ${path.resolve(config.dataDir)})`}…`)
  const db = await openDatabase(config, log)
  const { applied } = await migrate(db.pool)
  out(`[2/5] database ready, ${applied.length} migrations applied (${Date.now() - t0} ms)`)

  await mkdir(config.dataDir, { recursive: true })
  const keyFile = path.join(config.dataDir, 'dev-api-key')
  const existingKey = (await readFile(keyFile, 'utf8').catch(() => '')).trim()
  const { apiKey } = await ensureTenant(db.pool, DEV_TENANT, existingKey ? { apiKey: existingKey } : {})
  await writeFile(keyFile, apiKey + '\n', { mode: 0o600 })

  const dirs = options.services.length > 0 ? options.services : await exampleDirs()
  // Each bundle loads in the dev tenant's isolate, as the API would load it.
  const bundles = new BundleCache({ limits: config.limits })
  for (const [i, dir] of dirs.entries()) {
    const service = path.basename(path.resolve(dir))
    const { code, hash } = await buildBundle(dir)
    const d = await deployBundle(db.pool, bundles, DEV_TENANT, service, code, hash, await readGeneratedManifest(dir))
    out(`[3/5] deployed ${service} v${d.bundle.version}${d.created ? '' : ' (unchanged)'}: ${d.manifest.workflows.map((w) => `${w.name} (${w.rules.length} rules)`).join(', ')}  [${i + 1}/${dirs.length}]`)
  }

  await bundles.close()
  // Request lines would drown the progress output; the API logs warnings and errors.
  const api = await buildApi({ pool: db.pool, databaseUrl: db.url, log: log.child({}, { level: 'warn' }), ruleLimits: config.limits })
  const address = await api.listen({ port: config.port, host: config.host })
  out(`[4/5] API listening on ${address}  (tenant "dev", API key in ${keyFile})`)

  const children = new Set<ChildProcess>()
  let stopping = false
  const spawnWorker = (n: number): void => {
    const child = spawn(process.execPath, ['--no-node-snapshot', BIN, 'worker', '--tenant', DEV_TENANT, ...dirs], { env: { ...process.env, DATABASE_URL: db.url }, stdio: ['ignore', 'inherit', 'inherit'] })
    children.add(child)
    child.on('exit', (code, signal) => {
      children.delete(child)
      if (stopping) return
      log.warn({ code, signal, worker: n }, 'worker process exited; restarting it in 1 s')
      setTimeout(() => spawnWorker(n), 1000).unref()
    })
  }
  for (let n = 0; n < options.workers; n++) spawnWorker(n)
  out(`[5/5] worker pool: ${options.workers} process(es) for tenant "${DEV_TENANT}" serving ${dirs.map((d) => path.basename(path.resolve(d))).join(', ')}  (ready in ${Date.now() - t0} ms)`)
  out(`\ntry:  node bin/praxis.js start encodeVideo --input '{"source":"s3://in/trailer.mov","recipe":"h264-1080p"}' --wait`)
  out(`      node bin/praxis.js start publishTitle --input '{"title":"Trailer","source":"s3://in/t.mov"}' --wait   (starts encodeVideo as a child)\n`)

  if (options.demo && dirs.some((d) => path.basename(path.resolve(d)) === 'video-encoding')) {
    out('demo: encoding s3://demo/trailer.mov with recipe h264-1080p')
    const client = apiClient(`http://${config.host}:${config.port}`, apiKey)
    try {
      const started = await client.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: 's3://demo/trailer.mov', recipe: 'h264-1080p', durationSeconds: 240 } })
      const final = await follow(client, started.id, (line) => out(`  ${line}`), { timeoutMs: 120_000 })
      out(`demo: instance ${started.id} ${final.status}; result ${JSON.stringify(final.result)}`)
      out(`      inspect it: node bin/praxis.js inspect ${started.id}\n`)
    } catch (error) {
      out(`demo failed: ${(error as Error).message}`)
    }
  }
  out('Praxis dev is running; Ctrl-C stops it.')

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  stopping = true
  out('stopping…')
  await Promise.all([...children].map((child) => new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGTERM') })))
  await api.close()
  await db.close()
  return 0
}

async function exampleDirs(): Promise<string[]> {
  const entries = await readdir(EXAMPLES, { withFileTypes: true })
  return entries.filter((e) => e.isDirectory() && existsSync(path.join(EXAMPLES, e.name, 'workflows.ts'))).map((e) => path.join(EXAMPLES, e.name)).sort()
}
