/**
 * The `praxis` command, on commander. Every command's action imports what it needs when it runs:
 * `praxis start`, `praxis inspect` and `--help` load this file, commander and ./client.ts only (no
 * zod, pg, engine, codegen or bundler), so they answer in a Node start-up and a little more.
 *
 * The reference of every command, flag and variable is docs/cli.md; `praxis <command> --help`
 * prints the same per command. Usage errors (an unknown command or flag, a missing argument) exit
 * 2 and name the command and its `--help`; failures exit 1; `--json` prints one JSON document on
 * stdout and sends progress to stderr.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { Config } from '../config.js'
import {
  ApiError, apiClient, cliEnv, defaultServerUrl, devDataDir, DEV_SERVER_FILE, readDevServer, resolveApiKey, resolveServer, type ApiClient,
} from './client.js'

/** Exit codes: a failed command, and a command line that names no command, or a wrong flag or argument. */
const FAILED = 1
const USAGE = 2

const write = (stream: NodeJS.WriteStream, line: string): void => void stream.write(line + '\n')

/**
 * Where a command's output goes. Text mode: lines on stdout. `--json`: one JSON document on
 * stdout (`result`), the human lines (progress, notes) on stderr.
 */
interface Output {
  json: boolean
  /** A human line: stdout, or stderr under --json. */
  line(text: string): void
  /** The command's JSON document (under --json only). */
  result(value: unknown): void
  /** The stream human lines go to (a progress bar redraws on it when it is a terminal). */
  stream: NodeJS.WriteStream
}

function output(json: boolean | undefined): Output {
  const stream = json ? process.stderr : process.stdout
  return {
    json: Boolean(json),
    stream,
    line: (text) => write(stream, text),
    result: (value) => write(process.stdout, JSON.stringify(value, null, 2)),
  }
}

// ---- option parsers: a bad value is a usage error naming the flag -------------------------------

const whole = (value: string): number => {
  const n = value.trim() === '' ? NaN : Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('give a whole number (0 or more)')
  return n
}
const positive = (value: string): number => {
  const n = whole(value)
  if (n === 0) throw new InvalidArgumentError('give a whole number above 0')
  return n
}
const json = (value: string): unknown => {
  try {
    return JSON.parse(value)
  } catch (error) {
    throw new InvalidArgumentError(`not valid JSON (${(error as Error).message}); quote it: --input '{"source":"s3://in.mov"}'`)
  }
}
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

// ---- where the server is, said in --help ----------------------------------------------------------

/** The server discovery order and what it resolves to in this environment, for `--help`. */
function serverHelp(): string {
  let dataDir = process.env.PRAXIS_DATA_DIR ?? '.praxis'
  let dev = '?'
  let fallback = '?'
  let now: string
  try {
    const e = cliEnv()
    dataDir = devDataDir()
    const record = readDevServer(dataDir)
    dev = 'alive' in record
      ? `${record.url}, pid ${record.pid}${record.alive ? '' : ' (not running: skipped)'}`
      : 'missing' in record ? 'none running' : `${record.file} is ${record.invalid} (skipped)`
    fallback = `${defaultServerUrl(e)}  (${process.env.HOST === undefined && process.env.PORT === undefined ? 'the defaults' : `HOST ${e.host}, PORT ${e.port}`})`
    const target = resolveServer(undefined)
    now = `${target.url}  (${{ flag: '1', env: '2', dev: '3', default: '4' }[target.source.kind]}.)`
  } catch (error) {
    now = `none: ${(error as Error).message}`
  }
  return `
Server: the first of
  1. --server URL
  2. PRAXIS_URL               ${process.env.PRAXIS_URL || '(unset)'}
  3. the running praxis dev   recorded in ${path.join(dataDir, DEV_SERVER_FILE)}, used while its pid lives: ${dev}
  4. http://HOST:PORT         ${fallback}
  without --server, now:      ${now}
API key: --api-key KEY, else PRAXIS_API_KEY, else the key praxis dev wrote to ${path.join(dataDir, 'dev-api-key')}`
}

// ---- the commands ---------------------------------------------------------------------------------

interface ServerOptions { server?: string; apiKey?: string }

/** The API client of a command: its server (see serverHelp) and key. */
async function connect(options: ServerOptions): Promise<ApiClient> {
  const target = resolveServer(options.server)
  return apiClient(target, await resolveApiKey(options.apiKey, devDataDir()))
}

/**
 * Makes the modules a command imports next loadable. From the sources (this repository) they are
 * TypeScript: bin/praxis.js loaded this file and ./client.ts through tsx's in-thread require hook
 * (a few ms) and removed it; the rest goes through tsx's module loader (a thread of its own, 60 ms
 * and more to start), registered here, once, by the commands that import more than this file.
 * Compiled (an installed package, dist/), only the commands that load a service's TypeScript
 * (functions.ts, workflows.ts) register it.
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
let typescript: Promise<void> | undefined
function prepare(loadsServiceTypeScript: boolean): Promise<void> {
  if (!FROM_SOURCE && !loadsServiceTypeScript) return Promise.resolve()
  typescript ??= import('tsx/esm/api').then(({ register }) => void register())
  return typescript
}

async function loadConfig(): Promise<Config> {
  await prepare(false)
  const { loadConfig } = await import('../config.js')
  return loadConfig()
}

interface DeployOptions extends ServerOptions { dryRun?: boolean; wait?: boolean; timeoutMs: number; json?: boolean }

async function deploy(dir: string, options: DeployOptions): Promise<number> {
  const io = output(options.json)
  await prepare(true)
  const [{ deployBody }, deploys] = await Promise.all([import('./deploy-body.js'), import('./deploys.js')])
  const { service, body } = await deployBody(dir, (name, stale) => `generated code of ${name} is stale (${stale.join(', ')}): run \`praxis codegen ${dir}\`, then deploy`)
  const client = await connect(options)
  if (options.dryRun) {
    const preview = await client.request('POST', `/v1/services/${service}/deployments?dryRun=true`, body)
    if (io.json) io.result({ preview })
    else deploys.printPreview(preview, io.line)
    return 0
  }
  const deployed = await client.request('POST', `/v1/services/${service}/deployments`, body)
  io.line(`${deployed.created ? 'deployed' : 'unchanged'}: ${service} version ${deployed.version} (${deployed.workflows.map((w: { name: string }) => w.name).join(', ')})`)
  deploys.printChanges(deployed.changes ?? [], io.line)
  if (deployed.unservedPools?.length) io.line(`note: no worker serves pool ${deployed.unservedPools.join(', ')} yet, so calls of its functions wait: run \`praxis worker ${dir} --tenant <tenant>\` (or \`praxis pools ${dir} --tenant <tenant>\`, or \`praxis dev ${dir}\`)`)
  const followed = deployed.reprocessing
    ? await deploys.followRun(client, service, deployed.reprocessing, deploys.streamSink(io.stream), { wait: Boolean(options.wait), timeoutMs: options.timeoutMs })
    : { code: 0, run: null }
  if (io.json) io.result({ deployment: deployed, run: followed.run })
  return followed.code
}

async function rollback(service: string, versionText: string | undefined, options: DeployOptions, command: Command): Promise<number> {
  const io = output(options.json)
  const version = versionText === undefined ? undefined : Number(versionText)
  if (version !== undefined && !(Number.isInteger(version) && version > 0)) command.error(`version ${versionText} is not a version number (1, 2, …: GET /v1/services/${service}/deployments lists them)`)
  await prepare(false)
  const deploys = await import('./deploys.js')
  const client = await connect(options)
  const body = version === undefined ? {} : { version }
  if (options.dryRun) {
    const preview = await client.request('POST', `/v1/services/${service}/rollback?dryRun=true`, body)
    if (io.json) io.result({ preview })
    else deploys.printPreview(preview, io.line)
    return 0
  }
  const rolled = await client.request('POST', `/v1/services/${service}/rollback`, body)
  io.line(`rolled back: ${service} version ${rolled.version} is active, with the rules of version ${rolled.from}`)
  deploys.printChanges(rolled.changes ?? [], io.line)
  const followed = rolled.reprocessing
    ? await deploys.followRun(client, service, rolled.reprocessing, deploys.streamSink(io.stream), { wait: Boolean(options.wait), timeoutMs: options.timeoutMs })
    : { code: 0, run: null }
  if (io.json) io.result({ rollback: rolled, run: followed.run })
  return followed.code
}

interface CodegenOptions { check?: boolean; from?: string; service?: string; manifest?: string; apiKey?: string; json?: boolean }

/** The service folders named, else the project's, as `praxis dev` finds them (else the current folder, which then says it is none). After `prepare`: it loads TypeScript. */
async function serviceDirs(named: string[]): Promise<string[]> {
  if (named.length > 0) return named
  const { findServices } = await import('./services.js')
  const found = (await findServices(process.cwd())).dirs.map((d) => path.relative(process.cwd(), d) || '.')
  return found.length > 0 ? found : ['.']
}

async function generate(dirsGiven: string[], options: CodegenOptions, command: Command): Promise<number> {
  const io = output(options.json)
  if ((options.from || options.manifest) && dirsGiven.length > 1) command.error('--from and --manifest add a layer to one service: name one service folder')
  if (options.from && options.manifest) command.error('give --from URL --service NAME or --manifest FILE, not both')
  if (options.from && !options.service) command.error('--from needs --service NAME, the deployed service to layer, e.g. --from http://127.0.0.1:3000 --service video-encoding')
  await prepare(true)
  const dirs = options.from || options.manifest ? (dirsGiven.length > 0 ? dirsGiven : ['.']) : await serviceDirs(dirsGiven)
  const { codegen, CodegenError, fetchManifest } = await import('../../codegen/index.js')
  let layer: { manifest: unknown; origin: string } | undefined
  if (options.from) {
    layer = { manifest: await fetchManifest(options.from, options.service!, await resolveApiKey(options.apiKey, devDataDir())), origin: `${options.from} (service ${options.service})` }
  } else if (options.manifest) {
    const file = options.manifest
    const { readFile } = await import('node:fs/promises')
    const text = await readFile(file, 'utf8').catch((error: Error) => { throw new Error(`cannot read --manifest ${file}: ${error.message}`) })
    try {
      layer = { manifest: JSON.parse(text), origin: file }
    } catch (error) {
      throw new Error(`--manifest ${file} is not JSON: ${(error as Error).message}`, { cause: error })
    }
  }
  const stale: string[] = []
  const results: unknown[] = []
  for (const dir of dirs) {
    const t0 = Date.now()
    const result = await codegen({ dir, check: Boolean(options.check), ...(layer ? { layer } : {}), onProgress: (line) => write(process.stderr, line) })
    const ms = Date.now() - t0
    const count = (state: string) => result.files.filter((f) => f.state === state).length
    const staleHere = result.files.filter((f) => f.state === 'stale').map((f) => path.join(dir, f.path))
    stale.push(...staleHere)
    results.push({ dir, ...result, stale: staleHere, ms })
    const n = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`
    io.line(`${result.service}: ${n(result.functions, 'function')}, ${n(result.workflows, 'workflow')}${result.layers.length ? `, layered on ${result.layers.join(', ')}` : ''}; `
      + `${n(result.files.length, 'file')}: ${options.check ? `${count('stale')} stale` : `${count('written')} written, ${count('removed')} removed`}, ${count('unchanged')} unchanged (${ms} ms)`)
  }
  if (io.json) io.result({ check: Boolean(options.check), services: results, stale })
  if (stale.length > 0) {
    if (!io.json) for (const file of stale) io.line(`stale: ${file}`)
    throw new CodegenError('PRX_CODEGEN_STALE', `${stale.length} generated file${stale.length === 1 ? ' is' : 's are'} stale: run \`praxis codegen ${dirs.join(' ')}\` and commit the result`)
  }
  return 0
}

interface StartOptions extends ServerOptions { input?: unknown; wait?: boolean; idempotencyKey?: string; timeoutMs: number; json?: boolean }

async function start(workflow: string, options: StartOptions): Promise<number> {
  const io = output(options.json)
  const client = await connect(options)
  const started = await client.request('POST', `/v1/workflows/${encodeURIComponent(workflow)}/instances`, { input: options.input ?? {}, ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}) })
  io.line(`${started.created ? 'started' : 'already started (same idempotency key)'}: ${started.id}`)
  if (!options.wait) {
    if (io.json) io.result(started)
    return 0
  }
  await prepare(false)
  const { follow } = await import('./progress.js')
  const final = await follow(client, started.id, io.line, { timeoutMs: options.timeoutMs })
  if (io.json) io.result(final)
  else {
    io.line(`status: ${final.status}`)
    io.line(`facts: ${JSON.stringify(final.facts, null, 2)}`)
    if (final.result !== null) io.line(`result: ${JSON.stringify(final.result)}`)
    if (final.error !== null) io.line(`error: ${JSON.stringify(final.error)}`)
  }
  return final.status === 'completed' ? 0 : FAILED
}

async function inspect(id: string, options: ServerOptions & { json?: boolean }): Promise<number> {
  const io = output(options.json)
  const client = await connect(options)
  const route = `/v1/instances/${encodeURIComponent(id)}`
  const instance = await client.request('GET', route)
  const timeline: { id: string; revision: number; kind: string; rule: string | null; data: unknown; at: string }[] = []
  let after = ''
  for (;;) {
    const page = await client.request('GET', `${route}/timeline?limit=1000${after ? `&after=${after}` : ''}`)
    timeline.push(...page.entries)
    if (!page.nextCursor) break
    after = page.nextCursor
  }
  if (io.json) {
    io.result({ ...instance, timeline })
    return 0
  }
  io.line(`instance ${instance.id}  ${instance.service}.${instance.workflow}  status ${instance.status}  revision ${instance.revision}  bundle v${instance.bundleVersion}`)
  io.line(`facts: ${JSON.stringify(instance.facts, null, 2)}`)
  if (instance.result !== null) io.line(`result: ${JSON.stringify(instance.result)}`)
  if (instance.error !== null) io.line(`error: ${JSON.stringify(instance.error)}`)
  for (const w of instance.waiting ?? []) io.line(`waiting: ${w.reason}: ${w.fix}`)
  io.line('timeline:')
  for (const e of timeline) io.line(`  #${e.id} r${e.revision} ${e.at}  ${e.kind}${e.rule ? ` ${e.rule}` : ''}  ${JSON.stringify(e.data)}`)
  return 0
}

interface AdminOptions { id?: string; tenant?: string; label?: string; finishedDays?: string; eventsDays?: string; runningTimelineDays?: string; purge?: boolean; json?: boolean }

/** `praxis tenants …` and `praxis keys …` as text: platform/cli/admin.ts. */
async function admin(group: 'tenants' | 'keys', positionals: string[], options: AdminOptions): Promise<number> {
  const config = await loadConfig()
  const { runAdmin } = await import('./admin.js')
  return runAdmin(config, group, {
    positionals, id: options.id, tenant: options.tenant, label: options.label,
    finishedDays: options.finishedDays, eventsDays: options.eventsDays, runningTimelineDays: options.runningTimelineDays, purge: options.purge,
  }, (line) => write(process.stdout, line))
}

/**
 * `--json` of tenants and keys: the same database as admin.ts (DATABASE_URL, else a running praxis
 * dev's; ./database.ts says what to check when it does not answer), migrated, the rows as JSON.
 */
async function adminJson(command: string, work: (store: typeof import('../store/index.js'), pool: import('pg').Pool) => Promise<unknown>): Promise<number> {
  const config = await loadConfig()
  const [store, { openCliDatabase }] = await Promise.all([import('../store/index.js'), import('./database.js')])
  const pool = await openCliDatabase(config, command, 2)
  try {
    await store.migrate(pool)
    write(process.stdout, JSON.stringify(await work(store, pool), null, 2))
    return 0
  } finally {
    await pool.end()
  }
}

// ---- the program ----------------------------------------------------------------------------------

/** commander's Command, with usage errors that name the command and point to its --help. */
class PraxisCommand extends Command {
  override createCommand(name?: string): PraxisCommand {
    return new PraxisCommand(name)
  }

  /** `praxis tenants create`, not `create`. */
  commandPath(): string {
    const names = [this.name()]
    for (let c = this.parent; c; c = c.parent) names.unshift(c.name())
    return names.join(' ')
  }

  /** Every error commander raises (and a command raises with `command.error`) is a usage error: exit 2. */
  override error(message: string, options?: { code?: string; exitCode?: number }): never {
    const where = this.commandPath()
    const text = message.replace(/^error: /, '')
    const hint = this.parent ? `see \`${where} --help\` for its arguments and options` : 'see `praxis --help` for the commands, and `praxis <command> --help` for the options of one'
    return super.error(`error: ${where}: ${text}\n${hint}`, { code: options?.code ?? 'praxis.usage', exitCode: USAGE })
  }
}

function version(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.version) return pkg.version
    } catch {
      // not there: the other layout (source or dist/)
    }
  }
  return 'unknown'
}

/** The exit code of the action that ran. */
let exitCode = 0
const run = <A extends unknown[]>(action: (...args: A) => Promise<number>) => async (...args: A): Promise<void> => { exitCode = await action(...args) }

const serverOptions = (command: Command): Command => command
  .option('--server <url>', 'the Praxis API (default: see "Server" below)')
  .option('--api-key <key>', "one of the tenant's API keys (default: PRAXIS_API_KEY, else the key praxis dev wrote)")
const timeoutOption = (what: string): Option => new Option('--timeout-ms <ms>', `how long --wait waits for ${what}`).argParser(positive).default(600_000)
const jsonOption = (what: string, progress = true): Option => new Option('--json', `print one JSON document on stdout: ${what}${progress ? '; progress goes to stderr' : ''}`)
const examples = (...lines: string[]): string => `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`

function build(): Command {
  const praxis = new PraxisCommand('praxis')
  praxis
    .description('Praxis: rule-driven, always-on workflows over serverless functions, on PostgreSQL.')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print this help')
    .helpCommand('help [command]', 'print the help of a command')
    .exitOverride()
    .showSuggestionAfterError(true)
    .addHelpText('after', () => `${serverHelp()}

Environment: PRAXIS_URL, PRAXIS_API_KEY, HOST and PORT (where praxis dev's API listens), PRAXIS_DATA_DIR
(.praxis: praxis dev's files), DATABASE_URL (else the embedded PostgreSQL, PRAXIS_PG_PORT), LOG_LEVEL;
every variable: docs/cli.md, "Environment variables". Options go after the command: praxis start --help. Reference: docs/cli.md`)

  praxis.command('dev')
    .summary('run everything locally: PostgreSQL, API, workers, deploys, a watch on the services')
    .description('Embedded PostgreSQL (unless DATABASE_URL is set), migrations, a local tenant "dev" and its API key, the services deployed, '
      + 'the API listening on HOST:PORT, and min..max warm worker processes per function pool of the services. '
      + 'It watches the services: a change is generated, checked, built and redeployed (with new workers when their code changed). '
      + `It records its API's address in PRAXIS_DATA_DIR/${DEV_SERVER_FILE}, where the other commands find it. Ctrl-C stops it.`)
    .argument('[service-dir...]', "service folders (default: the project's: package.json \"praxis\": { \"services\": [...] }, else the current folder if it is a service, else the service folders one or two levels down)")
    .option('--no-watch', 'deploy once, then serve; no redeploy on a change')
    .option('--no-demo', 'skip the demo run (in the Praxis repository: an instance of examples/video-encoding)')
    .addOption(new Option('--workers <n>', 'warm workers kept per function pool (as --min)').argParser(whole).default(1))
    .addOption(new Option('--min <n>', 'warm workers kept per function pool (default: --workers)').argParser(whole))
    .addOption(new Option('--max <n>', 'workers at most per function pool (default: max(min, 2))').argParser(whole))
    .addOption(new Option('--idle-ms <ms>', 'a pool idle this long loses a worker, down to min').argParser(whole))
    .addHelpText('after', examples('praxis dev', 'praxis dev examples/video-encoding --min 2 --max 4', 'praxis dev --no-demo --no-watch'))
    .action(run(async (services: string[], o: { watch: boolean; demo: boolean; workers: number; min?: number; max?: number; idleMs?: number }) => {
      await prepare(true)
      const [config, { runDev }] = await Promise.all([loadConfig(), import('./dev.js')])
      return runDev(config, { services, watch: o.watch, demo: o.demo, workers: o.workers, min: o.min, max: o.max, idleMs: o.idleMs })
    }))

  praxis.command('worker')
    .summary("a worker process for one tenant's function pools of the services")
    .description("One worker process taking one tenant's jobs of the services' functions (and its rule evaluations). "
      + 'The database: DATABASE_URL, else the embedded PostgreSQL of a running praxis dev (PRAXIS_PG_PORT). Ctrl-C lets running functions finish; a second leaves at once.')
    .argument('<service-dir...>', 'service folders whose functions it runs')
    .option('--tenant <id>', 'the tenant it serves (default: PRAXIS_TENANT)')
    .option('--api-key <key>', "or one of the tenant's API keys (default: PRAXIS_API_KEY)")
    .option('--pool <service:pool>', 'serve only this pool (repeatable)', collect)
    .addHelpText('after', examples('praxis worker examples/video-encoding --tenant acme', 'praxis worker examples/video-encoding --tenant acme --pool video-encoding:encoders'))
    .action(run(async (dirs: string[], o: { tenant?: string; apiKey?: string; pool?: string[] }) => {
      await prepare(true)
      const [config, { runWorker }] = await Promise.all([loadConfig(), import('./worker.js')])
      return runWorker(config, dirs, { tenant: o.tenant, apiKey: o.apiKey }, { pools: o.pool })
    }))

  praxis.command('pools')
    .summary('keep min..max warm workers per function pool, scaled on the queues')
    .description("A supervisor of one tenant's worker processes: min..max per function pool of the services, scaled up on queue depth and age, "
      + 'down when idle, restarted when they die. The database as for praxis worker.')
    .argument('<service-dir...>', 'service folders whose pools it keeps')
    .option('--tenant <id>', 'the tenant they serve (default: PRAXIS_TENANT)')
    .option('--api-key <key>', "or one of the tenant's API keys (default: PRAXIS_API_KEY)")
    .addOption(new Option('--min <n>', 'workers kept per pool (default 1)').argParser(whole))
    .addOption(new Option('--max <n>', 'workers at most per pool (default 4)').argParser(whole))
    .addOption(new Option('--idle-ms <ms>', 'a pool idle this long loses a worker, down to min').argParser(whole))
    .addHelpText('after', examples('praxis pools examples/video-encoding --tenant acme --min 1 --max 8'))
    .action(run(async (dirs: string[], o: { tenant?: string; apiKey?: string; min?: number; max?: number; idleMs?: number }) => {
      await prepare(true)
      const [config, { runPools }] = await Promise.all([loadConfig(), import('./pools.js')])
      return runPools(config, dirs, { tenant: o.tenant, apiKey: o.apiKey, min: o.min, max: o.max, idleMs: o.idleMs }, (line) => write(process.stdout, line))
    }))

  serverOptions(praxis.command('deploy')
    .summary("build and deploy a service's rules bundle")
    .description("Checks the service's generated code is current (praxis codegen), bundles its workflows and deploys them with the manifest. "
      + 'Running work reaches the added and changed rules in the background.')
    .argument('<service-dir>', 'the service folder')
    .option('--dry-run', 'show the rules added, changed and removed and the instances each would fire on now; change nothing')
    .option('--wait', 'draw the progress of the background run until it is done')
    .addOption(timeoutOption('the run'))
    .addOption(jsonOption('{ deployment, run } (a dry run: { preview })')))
    .addHelpText('after', () => examples('praxis deploy examples/video-encoding', 'praxis deploy examples/v2/video-encoding --dry-run', 'praxis deploy examples/v2/video-encoding --wait --json') + '\n' + serverHelp())
    .action(run(deploy))

  serverOptions(praxis.command('rollback')
    .summary("make an older version's rules active again, as a deploy")
    .description('Makes the rules of an older version active again (default: the version before the active one), as a new version; reached like a deploy.')
    .argument('<service>', 'the service name')
    .argument('[version]', 'the version to go back to (default: the one before the active one)')
    .option('--dry-run', 'show what would change, changing nothing')
    .option('--wait', 'draw the progress of the background run until it is done')
    .addOption(timeoutOption('the run'))
    .addOption(jsonOption('{ rollback, run } (a dry run: { preview })')))
    .addHelpText('after', () => examples('praxis rollback video-encoding', 'praxis rollback video-encoding 3 --dry-run') + '\n' + serverHelp())
    .action(run(rollback))

  praxis.command('codegen')
    .summary("write each service's generated/ folder (stubs, workflow refs, API client, manifest)")
    .description("Writes each service's generated/ folder: typed function stubs, workflow references, an API client and the manifest. "
      + '--from or --manifest layers another deployed service into one service folder.')
    .argument('[service-dir...]', 'service folders (default: the project\'s, as praxis dev finds them: package.json "praxis.services", else the current folder if it is a service, else the service folders one or two levels down)')
    .option('--check', 'write nothing; fail naming every stale file')
    .option('--from <url>', "layer a deployed service: the API's address (with --service)")
    .option('--service <name>', 'the deployed service to layer (with --from)')
    .option('--manifest <file>', 'layer a service from a manifest file')
    .option('--api-key <key>', 'the key for --from (default: PRAXIS_API_KEY, else the key praxis dev wrote)')
    .addOption(jsonOption('{ check, services: [per service: dir, service, functions, workflows, layers, files, stale, ms], stale }'))
    .addHelpText('after', examples('praxis codegen examples/video-encoding', 'praxis codegen --check examples/*', 'praxis codegen examples/publishing --from http://127.0.0.1:3000 --service video-encoding'))
    .action(run(generate))

  praxis.command('init')
    .summary('scaffold a service in your project: functions, a workflow, a test, generated code')
    .description('Writes a service folder (functions.ts, workflows.ts, a vitest test on praxis/testing, a tsconfig when none covers it, '
      + "generated/), a vitest config when the project has none, and the allowScripts entries npm needs into the project's package.json. "
      + 'Never overwrites a file without --force. The folder\'s name is the service\'s name.')
    .argument('[dir]', 'the service folder (default: the current folder, or --name)')
    .option('--name <name>', 'the service name, which is its folder\'s name: without [dir], the folder ./<name>')
    .option('--force', 'overwrite the service\'s files when they exist')
    .addOption(jsonOption('{ ok, service, dir, written, existing, updated, notes, next, error? }', false))
    .addHelpText('after', examples('praxis init orders', 'praxis init services/billing', 'praxis init --name orders --force'))
    .action(run(async (dir: string | undefined, o: { name?: string; force?: boolean; json?: boolean }) => {
      await prepare(false)
      const { runInit } = await import('./init.js')
      return runInit(dir ?? '.', o, (line) => write(process.stdout, line))
    }))

  praxis.command('check')
    .summary("the checks before a deploy: types, fact paths, generated code")
    .description('For each service folder, changing nothing: its files type-checked with the TypeScript compiler under its tsconfig.json (the '
      + "folder's own, else the nearest one above it with the service's files as roots, else strict defaults); every rule's match paths and "
      + 'static ctx.set / ctx.setPath paths checked against its facts schema; everything praxis codegen refuses; stale generated files. '
      + 'Diagnostics print as file:line:col: message [code]; exits 1 when there is an error.')
    .argument('[service-dir...]', 'service folders (default: the project\'s, as praxis dev finds them: package.json "praxis.services", else the current folder if it is a service, else the service folders one or two levels down)')
    .addOption(jsonOption('the services checked and their diagnostics', false))
    .addHelpText('after', examples('praxis check examples/video-encoding', 'praxis check . --json'))
    .action(run(async (dirs: string[], o: { json?: boolean }) => {
      await prepare(true)
      const { runCheck } = await import('./check.js')
      return runCheck(await serviceDirs(dirs), { json: o.json }, (line) => write(process.stdout, line))
    }))

  serverOptions(praxis.command('start')
    .summary('start a workflow instance (--wait: follow it to its end)')
    .description('Starts an instance of a deployed workflow (name it service.workflow when two services have one of that name). '
      + "--wait follows its timeline, each event stamped with its time since the instance's creation, and exits 1 unless it completed.")
    .argument('<workflow>', 'the workflow name, or service.workflow')
    .addOption(new Option('--input <json>', 'the input, as JSON (default {})').argParser(json))
    .option('--wait', 'follow the instance until it ends; exit 1 unless it completed')
    .option('--idempotency-key <key>', 'a start repeated with the same key answers with the first instance instead of starting another')
    .addOption(timeoutOption('the instance'))
    .addOption(jsonOption('the start answer { id, status, revision, created }, or with --wait the final instance')))
    .addHelpText('after', () => examples(`praxis start encodeVideo --input '{"source":"s3://in/trailer.mov","recipe":"h264-1080p"}' --wait`, "praxis start counter --input '{}' --wait --json | jq .status") + '\n' + serverHelp())
    .action(run(start))

  serverOptions(praxis.command('inspect')
    .summary("an instance's facts, result and full timeline")
    .argument('<instance-id>', 'the instance id (praxis start prints it)')
    .addOption(jsonOption('the instance with its whole timeline, { ...instance, timeline: [...] }', false)))
    .addHelpText('after', () => examples('praxis inspect 0b9e…', 'praxis inspect 0b9e… --json | jq ".timeline | length"') + '\n' + serverHelp())
    .action(run(inspect))

  const databaseNote = '\nTenants and keys are administered on the database directly: DATABASE_URL, else the embedded PostgreSQL of a running praxis dev (PRAXIS_PG_PORT).'
  const tenants = praxis.command('tenants').summary('create and list tenants; their retention').addHelpText('after', databaseNote)
  tenants.command('create')
    .description('Adds a tenant. Its id is a slug of the name (Acme Corp: acme-corp) unless --id gives one.')
    .argument('<name...>', 'the tenant name')
    .option('--id <id>', 'the tenant id: a letter, then up to 39 of a-z, 0-9, -')
    .addOption(jsonOption('the tenant { id, name, createdAt, activeKeys }', false))
    .addHelpText('after', examples('praxis tenants create "Acme Corp" --id acme') + databaseNote)
    .action(run(async (name: string[], o: AdminOptions) => (o.json
      ? adminJson('praxis tenants create', (store, pool) => store.createTenant(pool, { name: name.join(' '), ...(o.id !== undefined ? { id: o.id } : {}) }))
      : admin('tenants', ['create', ...name], o))))
  tenants.command('list')
    .description('The tenants: ids, names, active keys, creation times.')
    .addOption(jsonOption('{ tenants: [{ id, name, createdAt, activeKeys }] }', false))
    .addHelpText('after', databaseNote)
    .action(run(async (o: AdminOptions) => (o.json ? adminJson('praxis tenants list', async (store, pool) => ({ tenants: await store.listTenants(pool) })) : admin('tenants', ['list'], o))))
  tenants.command('retention')
    .description("Shows, or sets, how long the tenant's finished data is kept, in days: a number (fractions allowed), off (for ever) "
      + "or default (the platform's PRAXIS_RETAIN_*). --purge purges now.")
    .argument('<tenant>', 'the tenant id')
    .option('--finished-days <days>', 'finished instances, with their events, timeline and invocations')
    .option('--events-days <days>', 'consumed events')
    .option('--running-timeline-days <days>', 'timeline entries of running instances')
    .option('--purge', "purge the tenant's expired data now")
    .addHelpText('after', examples('praxis tenants retention acme', 'praxis tenants retention acme --finished-days 90 --events-days off --purge') + databaseNote)
    .action(run(async (tenant: string, o: AdminOptions) => admin('tenants', ['retention', tenant], o)))

  const keys = praxis.command('keys').summary("make, list and revoke a tenant's API keys").addHelpText('after', databaseNote)
  keys.command('create')
    .description('Makes an API key for the tenant. It is printed once: only its hash is stored.')
    .requiredOption('--tenant <id>', 'the tenant')
    .option('--label <label>', 'a label to tell keys apart')
    .addOption(jsonOption('the key { id, tenantId, label, createdAt, revokedAt, key }', false))
    .addHelpText('after', examples('praxis keys create --tenant acme --label ci') + databaseNote)
    .action(run(async (o: AdminOptions) => (o.json
      ? adminJson('praxis keys create', (store, pool) => store.createApiKey(pool, o.tenant!, o.label !== undefined ? { label: o.label } : {}))
      : admin('keys', ['create'], o))))
  keys.command('list')
    .description("The tenant's keys: ids, labels, created and revoked times; never secrets or hashes.")
    .requiredOption('--tenant <id>', 'the tenant')
    .addOption(jsonOption('{ keys: [{ id, tenantId, label, createdAt, revokedAt }] }', false))
    .addHelpText('after', databaseNote)
    .action(run(async (o: AdminOptions) => (o.json ? adminJson('praxis keys list', async (store, pool) => ({ keys: await store.listApiKeys(pool, o.tenant!) })) : admin('keys', ['list'], o))))
  keys.command('revoke')
    .description('Refuses the key from the next request on (401). Revoking twice keeps the first time.')
    .argument('<key-id>', 'the key id (praxis keys list)')
    .addOption(jsonOption('the key { id, tenantId, label, createdAt, revokedAt, alreadyRevoked }', false))
    .addHelpText('after', databaseNote)
    .action(run(async (id: string, o: AdminOptions) => (o.json ? adminJson('praxis keys revoke', (store, pool) => store.revokeApiKey(pool, id)) : admin('keys', ['revoke', id], o))))

  return praxis
}

// Exit explicitly once output is flushed: the tsx loader's handles (and a worker's pools) would
// otherwise keep the exit code from reaching the shell.
const exit = (code: number): void => void process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))

function report(error: unknown): void {
  // With --json, scripts read stdout: the error is a JSON document there too (the text stays on stderr).
  if (process.argv.includes('--json')) {
    const e = error as { name?: string; code?: unknown; status?: unknown; message?: string; body?: ApiError['body'] }
    const api = e?.name === 'ApiError'
    write(process.stdout, JSON.stringify({ error: {
      code: api ? e.body?.error?.code ?? null : typeof e?.code === 'string' ? e.code : null,
      message: e?.message ?? String(error),
      ...(api ? { status: e.status, details: e.body?.error?.details ?? null } : {}),
    } }))
  }
  // By name: from the sources, a module the loader imported has its own copy of the class.
  if (error instanceof ApiError || (error as Error)?.name === 'ApiError') {
    const e = error as ApiError
    const details = e.body?.error?.details
    write(process.stderr, `error ${e.status} ${e.body?.error?.code ?? ''}: ${e.message}${details ? `\n${JSON.stringify(details, null, 2)}` : ''}`)
  } else write(process.stderr, `error: ${(error as Error)?.message ?? String(error)}`)
}

build().parseAsync(process.argv).then(() => exit(exitCode), (error: unknown) => {
  if (error instanceof CommanderError) return exit(error.code === 'commander.help' && error.exitCode !== 0 ? USAGE : error.exitCode)
  report(error)
  exit(FAILED)
})
