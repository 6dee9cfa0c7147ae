/**
 * The watching dev loop (issue 11): `praxis dev <dir>` runs as a child process on a copy of
 * test/fixtures/dev-loop and watches it. "Ready" means ready: a call runs right after "[5/5]"
 * and right after a restart's "ready". A rule changed on save is redeployed, and the instance
 * already running fires it before the loop says ready. A change to a file only the functions
 * import starts new workers, and the next call runs the new handler. A type error (in
 * functions.ts), a module that throws when a worker loads it, and a fact path the facts do not
 * have are each printed with what failed (file:line where the step knows it), and the previous
 * rules and workers keep serving; fixing the file runs it again. Run in a project with no folder
 * named, it picks up a service folder made while it runs, with its workers (a new service no
 * longer waits for a `praxis worker` nobody started). On main, `praxis dev` deployed once and
 * never watched.
 *
 * Also here: the default services of `praxis dev` (findServices), and the supervisor's
 * `restartService` on its own.
 */
import { spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { findServices } from '../platform/cli/services.js'
import { Supervisor, type PoolSpec, type SupervisorEvent } from '../platform/pools/index.js'
import { createTestDatabase, type TestDatabase } from './support/database.js'
import { silent, startTestPlatform, TENANT } from './support/platform.js'

const FIXTURE = path.resolve('test/fixtures/dev-loop')
const SERVICE = 'dev-loop'
/** Processes start slowly on a loaded machine (tsx, isolated-vm, a type-check per change). */
const E2E_MS = 300_000
const temps: string[] = []

afterAll(async () => {
  for (const dir of temps) await rm(dir, { recursive: true, force: true })
})

/** A copy of the fixture under test/ (its `../../../sdk` imports still resolve), named as the service. */
async function copy(): Promise<{ tmp: string; dir: string }> {
  const tmp = await mkdtemp(path.resolve('test', '.tmp-dev-loop-'))
  temps.push(tmp)
  const dir = path.join(tmp, SERVICE)
  await cp(FIXTURE, dir, { recursive: true })
  return { tmp, dir }
}

async function edit(file: string, from: string, to: string): Promise<void> {
  const text = await readFile(file, 'utf8')
  expect(text, `${file} holds ${from}`).toContain(from)
  await writeFile(file, text.replace(from, to))
}

/** `praxis dev` as a child process, its stdout lines read as they come. */
function startDev(args: string[], options: { cwd?: string; env: Record<string, string> }) {
  const child = spawn(process.execPath, ['--no-node-snapshot', path.resolve('bin/praxis.js'), 'dev', ...args, '--no-demo'], {
    cwd: options.cwd ?? process.cwd(), env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const lines: string[] = []
  const errors: string[] = []
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l)
    if (process.env.TEST_DEV_LOG) process.stderr.write(`dev> ${l}\n`)
  })
  createInterface({ input: child.stderr! }).on('line', (l) => {
    errors.push(l)
    if (process.env.TEST_DEV_LOG) process.stderr.write(`dev! ${l}\n`)
  })
  let seen = 0
  return {
    child, exited, lines, errors,
    /** Waits for a line matching `pattern` after the last one found; returns it. */
    async line(pattern: RegExp, timeoutMs = 90_000): Promise<string> {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const i = lines.findIndex((l, n) => n >= seen && pattern.test(l))
        if (i >= 0) {
          seen = i + 1
          return lines[i]!
        }
        if (child.exitCode !== null) throw new Error(`praxis dev exited (${child.exitCode}) before printing ${pattern}:\n${lines.join('\n')}\n${errors.join('\n')}`)
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; praxis dev printed:\n${lines.join('\n')}\nstderr:\n${errors.slice(-20).join('\n')}`)
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    },
    /** The lines from the last one matching `start` up to the last one found. */
    cycle(start: RegExp): string[] {
      let from = seen - 1
      while (from > 0 && !start.test(lines[from]!)) from--
      return lines.slice(from, seen)
    },
    /** The API's address ("[4/5]") and key, and calls to it. */
    async api(dataDir: string) {
      const url = /API listening on (\S+)/.exec(await this.line(/^\[4\/5\]/))![1]!
      const key = (await readFile(path.join(dataDir, 'dev-api-key'), 'utf8')).trim()
      const call = async (method: 'GET' | 'POST', route: string, body?: unknown) => {
        const response = await fetch(new URL(route, url), { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) })
        return { status: response.status, body: await response.json() as any }
      }
      return {
        call,
        async start(name: string): Promise<string> {
          const started = await call('POST', '/v1/workflows/greeting/instances', { input: { name } })
          expect(started.status).toBe(201)
          return started.body.id as string
        },
        /** Polls an instance until `check` holds, for at most `ms`. */
        async until(id: string, check: (instance: any) => boolean, ms: number): Promise<any> {
          const deadline = Date.now() + ms
          for (;;) {
            const instance = (await call('GET', `/v1/instances/${id}`)).body
            if (check(instance)) return instance
            if (Date.now() > deadline) throw new Error(`instance ${id} is not there after ${ms} ms: ${JSON.stringify(instance)}`)
            await new Promise((resolve) => setTimeout(resolve, 25))
          }
        },
      }
    },
  }
}

/**
 * For a describe block: a database of its own, and the praxis dev a test starts there (killed, if
 * it still runs, when the block ends).
 */
function devBlock(): { readonly db: TestDatabase; start: (...args: Parameters<typeof startDev>) => ReturnType<typeof startDev> } {
  let db: TestDatabase | undefined
  let dev: ReturnType<typeof startDev> | undefined
  beforeAll(async () => { db = await createTestDatabase() })
  afterAll(async () => {
    if (dev && dev.child.exitCode === null) dev.child.kill('SIGKILL')
    await db?.drop()
  })
  return { get db() { return db! }, start: (...args) => (dev = startDev(...args)) }
}

describe('praxis dev, watching a service', () => {
  const block = devBlock()

  it('redeploys on save, restarts the workers whose code changed, says each failure with its place and keeps the previous version serving', async () => {
    const { tmp, dir } = await copy()
    const dataDir = path.join(tmp, 'data')
    const dev = block.start([path.relative('.', dir)], { env: { DATABASE_URL: block.db.url, PRAXIS_DATA_DIR: dataDir } })
    const { line, cycle, errors } = dev
    await line(/^\[3\/5\] deployed dev-loop v1: greeting \(2 rules\)/)
    const { call, start, until } = await dev.api(dataDir)
    await line(/^\[5\/5\] workers ready: 1 process\(es\) for tenant "dev", 1\.\.2 per pool: dev-loop:default/)
    await line(/^watching dev-loop: on a save/)

    // Ready means ready: the call runs at once (on main's first version the workers took ~10 s more).
    let t = Date.now()
    const a = await start('A')
    await until(a, (i) => i.facts.text === 'hello A', 5000)
    const firstCall = Date.now() - t
    expect((await call('GET', `/v1/instances/${a}`)).body).toMatchObject({ status: 'running', bundleVersion: 1 })
    // The start-up's type-check ran after it, in the background.
    await line(/^\d\d:\d\d:\d\d types {4}ok: 1 service type-checked \(/)

    // 1. A rule changed: redeployed, and the running instance fires it before "ready".
    await edit(path.join(dir, 'workflows.ts'), 'f.approved.eq(true)', 'f.approved.eq(false)')
    await line(/^\d\d:\d\d:\d\d dev-loop: workflows\.ts changed$/)
    await line(/^✓ dev-loop ready: v2 \(/)
    const one = cycle(/dev-loop: workflows\.ts changed$/)
    expect(one).toEqual([
      expect.stringMatching(/dev-loop: workflows\.ts changed$/),
      expect.stringMatching(/^ {2}codegen +\d+ files? of generated\/ written \(/),
      expect.stringMatching(/^ {2}types +ok \(/),
      expect.stringMatching(/^ {2}deploy +v2: greeting: changed finish \(/),
      expect.stringMatching(/^ {2}old work +1\/1 walked, 1 re-evaluated, 1 fired a new or changed rule, 0 failed \(/),
      expect.stringMatching(/^✓ dev-loop ready: v2 \(/),
    ])
    expect((await call('GET', `/v1/instances/${a}`)).body).toMatchObject({ status: 'completed', result: { text: 'hello A' } })

    // 2. A file only functions.ts imports: new workers (the old one stops once they are ready),
    // the rules are unchanged, and the next call runs the new handler right after "ready".
    const [before] = (await block.db.pool.query<{ id: string }>("select id from praxis.workers where tenant_id = 'dev'")).rows
    await edit(path.join(dir, 'words.ts'), "'hello'", "'hi'")
    await line(/dev-loop: words\.ts changed$/)
    await line(/^✓ dev-loop ready: v2 \(/)
    expect(cycle(/dev-loop: words\.ts changed$/)).toEqual([
      expect.stringMatching(/dev-loop: words\.ts changed$/),
      expect.stringMatching(/^ {2}codegen +up to date \(/),
      expect.stringMatching(/^ {2}types +ok \(/),
      '  workers  starting dev-loop:default with the new code…',
      expect.stringMatching(/^ {2}workers +dev-loop:default on the new code: 1 ready, 1 old stopped \(/),
      expect.stringMatching(/^ {2}deploy +unchanged, v2 \(/),
      expect.stringMatching(/^✓ dev-loop ready: v2 \(/),
    ])
    const after = (await block.db.pool.query<{ id: string }>("select id from praxis.workers where tenant_id = 'dev'")).rows
    expect(after).toHaveLength(1)
    expect(after[0]!.id).not.toBe(before!.id)
    t = Date.now()
    const b = await start('B')
    expect(await until(b, (i) => i.status !== 'running', 5000)).toMatchObject({ status: 'completed', result: { text: 'hi B' } })
    const restartedCall = Date.now() - t

    // 3. A type error in functions.ts: said with its file and line; the rules and workers of v2 serve on.
    await edit(path.join(dir, 'functions.ts'), 'text: `${SALUTATION} ${name}`', 'text: name.length')
    await line(/dev-loop: functions\.ts changed$/)
    await line(/^✗ dev-loop: types failed \(/)
    await line(/^ {2}fix it and save: v2 keeps running, and its workers; watching for changes$/)
    const three = cycle(/dev-loop: functions\.ts changed$/).join('\n')
    expect(three).toMatch(/dev-loop\/functions\.ts[:(]13\b/)
    expect(three).toMatch(/not assignable to type 'string'/)
    expect(three).not.toMatch(/\n {2}(workers|deploy) /)
    const c = await start('C')
    expect(await until(c, (i) => i.status !== 'running', 10_000)).toMatchObject({ status: 'completed', bundleVersion: 2, result: { text: 'hi C' } })

    // 4. Fixed, but the module now throws when a worker loads it: the new worker dies before it
    // is ready, and the old one serves on (no deploy either).
    await edit(path.join(dir, 'functions.ts'), 'text: name.length', 'text: `${SALUTATION} ${name}`')
    await edit(path.join(dir, 'words.ts'), "export const SALUTATION = 'hi'", "export const SALUTATION: string = 'hey'\nif (process.env.PRAXIS_SUPERVISED) throw new Error('words.ts breaks under a worker')")
    await line(/dev-loop: functions\.ts, words\.ts changed$|dev-loop: words\.ts changed$/)
    await line(/^✗ dev-loop: workers failed \(/)
    await line(/^ {2}fix it and save: v2 keeps running, and its workers; watching for changes$/)
    const four = cycle(/words\.ts changed$/).join('\n')
    expect(four).toMatch(/\n {4}a new worker of dev-loop:default \(pid \d+\) exited with exit code 1 before it was ready: its error is above\n {4}the previous workers keep serving\n/)
    expect(four).not.toMatch(/\n {2}deploy /)
    expect(errors.join('\n')).toContain('words.ts breaks under a worker')
    const d = await start('D')
    expect(await until(d, (i) => i.status !== 'running', 10_000)).toMatchObject({ status: 'completed', result: { text: 'hi D' } })

    // 5. A fact path the facts do not have: said with its file and line; v2 serves on.
    await edit(path.join(dir, 'words.ts'), "export const SALUTATION: string = 'hey'\nif (process.env.PRAXIS_SUPERVISED) throw new Error('words.ts breaks under a worker')", "export const SALUTATION = 'hi'")
    await edit(path.join(dir, 'workflows.ts'), 'f.approved.eq(false)', 'f.aproved.eq(false)')
    await line(/dev-loop: (workflows\.ts, words\.ts|words\.ts, workflows\.ts) changed$/)
    await line(/^✗ dev-loop: (codegen|types) failed \(/)
    await line(/^ {2}fix it and save: v2 keeps running, and its workers; watching for changes$/)
    expect(cycle(/changed$/).join('\n')).toMatch(/dev-loop\/workflows\.ts[:(]26\b[^\n]*aproved/)

    // 6. Fixed: the loop goes on, and the sources are v2's again (the workers' code is theirs too).
    await edit(path.join(dir, 'workflows.ts'), 'f.aproved.eq(false)', 'f.approved.eq(false)')
    await line(/dev-loop: workflows\.ts changed$/)
    await line(/^✓ dev-loop ready: v2 \(/)
    expect(cycle(/dev-loop: workflows\.ts changed$/).join('\n')).not.toMatch(/\n {2}workers /)
    const e = await start('E')
    expect(await until(e, (i) => i.status !== 'running', 10_000)).toMatchObject({ status: 'completed', result: { text: 'hi E' } })

    process.stderr.write(`dev loop: first call done ${firstCall} ms after "[5/5]"; after a restart's "ready", an instance completed in ${restartedCall} ms\n`)
    dev.child.kill('SIGTERM')
    expect(await dev.exited).toBe(0)
    expect((await block.db.pool.query("select count(*)::int as n from praxis.workers where tenant_id = 'dev'")).rows[0].n).toBe(0)
  }, E2E_MS)
})

describe('praxis dev in a project, with no folder named', () => {
  const block = devBlock()

  it('picks up a service folder made while it runs: deployed, with workers, and a call runs right after "ready"', async () => {
    // The project: an empty folder (the service will sit one level down, as test/.tmp-…/dev-loop,
    // so its ../../../sdk imports resolve); dev's files in a dot folder, which is not looked into.
    const tmp = await mkdtemp(path.resolve('test', '.tmp-dev-loop-'))
    temps.push(tmp)
    const dataDir = path.join(tmp, '.praxis')
    const dev = block.start([], { cwd: tmp, env: { DATABASE_URL: block.db.url, PRAXIS_DATA_DIR: dataDir } })
    await dev.line(/^\[3\/5\] 0 services \(folders with a workflows\.ts or functions\.ts, one or two levels under \.\): none$/)
    await dev.line(/^ {6}a service is a folder with a workflows\.ts .* create one and praxis dev picks it up/)
    const { start, until } = await dev.api(dataDir)
    await dev.line(/^\[5\/5\] workers ready: 0 process\(es\) for tenant "dev", 1\.\.2 per pool: none/)
    await dev.line(/^watching for services \(and new service folders\)/)

    // Made elsewhere and moved in whole, as a checkout or a copy would be.
    await cp(FIXTURE, path.join(tmp, '.staging', SERVICE), { recursive: true })
    await rename(path.join(tmp, '.staging', SERVICE), path.join(tmp, SERVICE))
    await dev.line(/^\d\d:\d\d:\d\d dev-loop: a new service, in dev-loop$/)
    await dev.line(/^✓ dev-loop ready: v1 \(/)
    expect(dev.cycle(/dev-loop: a new service/)).toEqual([
      expect.stringMatching(/dev-loop: a new service, in dev-loop$/),
      expect.stringMatching(/^ {2}codegen +(up to date|\d+ files? of generated\/ written) \(/),
      expect.stringMatching(/^ {2}types +ok \(/),
      '  workers  starting dev-loop:default…',
      expect.stringMatching(/^ {2}workers +dev-loop:default: 1 ready \(/),
      expect.stringMatching(/^ {2}deploy +v1: greeting: added greet, finish \(/),
      expect.stringMatching(/^✓ dev-loop ready: v1 \(/),
    ])
    const a = await start('A')
    expect(await until(a, (i) => i.facts.text === 'hello A', 5000)).toMatchObject({ status: 'running', bundleVersion: 1 })
    dev.child.kill('SIGTERM')
    expect(await dev.exited).toBe(0)
  }, E2E_MS)
})

describe('the services of the current project (praxis dev with no folder)', () => {
  const service = async (dir: string, file = 'workflows.ts'): Promise<void> => {
    await mkdir(dir, { recursive: true })
    await writeFile(path.join(dir, file), '// a service\n')
  }

  it('finds folders with a workflows.ts or functions.ts one or two levels down, skipping node_modules, generated and dot folders', async () => {
    const { tmp } = await copy()
    const root = path.join(tmp, 'project')
    await service(path.join(root, 'billing'))
    await service(path.join(root, 'services', 'mail'), 'functions.ts')
    await service(path.join(root, 'services', 'mail', 'nested'))         // below a service: not one
    await service(path.join(root, 'a', 'b', 'too-deep'))
    await service(path.join(root, 'node_modules', 'pkg'))
    await service(path.join(root, '.cache', 'svc'))
    await service(path.join(root, 'billing-x', 'generated'))
    expect(await findServices(root)).toEqual({
      dirs: [path.join(root, 'billing'), path.join(root, 'services', 'mail')],
      how: `folders with a workflows.ts or functions.ts, one or two levels under ${path.relative('.', root)}`,
      discover: true,
    })
    // A service folder: itself.
    expect((await findServices(path.join(root, 'billing'))).dirs).toEqual([path.join(root, 'billing')])
    // Two of one name are refused, saying what to do.
    await service(path.join(root, 'v2', 'billing'))
    await expect(findServices(root)).rejects.toThrow(/both deploy as service billing: name the folders to run .*or list them in package\.json "praxis": \{ "services"/)
    // package.json "praxis.services" wins, and is checked.
    await writeFile(path.join(root, 'package.json'), JSON.stringify({ name: 'p', praxis: { services: ['v2/billing', 'services/mail'] } }))
    expect(await findServices(root)).toMatchObject({ dirs: [path.join(root, 'v2', 'billing'), path.join(root, 'services', 'mail')], discover: false })
    await writeFile(path.join(root, 'package.json'), JSON.stringify({ praxis: { services: ['nowhere'] } }))
    await expect(findServices(root)).rejects.toThrow(/nowhere .* holds no workflows\.ts or functions\.ts: there is no such folder/)
  })

  it("are this repository's examples when run from its root, as npm start does", async () => {
    expect((await findServices(process.cwd())).dirs.map((d) => path.relative('.', d))).toEqual(['examples/publishing', 'examples/thumbnails', 'examples/video-encoding'])
  })
})

describe("the supervisor's restartService", () => {
  it('starts the new workers before stopping the old, and keeps the old ones when a new one cannot start', async () => {
    const p = await startTestPlatform()
    onTestFinished(() => p.close())
    const { dir } = await copy()
    const spec = (pools: string[]): PoolSpec[] => pools.map((pool) => ({ pool, dirs: [dir], functions: ['greet'] }))
    const events: SupervisorEvent[] = []
    const supervisor = new Supervisor({
      tenantId: TENANT, dirs: [dir], pools: spec(['dev-loop:default']), databaseUrl: p.db.url, db: p.db.pool, log: silent,
      min: 1, max: 1, sampleMs: 200, env: { LOG_LEVEL: 'silent' }, onEvent: (event) => events.push(event),
    })
    onTestFinished(() => supervisor.stop())
    await supervisor.start()
    await supervisor.ready()
    const [old] = supervisor.status()[0]!.pids

    // The workers' code breaks at load: the restart fails, the old worker still serves.
    await edit(path.join(dir, 'words.ts'), "export const SALUTATION = 'hello'", "export const SALUTATION: string = 'hey'\nthrow new Error('broken')")
    const failed = await supervisor.restartService(dir, spec(['dev-loop:default']))
    expect(failed).toMatchObject({ ok: false, pools: ['dev-loop:default'], started: 0, stopped: 0, error: expect.stringMatching(/^a new worker of dev-loop:default \(pid \d+\) exited with exit code 1 before it was ready$/) })
    expect(supervisor.status()).toEqual([expect.objectContaining({ pool: 'dev-loop:default', ready: 1, starting: 0, restarting: 0, pids: [old] })])
    expect(events.filter((e) => e.kind === 'spawned').map((e) => e.kind === 'spawned' && e.cause)).toEqual(['start', 'reload'])

    // Fixed: the new worker is ready before the old one is told to stop, and the old one has exited when it resolves.
    await writeFile(path.join(dir, 'words.ts'), "export const SALUTATION = 'hi'\n")
    events.length = 0
    const restarted = await supervisor.restartService(dir, spec(['dev-loop:default']))
    expect(restarted).toMatchObject({ ok: true, pools: ['dev-loop:default'], started: 1, stopped: 1 })
    const order = events.map((e) => `${e.kind}${'pid' in e && e.pid === old ? ' (old)' : ''}`)
    expect(order).toEqual(['spawned', 'ready', 'exited (old)'])
    const [now] = supervisor.status()
    expect(now).toMatchObject({ ready: 1, starting: 0, stopping: 0 })
    expect(now!.pids).not.toContain(old)
    const { rows } = await p.db.pool.query<{ pools: string[] }>('select pools from praxis.workers where tenant_id = $1', [TENANT])
    expect(rows).toEqual([{ pools: ['dev-loop:default'] }])

    // A pool the service no longer has loses its workers.
    const gone = await supervisor.restartService(dir, [])
    expect(gone).toMatchObject({ ok: true, pools: [], started: 0, stopped: 1 })
    expect(supervisor.status()).toEqual([])
  }, E2E_MS)
})
