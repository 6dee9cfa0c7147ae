/**
 * `praxis dev` (what `npm start` runs): embedded PostgreSQL, migrations, a local tenant, the
 * services deployed, the API listening, warm worker processes for every function pool of the
 * services (platform/pools/supervisor.ts), scaled on the queues and restarted when they die, and a
 * watch on the services. On a change of a service: codegen, a type-check, its rules bundle built,
 * new workers when the code they run changed (ready before the old ones stop), and a redeploy that
 * its running instances reach. A failed step prints its errors (file:line) and the service keeps
 * its previous version, rules and workers; the watch goes on.
 *
 * The services are the folders named, else the current project's (`findServices`).
 */
import { createHash } from 'node:crypto'
import { existsSync, watch, type FSWatcher } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { build, type BuildFailure } from 'esbuild'
import type pg from 'pg'
import pino from 'pino'
import { codegen, CodegenError } from '../../codegen/index.js'
import { qualifiedPool } from '../../sdk/index.js'
import type { ServiceManifest } from '../../sdk/manifest.js'
import { buildApi } from '../api/index.js'
import type { Config } from '../config.js'
import { BundleCache, buildBundle, deployBundle, readGeneratedManifest, type Deployment } from '../engine/index.js'
import { formatEvent, Supervisor, type PoolSpec } from '../pools/index.js'
import { reprocessingProgress } from '../queue/index.js'
import { deployedServices, ensureTenant, migrate, openDatabase } from '../store/index.js'
import { apiClient, DEV_SERVER_FILE } from './client.js'
import { changeText } from './deploys.js'
import { findServices, namedServices, NO_SERVICE, shown, skipped } from './services.js'
import { follow } from './progress.js'

const out = (line: string): void => void process.stdout.write(line + '\n')
/** The local tenant: the services are deployed to it, and the workers `praxis dev` spawns serve it only. */
const DEV_TENANT = 'dev'

export interface DevOptions {
  /** Service folders; none: the current project's (`findServices`). */
  services: string[]
  demo: boolean
  /** Workers kept per function pool (`--workers`, or `--min`), and at most (`--max`, default max(min, 2)). */
  workers: number
  min?: number | undefined
  max?: number | undefined
  /** A pool idle this long loses a worker (down to min). */
  idleMs?: number | undefined
  /** Watch the services and redeploy each on a change (the default); false (`--no-watch`): deploy once, then serve. */
  watch?: boolean | undefined
}

export async function runDev(config: Config, options: DevOptions): Promise<number> {
  const log = pino({ level: config.logLevel }, pino.destination(2))
  const t0 = Date.now()
  // The services first: a wrong folder is said before PostgreSQL starts.
  const found = options.services.length > 0 ? await namedServices(options.services) : await findServices(process.cwd())
  out(`[1/5] starting PostgreSQL${config.databaseUrl ? '' : ` (embedded, data in ${path.resolve(config.dataDir)})`}…`)
  const db = await openDatabase(config, log)
  const { applied } = await migrate(db.pool)
  out(`[2/5] database ready, ${applied.length} migrations applied (${Date.now() - t0} ms)`)

  await mkdir(config.dataDir, { recursive: true })
  const keyFile = path.join(config.dataDir, 'dev-api-key')
  const existingKey = (await readFile(keyFile, 'utf8').catch(() => '')).trim()
  const { apiKey } = await ensureTenant(db.pool, DEV_TENANT, existingKey ? { apiKey: existingKey } : {})
  await writeFile(keyFile, apiKey + '\n', { mode: 0o600 })

  // Each bundle loads in the dev tenant's isolate, as the API would load it; the cache stays for redeploys.
  const bundles = new BundleCache({ limits: config.limits })
  const loop = new DevLoop({ pool: db.pool, bundles, tenantId: DEV_TENANT, watch: options.watch !== false })
  out(`[3/5] ${found.dirs.length} service${found.dirs.length === 1 ? '' : 's'} (${found.how}): ${found.dirs.map(shown).join(', ') || 'none'}`)
  if (found.dirs.length === 0) out(`      ${NO_SERVICE}`)
  await loop.prepare(found.dirs)

  // Request lines would drown the progress output; the API logs warnings and errors.
  const api = await buildApi({ pool: db.pool, databaseUrl: db.url, log: log.child({}, { level: 'warn' }), ruleLimits: config.limits, workerLeaseMs: config.leaseMs })
  const address = await api.listen({ port: config.port, host: config.host })
  // Where this dev server listens, for the other praxis commands (platform/cli/client.ts resolveServer: used while this pid lives).
  const serverFile = path.join(config.dataDir, DEV_SERVER_FILE)
  await writeFile(serverFile, JSON.stringify({ url: address, pid: process.pid }) + '\n')
  out(`[4/5] API listening on ${address}  (tenant "dev", API key in ${keyFile})`)

  // Workers: min..max warm processes per function pool of the services, for the dev tenant only.
  // "[5/5]" is printed once every pool's workers are registered and taking jobs, not when spawned.
  const min = options.min ?? options.workers
  let announced = false
  const serving = loop.serving()
  const supervisor = new Supervisor({
    tenantId: DEV_TENANT, dirs: serving.map((s) => s.dir), pools: serving.flatMap((s) => s.pools), databaseUrl: db.url, db: db.pool, log, min, max: options.max ?? Math.max(min, 2),
    idleMs: options.idleMs, depthPerWorker: config.workerConcurrency,
    // The workers' own log lines (JSON) would drown the progress output; LOG_LEVEL set shows them.
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
    onEvent: (event) => {
      // The workers a restart starts and stops are told by the loop's own lines.
      if (event.kind === 'spawned' && event.cause === 'reload' && event.pid !== undefined) loop.quiet.add(event.pid)
      if ('pid' in event && event.pid !== undefined && loop.quiet.has(event.pid)) return
      // Starts are summed up by "[5/5]"; after it, and for deaths and crash loops, every event.
      if (announced || event.kind === 'exited' || event.kind === 'crash-loop' || event.kind === 'not-ready') out(`workers: ${formatEvent(event)}`)
    },
  })
  loop.supervisor = supervisor
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  const specs = await supervisor.start().catch((error: Error) => {
    out(`workers: none started (${error.message})`)
    return []
  })
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
  if (specs.length === 0 && serving.length > 0) out('      no service has a function yet: workers start once one has (its functions.ts exports defineFunction(...) values)')

  // A service deployed to the dev tenant from a folder praxis dev does not run has no worker
  // here: say so, once each (at start-up, and when one is deployed while dev runs).
  const told = new Set<string>()
  const tellUnknown = async (): Promise<void> => {
    const known = new Set(loop.names())
    for (const service of await deployedServices(db.pool, DEV_TENANT)) {
      if (known.has(service) || told.has(service)) continue
      told.add(service)
      out(`note: service ${service} is deployed to tenant "${DEV_TENANT}", but praxis dev was not started with its folder, so no worker here runs its functions and its instances wait: `
        + `restart with \`praxis dev ${[...loop.dirs().map((d) => path.relative('.', d) || '.'), `<${service}-folder>`].join(' ')}\`, or run \`praxis worker <${service}-folder> --tenant ${DEV_TENANT}\``)
    }
  }
  await tellUnknown().catch(() => undefined)
  const notes = setInterval(() => void tellUnknown().catch(() => undefined), 2000)
  notes.unref()

  if (options.watch !== false) {
    loop.watch(found.discover ? process.cwd() : null)
    out(`watching ${loop.names().join(', ') || 'for services'}${found.discover ? ' (and new service folders)' : ''}: on a save, codegen, types, deploy, and new workers when their code changed`)
  } else {
    out('not watching the services (--no-watch): restart praxis dev to deploy a change')
  }
  const workflows = loop.workflows()
  if (workflows.includes('encodeVideo')) {
    out(`\ntry:  node bin/praxis.js start encodeVideo --input '{"source":"s3://in/trailer.mov","recipe":"h264-1080p"}' --wait`)
    if (workflows.includes('publishTitle')) out(`      node bin/praxis.js start publishTitle --input '{"title":"Trailer","source":"s3://in/t.mov"}' --wait   (starts encodeVideo as a child)`)
    out('')
  } else if (workflows.length > 0) {
    out(`\ntry:  praxis start ${workflows[0]} --input '<its input as JSON>' --wait\n`)
  }

  // Stop at once on a signal, even mid-demo: the workers got it too (Ctrl-C signals the whole
  // process group), and a supervisor not told it is stopping would restart them.
  let stopping = false
  const stopped = stopRequested.then(() => {
    stopping = true
    clearInterval(notes)
    return shutdown()
  })

  if (options.demo && workflows.includes('encodeVideo')) {
    out('demo: encoding s3://demo/trailer.mov with recipe h264-1080p')
    const client = apiClient(address, apiKey)
    try {
      const started = await client.request('POST', '/v1/workflows/encodeVideo/instances', { input: { source: 's3://demo/trailer.mov', recipe: 'h264-1080p', durationSeconds: 240 } })
      const final = await follow(client, started.id, (line) => out(`  ${line}`), { timeoutMs: 120_000 })
      out(`demo: instance ${started.id} ${final.status}; result ${JSON.stringify(final.result)}`)
      out(`      inspect it: node bin/praxis.js inspect ${started.id}\n`)
    } catch (error) {
      if (!stopping) out(`demo failed: ${(error as Error).message}`)
    }
  }
  if (!stopping) {
    out('Praxis dev is running; Ctrl-C stops it.')
    loop.checkInBackground()
  }
  return stopped

  async function shutdown(): Promise<number> {
    out('stopping: each worker finishes its running functions first…')
    loop.close()
    await supervisor.stop()
    await api.close()
    // Gone with the server: a later process that gets this pid must not be taken for it.
    await rm(serverFile, { force: true })
    await bundles.close()
    await db.close()
    return 0
  }
}

// ---------------------------------------------------------------------------------------------
// The loop

/** How long a burst of writes must be quiet before a service is run again, and the most a burst delays it. */
const QUIET_MS = 120
const BURST_MS = 1000
/** How long a redeploy waits for its reprocessing run to reach the running instances before saying "ready". */
const REACH_MS = 15_000
/** Error lines printed per failure. */
const MAX_ERROR_LINES = 40
/** What a change of may concern a service: source, JSON (not docs, logs, editors' swap files). */
const SOURCE = /\.(?:[cm]?[jt]sx?|json)$/
/** In place of a changed file: the service is new (found while dev runs). */
const NEW_SERVICE = ''

interface DevService {
  /** Absolute folder; its name is the folder's. */
  dir: string
  name: string
  /** The version of its rules this loop made active (null: none yet). */
  version: number | null
  /** Its workflows' names, as deployed. */
  workflows: string[]
  /** A hash of the code its workers run (functions.ts bundled with what it imports; null: it has none); undefined: none started for it yet. */
  workersCode: string | null | undefined
  /** Its function pools, from its generated manifest, as its workers serve them. */
  pools: PoolSpec[]
  /** Files outside its folder (not in node_modules) that its workflows or functions import: watched too. */
  outside: Set<string>
}

/** A step that failed: its name, the lines that say why (file:line first where known). */
class StepError extends Error {
  constructor(readonly step: string, readonly lines: string[], readonly located: boolean) {
    super(`${step} failed: ${lines.join('\n')}`)
  }
}

/** What one build of a service gives the next steps. */
interface Built { code: string; hash: string; manifest: ServiceManifest | null; functions: string | null; outside: Set<string> }

/**
 * The services and what runs for each: the steps of a change (codegen, types, build, workers,
 * deploy, reach), run for one service at a time, after a burst of writes is over.
 */
class DevLoop {
  supervisor: Supervisor | null = null
  /** Worker pids whose start and stop the loop's own lines tell (a restart's, while it runs). */
  readonly quiet = new Set<number>()
  private readonly services = new Map<string, DevService>()
  private readonly watchers = new Map<string, FSWatcher>()
  private readonly dirty = new Map<DevService, Set<string>>()
  private timer: NodeJS.Timeout | null = null
  private burstAt = 0
  private running: Promise<void> | null = null
  private rescans: NodeJS.Timeout | null = null
  private rescanning = false
  private rescanError = ''
  private watching = false
  private closed = false
  private readonly checker = new CheckThread()

  /** `watch`: whether it will watch (what a failure at start-up tells to do). */
  constructor(private readonly options: { pool: pg.Pool; bundles: BundleCache; tenantId: string; watch: boolean }) {}

  names(): string[] {
    return [...this.services.values()].map((s) => s.name)
  }

  dirs(): string[] {
    return [...this.services.keys()]
  }

  /** The services deployed by this loop (their workers are to run). */
  serving(): DevService[] {
    return [...this.services.values()].filter((s) => s.workersCode !== undefined)
  }

  workflows(): string[] {
    return [...this.services.values()].flatMap((s) => s.workflows)
  }

  /**
   * Start-up: codegen, build and deploy of each service, printed as "[3/5]" lines (the type-check
   * follows in the background: `checkInBackground`). A service that fails a step is not deployed
   * and gets no worker; it runs once a save makes it pass.
   */
  async prepare(dirs: readonly string[]): Promise<void> {
    const services = dirs.map((dir) => this.add(dir))
    const failed = new Map<DevService, StepError>()
    for (const s of services) await this.codegen(s).catch((error: unknown) => failed.set(s, asStep('codegen', error)))
    for (const [i, s] of services.entries()) {
      const n = `  [${i + 1}/${services.length}]`
      if (!failed.has(s)) {
        try {
          const built = await this.build(s)
          const d = await this.deploy(s, built)
          s.workersCode = built.functions
          s.pools = poolsOf(s, built.manifest)
          out(`[3/5] deployed ${s.name} v${d.bundle.version}${d.created ? '' : ' (unchanged)'}: ${d.manifest.workflows.map((w) => `${w.name} (${w.rules.length} rules)`).join(', ') || 'no workflow'}${n}`)
          continue
        } catch (error) {
          failed.set(s, asStep('deploy', error))
        }
      }
      const e = failed.get(s)!
      out(`[3/5] ✗ ${s.name}: ${e.step} failed${n}`)
      printLines(e.lines, '        ')
      out(`      ${s.name} is not deployed by this run and has no worker yet: fix it and ${this.options.watch ? 'save, praxis dev runs it then' : 'start praxis dev again'}`)
    }
  }

  /**
   * The type-check of the services deployed at start-up, run after it (it takes seconds, and
   * they ran before): its errors are printed with what to do. Changes wait for it.
   */
  checkInBackground(): void {
    const services = this.serving()
    if (services.length === 0 || this.running || this.closed) return
    const t0 = Date.now()
    this.running = this.types(services.map((s) => s.dir))
      .then((result) => {
        if (this.closed) return
        const what = `${services.length} service${services.length === 1 ? '' : 's'}`
        if (result.code === 0) return out(`${clock()} types    ok: ${what} type-checked (${took(Date.now() - t0)})`)
        out(`${clock()} ✗ types: errors in ${what} as deployed at start-up (${took(Date.now() - t0)})`)
        printLines(result.lines, '    ')
        out(`  they run as they are: fix them and save${this.watching ? '' : ', then start praxis dev again'}; a change of a service with errors is not deployed`)
      }, (error: Error) => { if (!this.closed) out(`${clock()} types: the check could not run (${error.message})`) })
      .finally(() => {
        this.running = null
        this.kick()
      })
  }

  /** Watches each service's folder, and the files outside it that its code imports; with `root`, new service folders under it too. */
  watch(root: string | null): void {
    this.watching = true
    for (const s of this.services.values()) this.watchService(s)
    this.watchOutside()
    if (root) {
      const rescan = (): void => {
        this.rescans = setTimeout(() => void this.rescan(root).finally(() => { if (!this.closed) rescan() }), 2000)
        this.rescans.unref()
      }
      rescan()
    }
  }

  close(): void {
    this.closed = true
    this.checker.close()
    if (this.timer) clearTimeout(this.timer)
    if (this.rescans) clearTimeout(this.rescans)
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
  }

  // -------------------------------------------------------------------------------------------

  private add(dir: string): DevService {
    const abs = path.resolve(dir)
    const s: DevService = { dir: abs, name: path.basename(abs), version: null, workflows: [], workersCode: undefined, pools: [], outside: new Set() }
    this.services.set(abs, s)
    return s
  }

  private watchService(s: DevService): void {
    const key = `service:${s.dir}`
    if (this.watchers.has(key) || this.closed) return
    try {
      const w = watch(s.dir, { recursive: true }, (_event, filename) => {
        if (filename === null) return this.changed(s, s.dir)
        const rel = filename.toString()
        if (rel.split(path.sep).some(skipped) || !SOURCE.test(rel)) return
        this.changed(s, path.join(s.dir, rel))
      })
      w.on('error', (error) => {
        if (this.closed) return
        out(`note: cannot watch ${shown(s.dir)} any more (${error.message}): restart praxis dev to watch it again`)
        w.close()
        this.watchers.delete(key)
      })
      this.watchers.set(key, w)
    } catch (error) {
      out(`note: cannot watch ${shown(s.dir)} (${(error as Error).message}): its changes are not seen; restart praxis dev to try again`)
    }
  }

  /** One watcher per folder outside the services holding a file their code imports; only those files count. */
  private watchOutside(): void {
    if (!this.watching || this.closed) return
    const folders = new Set([...this.services.values()].flatMap((s) => [...s.outside].map((f) => path.dirname(f))))
    for (const [key, w] of this.watchers) {
      if (key.startsWith('outside:') && !folders.has(key.slice('outside:'.length))) {
        w.close()
        this.watchers.delete(key)
      }
    }
    for (const folder of folders) {
      const key = `outside:${folder}`
      if (this.watchers.has(key)) continue
      try {
        const w = watch(folder, (_event, filename) => {
          if (filename === null) return
          const file = path.join(folder, filename.toString())
          for (const s of this.services.values()) if (s.outside.has(file)) this.changed(s, file)
        })
        w.on('error', () => {
          w.close()
          this.watchers.delete(key)
        })
        this.watchers.set(key, w)
      } catch {
        // A folder gone since the build: the next build says what the code imports now.
      }
    }
  }

  private async rescan(root: string): Promise<void> {
    if (this.rescanning || this.closed) return
    this.rescanning = true
    try {
      const found = await findServices(root)
      this.rescanError = ''
      for (const dir of found.dirs) {
        if (this.services.has(dir)) continue
        const s = this.add(dir)
        this.watchService(s)
        this.changed(s, NEW_SERVICE)
      }
    } catch (error) {
      const message = (error as Error).message
      if (message !== this.rescanError) out(`note: looking for new services: ${message}`)
      this.rescanError = message
    } finally {
      this.rescanning = false
    }
  }

  /** A file of `s` changed: run `s` once the burst of writes is over. */
  private changed(s: DevService, file: string): void {
    if (this.closed) return
    const files = this.dirty.get(s) ?? new Set<string>()
    files.add(file)
    this.dirty.set(s, files)
    const now = Date.now()
    if (this.burstAt === 0) this.burstAt = now
    if (this.timer) clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = null
      this.burstAt = 0
      this.kick()
    }, Math.max(0, Math.min(QUIET_MS, this.burstAt + BURST_MS - now)))
  }

  /** Runs the services changed, one at a time, until none is left (a burst still going waits for its timer). */
  private kick(): void {
    if (this.running || this.closed) return
    this.running = (async () => {
      while (this.dirty.size > 0 && !this.timer && !this.closed) {
        const [s, files] = this.dirty.entries().next().value as [DevService, Set<string>]
        this.dirty.delete(s)
        await this.cycle(s, [...files])
      }
    })().finally(() => {
      this.running = null
      if (this.dirty.size > 0 && !this.timer) this.kick()
    })
  }

  /** The steps of a change of `s`, each printed with its time; a failure prints why and keeps what runs. */
  private async cycle(s: DevService, files: string[]): Promise<void> {
    const t0 = Date.now()
    const rel = (f: string): string => (f.startsWith(s.dir + path.sep) ? path.relative(s.dir, f) : shown(f))
    const names = [...new Set(files.filter((f) => f !== NEW_SERVICE).map(rel))].sort()
    out(files.includes(NEW_SERVICE)
      ? `${clock()} ${s.name}: a new service, in ${shown(s.dir)}`
      : `${clock()} ${s.name}: ${names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ')} changed`)
    let at = Date.now()
    const step = (name: string, text: string): void => {
      if (this.closed) return
      out(`  ${name.padEnd(8)} ${text} (${took(Date.now() - at)})`)
      at = Date.now()
    }
    try {
      let written: number
      try {
        written = await this.codegen(s)
      } catch (error) {
        const failure = asStep('codegen', error)
        // Codegen says what it found; where it has no file and line, the type-check may have them.
        if (!failure.located) {
          const types = await this.types([s.dir]).catch(() => null)
          if (types && types.compiler.length > 0) failure.lines.push('the type-check says:', ...types.compiler)
        }
        throw failure
      }
      step('codegen', written === 0 ? 'up to date' : `${written} file${written === 1 ? '' : 's'} of generated/ written`)
      const types = await this.types([s.dir])
      if (types.code !== 0) throw new StepError('types', types.lines, true)
      step('types', 'ok')
      const built = await this.build(s)
      if (this.closed) return
      if (built.functions !== s.workersCode) {
        const first = s.workersCode === undefined
        const restart = await this.restartWorkers(s, built)
        if (this.closed) return
        // null: no function before, none now, no worker to start or stop.
        if (restart && !restart.ok) throw new StepError('workers', [`${restart.error}: its error is above`, 'the previous workers keep serving'], false)
        if (restart) step('workers', restart.pools.length === 0 ? `none now: ${s.name} has no function` : `${restart.pools.join(', ')}${first ? '' : ' on the new code'}: ${restart.started} ready${restart.stopped ? `, ${restart.stopped} old stopped` : ''}`)
      }
      const previous = s.version
      const d = await this.deploy(s, built)
      step('deploy', d.created ? `v${d.bundle.version}${describeChanges(d)}` : `unchanged, v${d.bundle.version}`)
      // A first deploy has no old work to reach.
      const reached = previous === null ? null : await this.reach(s, d)
      if (reached) step('old work', reached)
      out(`✓ ${s.name} ready: v${d.bundle.version} (${took(Date.now() - t0)})`)
    } catch (error) {
      if (this.closed) return
      const failure = asStep('deploy', error)
      out(`✗ ${s.name}: ${failure.step} failed (${took(Date.now() - t0)})`)
      printLines(failure.lines, '    ')
      out(`  fix it and save: ${s.version === null ? `${s.name} is not deployed yet` : `v${s.version} keeps running${s.workersCode === undefined ? '' : ', and its workers'}`}; watching for changes`)
    }
  }

  /** Writes the service's generated/ (stubs, refs, client, manifest); how many files it wrote or removed. */
  private async codegen(s: DevService): Promise<number> {
    const result = await codegen({ dir: s.dir })
    return result.files.filter((f) => f.state === 'written' || f.state === 'removed').length
  }

  /**
   * `praxis check` (types, fact paths, generated files) of the folders, on its own thread: its
   * exit code, and its errors as `file:line:col: message [code]` (`compiler`: the TypeScript
   * compiler's only).
   */
  private async types(dirs: string[]): Promise<{ code: number; lines: string[]; compiler: string[] }> {
    const check = await import('./check.js')
    const { code, report } = await this.checker.run(dirs)
    const errors = (JSON.parse(report) as { diagnostics: Parameters<typeof check.formatDiagnostic>[0][] }).diagnostics.filter((d) => d.severity === 'error')
    const lines = (list: typeof errors): string[] => list.flatMap((d) => check.formatDiagnostic(d).split('\n'))
    return { code, lines: lines(errors), compiler: lines(errors.filter((d) => d.source === 'typescript')) }
  }

  /** The rules bundle, the generated manifest, and what the service's code is made of. */
  private async build(s: DevService): Promise<Built> {
    const bundle = await buildBundle(s.dir).catch((error: unknown) => { throw asStep('build', error) })
    const manifest = await readGeneratedManifest(s.dir).catch((error: unknown) => { throw asStep('build', error) })
    const made = await analyze(s.dir)
    return { ...bundle, manifest, ...made }
  }

  /** New workers for the service's code now (none: null, when it had none either). */
  private async restartWorkers(s: DevService, built: Built): Promise<{ ok: boolean; pools: string[]; started: number; stopped: number; error?: string | undefined } | null> {
    const pools = poolsOf(s, built.manifest)
    const supervisor = this.supervisor
    if (!supervisor) throw new StepError('workers', ['the workers are not started'], false)
    if (pools.length === 0 && !supervisor.status().some((status) => status.dirs.some((d) => path.resolve(d) === s.dir))) {
      s.workersCode = built.functions
      s.pools = []
      return null
    }
    for (const status of supervisor.status()) if (status.dirs.some((d) => path.resolve(d) === s.dir)) for (const pid of status.pids) this.quiet.add(pid)
    out(`  workers  ${pools.length === 0 ? `stopping those of ${s.name}` : `starting ${pools.map((p) => p.pool).join(', ')}${s.workersCode === undefined ? '' : ' with the new code'}`}…`)
    const restart = await supervisor.restartService(s.dir, pools).finally(() => this.quiet.clear())
    if (restart.ok) {
      s.workersCode = built.functions
      s.pools = pools
    }
    return restart
  }

  private async deploy(s: DevService, built: Built): Promise<Deployment> {
    try {
      const d = await deployBundle(this.options.pool, this.options.bundles, this.options.tenantId, s.name, built.code, built.hash, built.manifest)
      s.version = d.bundle.version
      s.workflows = d.manifest.workflows.map((w) => w.name)
      s.outside = built.outside
      this.watchOutside()
      return d
    } catch (error) {
      throw asStep('deploy', error)
    }
  }

  /** Waits (a while) for the deploy's reprocessing run to reach the running instances; what it did, or null when it has nothing to do. */
  private async reach(s: DevService, d: Deployment): Promise<string | null> {
    if (!d.reprocessing) return null
    if (d.reprocessing.total === 0) return 'no running instance of the changed workflows to reach'
    if (this.supervisor && this.supervisor.status().length === 0) return `${d.reprocessing.total} instance${d.reprocessing.total === 1 ? '' : 's'} to reach once a worker of tenant "${this.options.tenantId}" runs (none does: no service has a function)`
    const started = Date.now()
    for (;;) {
      const p = await reprocessingProgress(this.options.pool, this.options.tenantId, s.name, d.reprocessing.id)
      if (!p) return null
      const settled = p.status !== 'running' && p.evaluated >= p.queued
      if (settled || p.status === 'superseded' || Date.now() - started > REACH_MS || this.closed) {
        const counts = `${p.walked}/${p.total} walked, ${p.queued} re-evaluated, ${p.fired} fired a new or changed rule, ${p.failed} failed`
        if (p.status === 'superseded') return `${counts}; superseded by a newer deploy`
        return settled ? `${counts}${p.failed ? ' (see their timelines: praxis inspect <id>)' : ''}` : `${counts} so far; it goes on in the background (GET /v1/services/${s.name}/reprocessing/${p.id})`
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

/** platform/cli/check.ts, as this module is (TypeScript under tsx, or built JavaScript). */
const CHECK_MODULE = new URL(`./check.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url).href
const CHECK_THREAD = `
const { parentPort, workerData } = require('node:worker_threads')
let loaded
parentPort.on('message', async ({ id, dirs }) => {
  try {
    loaded ??= import(workerData.tsx).then(({ register }) => register()).then(() => import(workerData.check))
    const { runCheck } = await loaded
    let report = ''
    // Types only: the loop's codegen step ran just before, on the same files.
    const code = await runCheck(dirs, { json: true, codegen: false }, (text) => { report += text })
    parentPort.postMessage({ id, code, report })
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.stack ?? error.message : String(error) })
  }
})`

/**
 * `runCheck` (platform/cli/check.ts) on a worker thread of its own, kept between checks: the
 * TypeScript compiler runs for seconds without a break, and on this thread it would hold up the
 * API's requests and the loop's timers meanwhile.
 */
class CheckThread {
  private worker: Worker | null = null
  private next = 0
  private readonly pending = new Map<number, { resolve: (result: { code: number; report: string }) => void; reject: (error: Error) => void }>()

  run(dirs: string[]): Promise<{ code: number; report: string }> {
    const worker = this.worker ?? this.start()
    const id = ++this.next
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      worker.postMessage({ id, dirs })
    })
  }

  close(): void {
    void this.worker?.terminate()
    this.worker = null
  }

  private start(): Worker {
    const worker = new Worker(CHECK_THREAD, { eval: true, workerData: { check: CHECK_MODULE, tsx: import.meta.resolve('tsx/esm/api') } })
    worker.unref()
    worker.on('message', (m: { id: number; code?: number; report?: string; error?: string }) => {
      const waiting = this.pending.get(m.id)
      this.pending.delete(m.id)
      if (m.error !== undefined) waiting?.reject(new Error(`the type-check failed to run: ${m.error}`))
      else waiting?.resolve({ code: m.code ?? 1, report: m.report ?? '' })
    })
    // Gone (a crash): what waits fails, and the next check starts a new thread.
    const gone = (error: Error): void => {
      if (this.worker === worker) this.worker = null
      for (const waiting of this.pending.values()) waiting.reject(error)
      this.pending.clear()
    }
    worker.on('error', gone)
    worker.on('exit', (code) => gone(new Error(`the type-check thread exited (code ${code})`)))
    this.worker = worker
    return worker
  }
}

/** The service's function pools, as its generated manifest names them (the workers' `--pool`). */
function poolsOf(s: DevService, manifest: ServiceManifest | null): PoolSpec[] {
  const pools = new Map<string, PoolSpec>()
  for (const fn of manifest?.functions ?? []) {
    const pool = qualifiedPool({ pool: fn.pool, service: s.name })
    const spec = pools.get(pool) ?? { pool, dirs: [s.dir], functions: [] }
    spec.functions.push(fn.name)
    pools.set(pool, spec)
  }
  return [...pools.values()].sort((a, b) => (a.pool < b.pool ? -1 : 1))
}

/**
 * What a service's code is made of: a hash of its functions bundled with what they import (what
 * its workers run: a change there needs new workers), and the files outside its folder that its
 * workflows or functions import (watched). Packages (node_modules) are left out.
 */
async function analyze(dir: string): Promise<{ functions: string | null; outside: Set<string> }> {
  const entry = (name: string): string | undefined => ['.ts', '.js'].map((ext) => path.join(dir, name + ext)).find((f) => existsSync(f))
  const functions = entry('functions')
  const entries = [functions, entry('workflows')].filter((f): f is string => f !== undefined)
  if (entries.length === 0) return { functions: null, outside: new Set() }
  const result = await build({
    entryPoints: entries, bundle: true, write: false, metafile: true, outdir: path.join(dir, '.praxis-dev-analysis'),
    platform: 'node', format: 'esm', packages: 'external', target: 'es2022', logLevel: 'silent',
  }).catch((error: BuildFailure) => {
    throw new StepError('build', (error.errors ?? []).map((e) => `${e.location ? `${shown(path.resolve(e.location.file))}:${e.location.line}:${e.location.column + 1}: ` : ''}${e.text}`), true)
  })
  let hash: string | null = null
  const outside = new Set<string>()
  for (const [output, meta] of Object.entries(result.metafile.outputs)) {
    for (const input of Object.keys(meta.inputs)) {
      const file = path.resolve(input)
      if (!file.startsWith(dir + path.sep) && !file.split(path.sep).includes('node_modules') && existsSync(file)) outside.add(file)
    }
    if (functions && meta.entryPoint && path.resolve(meta.entryPoint) === functions) {
      const text = result.outputFiles.find((f) => f.path === path.resolve(output))?.text ?? ''
      hash = createHash('sha256').update(text).digest('hex')
    }
  }
  return { functions: hash, outside }
}

/** An error as a failed step's lines: a step's own, else its message (which names file and line where the step knows them). */
function asStep(step: string, error: unknown): StepError {
  if (error instanceof StepError) return error
  const message = error instanceof Error ? error.message : String(error)
  const located = (error instanceof CodegenError && error.location !== undefined) || /\.[cm]?[jt]sx?:\d+/.test(message)
  return new StepError(step, message.split('\n').filter((l) => l.trim() !== ''), located)
}

function printLines(lines: readonly string[], indent: string): void {
  for (const line of lines.slice(0, MAX_ERROR_LINES)) out(`${indent}${line}`)
  if (lines.length > MAX_ERROR_LINES) out(`${indent}… and ${lines.length - MAX_ERROR_LINES} more lines`)
}

function describeChanges(d: Deployment): string {
  const parts = d.changes.flatMap((c) => {
    const what = changeText(c)
    return what ? [`${c.workflow}: ${what}`] : []
  })
  return parts.length ? `: ${parts.join(' · ')}` : ': no rule changed'
}

const clock = (): string => new Date().toTimeString().slice(0, 8)
const took = (ms: number): string => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`)
