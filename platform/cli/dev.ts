/**
 * `praxis dev` (what `npm start` runs): embedded PostgreSQL, migrations, a local tenant, the
 * examples deployed, the API listening, and warm worker processes for every function pool of the
 * services (platform/pools/supervisor.ts), scaled on the queues and restarted when they die.
 */
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { buildApi } from '../api/index.js'
import type { Config } from '../config.js'
import { BundleCache, buildBundle, deployBundle, readGeneratedManifest } from '../engine/index.js'
import { formatEvent, Supervisor } from '../pools/index.js'
import { deployedServices, ensureTenant, migrate, openDatabase } from '../store/index.js'
import { apiClient } from './client.js'
import { follow } from './progress.js'

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url))
const out = (line: string): void => void process.stdout.write(line + '\n')
/** The local tenant: the examples are deployed to it, and the workers `praxis dev` spawns serve it only. */
const DEV_TENANT = 'dev'

export interface DevOptions {
  services: string[]
  demo: boolean
  /** Workers kept per function pool (`--workers`, or `--min`), and at most (`--max`, default max(min, 2)). */
  workers: number
  min?: number | undefined
  max?: number | undefined
  /** A pool idle this long loses a worker (down to min). */
  idleMs?: number | undefined
}

export async function runDev(config: Config, options: DevOptions): Promise<number> {
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
  const api = await buildApi({ pool: db.pool, databaseUrl: db.url, log: log.child({}, { level: 'warn' }), ruleLimits: config.limits, workerLeaseMs: config.leaseMs })
  const address = await api.listen({ port: config.port, host: config.host })
  out(`[4/5] API listening on ${address}  (tenant "dev", API key in ${keyFile})`)

  // Workers: min..max warm processes per function pool of the services, for the dev tenant only.
  // "[5/5]" is printed once every pool's workers are registered and taking jobs, not when spawned.
  const min = options.min ?? options.workers
  let announced = false
  const supervisor = new Supervisor({
    tenantId: DEV_TENANT, dirs, databaseUrl: db.url, db: db.pool, log, min, max: options.max ?? Math.max(min, 2),
    idleMs: options.idleMs, depthPerWorker: config.workerConcurrency,
    // The workers' own log lines (JSON) would drown the progress output; LOG_LEVEL set shows them.
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
    onEvent: (event) => {
      // Starts are summed up by "[5/5]"; after it, and for deaths and crash loops, every event.
      if (announced || event.kind === 'exited' || event.kind === 'crash-loop' || event.kind === 'not-ready') out(`workers: ${formatEvent(event)}`)
    },
  })
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  const specs = dirs.length > 0 ? await supervisor.start().catch((error: Error) => {
    out(`workers: none started (${error.message})`)
    return []
  }) : []
  if (specs.length > 0) {
    const waiting = setInterval(() => {
      const slow = supervisor.status().filter((s) => s.ready < supervisor.policy.min)
      out(`      still starting workers (${Math.round((Date.now() - t0) / 1000)} s): ${slow.map((s) => `${s.pool} ${s.ready}/${supervisor.policy.min} ready`).join(', ')}`)
    }, 5000)
    const ready = await Promise.race([supervisor.ready().then(() => true), stopRequested.then(() => false)])
    clearInterval(waiting)
    if (!ready) return shutdown()
  }
  announced = true
  const processes = supervisor.status().reduce((n, s) => n + s.ready, 0)
  out(`[5/5] workers ready: ${processes} process(es) for tenant "${DEV_TENANT}", ${min}..${supervisor.policy.max} per pool: ${specs.map((s) => s.pool).join(', ') || 'none'}  (ready in ${Date.now() - t0} ms)`)

  // A service deployed to the dev tenant from a folder praxis dev was not started with has no
  // worker here: say so, once each (at start-up, and when one is deployed while dev runs).
  const known = new Set(dirs.map((d) => path.basename(path.resolve(d))))
  const told = new Set<string>()
  const tellUnknown = async (): Promise<void> => {
    for (const service of await deployedServices(db.pool, DEV_TENANT)) {
      if (known.has(service) || told.has(service)) continue
      told.add(service)
      out(`note: service ${service} is deployed to tenant "${DEV_TENANT}", but praxis dev was not started with its folder, so no worker here runs its functions and its instances wait: `
        + `restart with \`praxis dev ${[...dirs.map((d) => path.relative('.', d) || '.'), `<${service}-folder>`].join(' ')}\`, or run \`praxis worker <${service}-folder> --tenant ${DEV_TENANT}\``)
    }
  }
  await tellUnknown().catch(() => undefined)
  const watch = setInterval(() => void tellUnknown().catch(() => undefined), 2000)
  watch.unref()

  out(`\ntry:  node bin/praxis.js start encodeVideo --input '{"source":"s3://in/trailer.mov","recipe":"h264-1080p"}' --wait`)
  out(`      node bin/praxis.js start publishTitle --input '{"title":"Trailer","source":"s3://in/t.mov"}' --wait   (starts encodeVideo as a child)\n`)

  // Stop at once on a signal, even mid-demo: the workers got it too (Ctrl-C signals the whole
  // process group), and a supervisor not told it is stopping would restart them.
  let stopping = false
  const stopped = stopRequested.then(() => {
    stopping = true
    clearInterval(watch)
    return shutdown()
  })

  if (options.demo && dirs.some((d) => path.basename(path.resolve(d)) === 'video-encoding')) {
    out('demo: encoding s3://demo/trailer.mov with recipe h264-1080p')
    const client = apiClient(`http://${config.host}:${config.port}`, apiKey)
    try {
      const started = await client.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: 's3://demo/trailer.mov', recipe: 'h264-1080p', durationSeconds: 240 } })
      const final = await follow(client, started.id, (line) => out(`  ${line}`), { timeoutMs: 120_000 })
      out(`demo: instance ${started.id} ${final.status}; result ${JSON.stringify(final.result)}`)
      out(`      inspect it: node bin/praxis.js inspect ${started.id}\n`)
    } catch (error) {
      if (!stopping) out(`demo failed: ${(error as Error).message}`)
    }
  }
  if (!stopping) out('Praxis dev is running; Ctrl-C stops it.')
  return stopped

  async function shutdown(): Promise<number> {
    out('stopping: each worker finishes its running functions first…')
    await supervisor.stop()
    await api.close()
    await db.close()
    return 0
  }
}

async function exampleDirs(): Promise<string[]> {
  const entries = await readdir(EXAMPLES, { withFileTypes: true })
  return entries.filter((e) => e.isDirectory() && existsSync(path.join(EXAMPLES, e.name, 'workflows.ts'))).map((e) => path.join(EXAMPLES, e.name)).sort()
}
