/**
 * Chaos: 500 instances of test/fixtures/chaos (two sequential steps, a fan-out of three parts, a
 * join; planned first-attempt failures) are started through a real API server in a process of its
 * own (test/support/api-process.ts), served by three `praxis worker` processes (lease 2 s), while a
 * chaos loop SIGKILLs a worker or the API server and starts it again. All complete, and every
 * reaction ran exactly once: the instances' own counters, the invocations and the timeline agree,
 * and no job or event is left behind.
 *
 * The loop wakes every 1–3 s and kills a process that has been up for 3 s: the API server (while
 * starts run: with requests in flight, retried with their idempotency key) once a warm spare is
 * there to take over, or a worker while the others are up (sometimes while one is down; never the
 * last one up: on the loaded 2-core dev machine a worker takes 20–40 s to start). It goes on 8 s
 * past the last start, and while instances run until 5 workers died.
 *
 * The chaos is seeded (the seed is printed; CHAOS_SEED=<n> replays its choices, though not the
 * machine's timing). Each process's output goes to a log file in a temporary folder, printed too,
 * and kept when the test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, mkdtempSync, rmSync, writeFileSync, type WriteStream } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { isDeepStrictEqual } from 'node:util'
import { afterAll, beforeAll, expect, it, onTestFailed } from 'vitest'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { ensureTenant } from '../platform/store/index.js'
import { PARTS } from './fixtures/chaos/workflows.js'
import { createTestDatabase, type TestDatabase } from './support/database.js'

const FIXTURE = 'test/fixtures/chaos'
const TENANT = 'acme'
const INSTANCES = 500
const WORKERS = 3
/** Short, so a killed worker's jobs come back soon; long enough that a live worker on a loaded machine keeps its lease. */
const LEASE_MS = 2000
/** The chaos goes on (while instances run) until it has killed workers this often. */
const MIN_WORKER_KILLS = 5
/** A process is killed only once it has been up this long. */
const MIN_UP_MS = 3000
/** Starts in flight at once. */
const STARTERS = 8
/** The chaos goes on this long after the last start. */
const CHAOS_TAIL_MS = 8000
const TEST_TIMEOUT_MS = 300_000
/** All instances must have ended by then (from the test's start): leaves time to say why not. */
const COMPLETION_BUDGET_MS = 270_000
const REACTIONS = ['prepare', 'transform', ...Array.from({ length: PARTS }, (_, i) => `part-${i}`), 'combine']
const WORKER_READY = 'praxis worker ready:'
const API_READY = 'praxis api ready:'
const SPARE_LOADED = 'praxis api loaded'

const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : randomInt(2 ** 31)
/** The chaos's choices (what to kill, when); the starts' retry delays draw from their own. */
const random = mulberry32(seed)
const jitter = mulberry32(seed ^ 0x9e3779b9)
const logDir = mkdtempSync(path.join(tmpdir(), 'praxis-chaos-'))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const say = (line: string): void => void process.stderr.write(`[chaos seed ${seed}] ${line}\n`)

/** A small seeded PRNG (mulberry32): the chaos's choices replay from the seed. */
function mulberry32(s: number): () => number {
  let a = s >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

let shuttingDown = false
/** Processes that exited without being killed by the chaos (each is started again). */
const unexpectedExits: string[] = []
/** Restarts that never became ready. */
const restartFailures: string[] = []
/** Every kill: when (since the chaos began), what, which pid, and how long until it was up again. */
const killLog: string[] = []

/** A spawned process, its ready line (what follows the ready prefix), and (a spare) whether it has loaded. */
interface Spawned { child: ChildProcess; ready: Promise<string>; loaded: boolean }

/**
 * One child process the chaos kills and starts again: a worker or the API server. With `spare`,
 * each start takes a warm spare (modules loaded, waiting on stdin: test/support/api-process.ts)
 * and tells it to listen, and a new spare is spawned once it is up.
 */
class Proc {
  child: ChildProcess | null = null
  ready = false
  /** When it last became ready. */
  readySince = 0
  /** What follows the ready prefix on its ready line (the API's address). */
  address = ''
  starts = 0
  #spare: Spawned | null = null
  readonly #killed = new WeakSet<ChildProcess>()
  readonly #log: WriteStream

  constructor(readonly name: string, readonly kind: 'worker' | 'api', readonly args: string[], readonly env: NodeJS.ProcessEnv, readonly readyPrefix: string, readonly spare = false) {
    this.#log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' })
  }

  #spawn(): Spawned {
    // stdin is a pipe: a worker (PRAXIS_SUPERVISED) and the API stop when it closes, should the test die.
    const child = spawn(process.execPath, this.args, { env: { ...this.env, PRAXIS_SUPERVISED: '1', ...(this.spare ? { PRAXIS_API_SPARE: '1' } : {}) }, stdio: ['pipe', 'pipe', 'pipe'] })
    this.#log.write(`--- ${this.spare ? 'spare' : 'start'}, pid ${child.pid}, ${new Date().toISOString()}\n`)
    child.stdout!.pipe(this.#log, { end: false })
    child.stderr!.pipe(this.#log, { end: false })
    // Writing to a killed child's stdin fails with EPIPE: nothing to do about it.
    child.stdin!.on('error', () => undefined)
    const spawned: Spawned = { child, ready: Promise.resolve(''), loaded: false }
    spawned.ready = new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line === SPARE_LOADED) spawned.loaded = true
        if (line.startsWith(this.readyPrefix)) resolve(line.slice(this.readyPrefix.length).trim().split(' ')[0]!)
      })
      child.once('exit', (code, signal) => reject(new Error(`${this.name} (pid ${child.pid}) exited (${signal ?? code}) before it was ready`)))
    })
    spawned.ready.catch(() => undefined)
    child.once('exit', (code, signal) => {
      this.#log.write(`--- pid ${child.pid} exited (${signal ?? code}), ${new Date().toISOString()}\n`)
      const active = this.child === child
      if (active) {
        this.child = null
        this.ready = false
      }
      if (this.#spare?.child === child) this.#spare = null
      if (!this.#killed.has(child) && !shuttingDown) {
        unexpectedExits.push(`${this.name} pid ${child.pid} exited by itself (${signal ?? code}): see ${path.join(logDir, `${this.name}.log`)}`)
        if (active) void this.restart()
      }
    })
    return spawned
  }

  /** Starts it (from the spare, if any); resolves once it printed its ready line. */
  async start(): Promise<void> {
    const next = this.#spare ?? this.#spawn()
    this.#spare = null
    this.child = next.child
    this.ready = false
    this.starts++
    if (this.spare) next.child.stdin!.write('listen\n')
    let timer: NodeJS.Timeout | undefined
    const address = await Promise.race([
      next.ready,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${this.name} (pid ${next.child.pid}) was not ready within 60 s`)), 60_000) }),
    ]).finally(() => clearTimeout(timer))
    if (this.child !== next.child) return
    this.address = address
    this.ready = true
    this.readySince = Date.now()
    if (this.spare && !shuttingDown) this.#spare = this.#spawn()
  }

  /** Starts it again, up to three tries (a try killed by the chaos meanwhile ends the restart). */
  async restart(): Promise<void> {
    for (let attempt = 1; attempt <= 3 && !shuttingDown; attempt++) {
      try {
        return await this.start()
      } catch (error) {
        if (this.child !== null && this.#killed.has(this.child)) return
        if (attempt === 3) restartFailures.push(`${this.name}: ${(error as Error).message}`)
      }
    }
  }

  /**
   * Ready for at least `ms`, so it had time to take work and a kill lands among it; with a spare,
   * only once the spare has loaded, so the outage is short even on a loaded machine.
   */
  killable(ms: number): boolean {
    return this.ready && Date.now() - this.readySince >= ms && (!this.spare || this.#spare?.loaded === true)
  }

  /** SIGKILLs the running process (or `child`) and waits for its exit; returns its pid. */
  async kill(child = this.child): Promise<number | undefined> {
    if (!child) return undefined
    this.#killed.add(child)
    if (child === this.child) this.ready = false
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit').then(() => undefined)
    child.kill('SIGKILL')
    await exited
    return child.pid
  }

  async close(): Promise<void> {
    await Promise.all([this.kill(), this.kill(this.#spare?.child ?? null)])
    await new Promise<void>((resolve) => this.#log.end(resolve))
  }
}

let db: TestDatabase
let apiKey: string
let api: Proc
const workers: Proc[] = []

beforeAll(async () => {
  db = await createTestDatabase()
  ;({ apiKey } = await ensureTenant(db.pool, TENANT))
  const env = { ...process.env, DATABASE_URL: db.url, PRAXIS_LEASE_MS: String(LEASE_MS), LOG_LEVEL: 'warn', PRAXIS_RETENTION_SCHEDULE: 'off', PRAXIS_WORKER_CONCURRENCY: '8' }
  api = new Proc('api', 'api', ['--no-node-snapshot', '--import', 'tsx', 'test/support/api-process.ts'], { ...env, PORT: '0' }, API_READY, true)
  for (let i = 0; i < WORKERS; i++) {
    workers.push(new Proc(`worker-${i}`, 'worker', ['--no-node-snapshot', 'bin/praxis.js', 'worker', FIXTURE, '--tenant', TENANT], env, WORKER_READY))
  }
  await api.start()
  const { code } = await buildBundle(FIXTURE)
  const manifest = await readGeneratedManifest(FIXTURE)
  const deployed = await request('POST', '/v1/services/chaos/deployments', { code, manifest })
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(201)
  await Promise.all(workers.map((w) => w.start()))
  say(`logs in ${logDir}`)
})

/** Set when every assertion held: the process logs are then removed, else kept for the report. */
let passed = false

afterAll(async () => {
  shuttingDown = true
  await Promise.all([api, ...workers].filter(Boolean).map((p) => p.close()))
  await db?.drop()
  if (passed) rmSync(logDir, { recursive: true, force: true })
})

async function request(method: 'GET' | 'POST', url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${api.address}${url}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : null }
}

/** An answer a retry cannot change (a 4xx but for a starved server's timeouts): the test fails on it. */
class Refused extends Error {}

it('completes 500 instances, each reaction once, while workers and the API server are SIGKILLed every few seconds', async () => {
  onTestFailed(() => say(`FAILED: replay with CHAOS_SEED=${seed}; process logs in ${logDir}`))
  const t0 = Date.now()
  const since = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`
  say(`chaos begins: ${INSTANCES} instances, ${WORKERS} workers, lease ${LEASE_MS} ms`)

  // ---- The chaos: every 1–3 s, SIGKILL a process and start it again. --------------------------
  const kills = { worker: 0, api: 0 }
  /** Instance ids by input n. */
  const started = new Map<number, string>()
  let startsDone = false
  let chaosUntil = Infinity
  let allEnded = false
  const chaos = (async () => {
    // It ends CHAOS_TAIL_MS after the last start, and not before MIN_WORKER_KILLS while instances run.
    const over = (): boolean => shuttingDown || (Date.now() >= chaosUntil && (kills.worker >= MIN_WORKER_KILLS || allEnded))
    for (let tick = 0; !over(); tick++) {
      await sleep(1000 + random() * 2000)
      if (over()) break
      // While starts run, every third kill is the API server's (with starts in flight), and more
      // if the API kills fall behind the starts (one per quarter of them); the others a worker's.
      // Only a process up for a while is killed, so it took work meanwhile; a worker while the
      // others are up, or (one turn in three) while one other is down, never the last one up: on
      // a loaded machine a worker takes tens of seconds to start, and two down for long would
      // leave one to do the work of three.
      let target: Proc | undefined
      const apiTurn = !startsDone && (tick % 3 === 1 || kills.api < Math.floor((4 * started.size) / INSTANCES))
      const down = workers.filter((w) => !w.ready).length
      if (apiTurn && api.killable(MIN_UP_MS)) target = api
      else if (down === 0 || (down === 1 && WORKERS - down >= 2 && random() < 1 / 3)) {
        const up = workers.filter((w) => w.killable(MIN_UP_MS))
        target = up[Math.floor(random() * up.length)]
      }
      if (!target) continue
      const pid = await target.kill()
      kills[target.kind]++
      const entry = killLog.push(`${since()} SIGKILL ${target.name} pid ${pid} (${started.size} started)`) - 1
      const killedAt = Date.now()
      void target.restart().then(() => { killLog[entry] += `, up again in ${((Date.now() - killedAt) / 1000).toFixed(1)} s` })
    }
  })()

  // ---- The starts: through the API, retried with their idempotency key until answered. -------
  let retries = 0
  let replayed = 0
  /** Why start requests were retried, with how often. */
  const causes = new Map<string, number>()
  const cause = (why: string): void => void causes.set(why, (causes.get(why) ?? 0) + 1)
  let next = 0
  let refused = false
  const startOne = async (n: number): Promise<void> => {
    for (;;) {
      if (refused || shuttingDown) return
      if (Date.now() - t0 > COMPLETION_BUDGET_MS) throw new Error(`instance ${n} could not be started within ${COMPLETION_BUDGET_MS} ms (${started.size} started; ${retries} retries so far: ${[...causes].map(([k, v]) => `${v}× ${k}`).join(', ')})`)
      try {
        const answer = await request('POST', '/v1/workflows/chaos/instances', { input: { n }, idempotencyKey: `chaos-${n}` })
        if (answer.status === 201 || answer.status === 200) {
          // 200: an earlier try committed, and the server died before it answered.
          if (!answer.body.created) replayed++
          started.set(n, answer.body.id)
          return
        }
        const code = answer.body?.error?.code
        // A server just started on a starved machine may take longer than PRAXIS_BUNDLE_LOAD_MS
        // (5 s, wall clock) to load the bundle into a fresh isolate, or longer than
        // PRAXIS_RULE_TIMEOUT_MS to run init, and answers as if the bundle or the request were at
        // fault (400 / 422), though nothing was written. Retried, and counted in the summary.
        const starved = (code === 'PRX_BUNDLE_INVALID' && answer.body.error.details?.code === 'PRX_RULE_TIMEOUT') || code === 'PRX_RULE_TIMEOUT'
        if (answer.status < 500 && !starved) throw new Refused(`start of instance ${n} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
        cause(`${answer.status} ${code ?? ''}${starved ? ` (${answer.body.error.message})` : ''}`)
      } catch (error) {
        if (error instanceof Refused) {
          refused = true
          throw error
        }
        // The server was killed (connection refused or reset, a cut answer) or is starting again.
        const e = error as Error & { cause?: { code?: string; message?: string } }
        cause(`${e.name}: ${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ''}`)
      }
      retries++
      await sleep(100 + jitter() * 150)
    }
  }
  await Promise.all(Array.from({ length: STARTERS }, async () => {
    while (next < INSTANCES) await startOne(next++)
  }))
  startsDone = true
  chaosUntil = Date.now() + CHAOS_TAIL_MS
  const startsMs = Date.now() - t0
  say(`${started.size} started in ${since()} (${retries} retried requests: ${[...causes].map(([k, v]) => `${v}× ${k}`).join(', ') || 'none'}; ${replayed} answered by an earlier try); chaos goes on ${CHAOS_TAIL_MS} ms`)
  void chaos.then(() => say(`chaos over at ${since()}: ${kills.worker} worker kills, ${kills.api} API server kills`), () => undefined)

  // ---- Every instance ends. ------------------------------------------------------------------
  let counts: Record<string, number> = {}
  /** Polls that saw a job locked to a Praxis worker's own id: one dispatched eagerly, its chain running. */
  let eagerSeen = 0
  for (let polls = 1; ; polls++) {
    const { rows } = await db.pool.query<{ status: string; n: number }>('select status, count(*)::int as n from praxis.instances group by status')
    counts = Object.fromEntries(rows.map((r) => [r.status, r.n]))
    const { rows: [eager] } = await db.pool.query<{ n: number }>("select count(*)::int as n from graphile_worker._private_jobs where locked_by like 'praxis-worker-%'")
    if (eager!.n > 0) eagerSeen++
    if (!counts.running && !counts.paused) break
    if (Date.now() - t0 > COMPLETION_BUDGET_MS) break
    if (polls % 30 === 0) say(`${since()}: ${JSON.stringify(counts)}`)
    await sleep(500)
  }
  allEnded = true
  await chaos
  const endedMs = Date.now() - t0
  if (counts.running || counts.paused) {
    const report = await diagnose()
    const file = path.join(logDir, 'stuck.txt')
    writeFileSync(file, report)
    throw new Error(`not every instance ended within ${COMPLETION_BUDGET_MS} ms: ${JSON.stringify(counts)} (seed ${seed}; details in ${file}, process logs in ${logDir})\n${report.slice(0, 6000)}`)
  }
  // Every job done too (an evaluate job may come after the end, and finds nothing to do).
  const drainDeadline = Date.now() + 15_000
  while ((await db.pool.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs')).rows[0]!.n > 0 && Date.now() < drainDeadline) await sleep(250)

  // ---- The instances: all completed, with the right result, each reaction counted once. -----
  const { rows: instances } = await db.pool.query<{ id: string; idempotency_key: string; status: string; result: unknown; error: unknown }>(
    "select id, idempotency_key, status, result, error from praxis.instances where tenant_id = $1 and workflow = 'chaos'", [TENANT])
  expect(instances.length, `seed ${seed}: one instance per start, however often a start was retried`).toBe(INSTANCES)
  expect(new Set(instances.map((i) => i.id))).toEqual(new Set(started.values()))
  const once1 = Object.fromEntries(REACTIONS.map((r) => [r, 1]))
  const wrong = instances.filter((i) => {
    const n = Number(i.idempotency_key.slice('chaos-'.length))
    // prepare: n + 1; transform: doubled; part i: + i; combine: the sum of the parts.
    const sum = PARTS * 2 * (n + 1) + (PARTS * (PARTS - 1)) / 2
    return i.status !== 'completed' || !isDeepStrictEqual(i.result, { n, sum, reactions: once1 })
  })
  expect(wrong.slice(0, 10).map((i) => ({ id: i.id, key: i.idempotency_key, status: i.status, result: i.result, error: i.error })), `seed ${seed}: ${wrong.length} instances did not complete with every reaction once`).toEqual([])

  // ---- The invocations: 3 + PARTS per instance, each succeeded once, each reacted to once. ----
  const { rows: [inv] } = await db.pool.query<{ total: number; succeeded: number; instances: number; max_attempts: number }>(
    "select count(*)::int as total, count(*) filter (where status = 'succeeded')::int as succeeded, count(distinct instance_id)::int as instances, max(attempts)::int as max_attempts from praxis.invocations")
  expect(inv, `seed ${seed}`).toMatchObject({ total: INSTANCES * (3 + PARTS), succeeded: INSTANCES * (3 + PARTS), instances: INSTANCES })
  const { rows: uneven } = await db.pool.query(
    'select instance_id, count(*)::int as n from praxis.invocations group by 1 having count(*) <> $1 limit 10', [3 + PARTS])
  expect(uneven, `seed ${seed}: instances with other than ${3 + PARTS} invocations`).toEqual([])
  const { rows: twice } = await db.pool.query(
    "select data->>'invocationId' as invocation, count(*)::int as n from praxis.timeline where kind = 'invocation.succeeded' group by 1 having count(*) <> 1 limit 10")
  expect(twice, `seed ${seed}: invocation.succeeded entries per invocation`).toEqual([])
  const { rows: [unreacted] } = await db.pool.query<{ n: number }>(
    "select count(*)::int as n from praxis.invocations i where not exists (select 1 from praxis.timeline t where t.kind = 'invocation.succeeded' and t.data->>'invocationId' = i.id::text)")
  expect(unreacted!.n, `seed ${seed}: invocations without their invocation.succeeded entry`).toBe(0)
  const { rows: kinds } = await db.pool.query<{ kind: string; n: number }>('select kind, count(*)::int as n from praxis.timeline group by kind order by kind')
  const timeline = Object.fromEntries(kinds.map((k) => [k.kind, k.n]))
  expect({ failed: timeline['invocation.failed'] ?? 0, ruleFailed: timeline['rule.failed'] ?? 0, instanceFailed: timeline['instance.failed'] ?? 0, completed: timeline['instance.completed'] }, `seed ${seed}`)
    .toEqual({ failed: 0, ruleFailed: 0, instanceFailed: 0, completed: INSTANCES })

  // The paths the chaos was to hit: retries, and results queued as events for a busy instance.
  const { rows: eventKinds } = await db.pool.query<{ kind: string; n: number }>('select kind, count(*)::int as n from praxis.events group by kind')
  const queued = Object.fromEntries(eventKinds.map((k) => [k.kind, k.n]))
  expect(timeline['invocation.retrying'] ?? 0, `seed ${seed}: planned first-attempt failures retried`).toBeGreaterThan(0)
  expect(queued.result ?? 0, `seed ${seed}: results queued as events (the fan-out's busy path)`).toBeGreaterThan(0)

  // ---- Nothing left behind: no job locked or waiting, no event unconsumed. -------------------
  const { rows: jobs } = await db.pool.query(
    `select j.id, t.identifier, j.attempts, j.max_attempts, j.locked_by, j.locked_at, j.run_at, j.last_error, j.payload
     from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id order by j.id limit 20`)
  expect(jobs, `seed ${seed}: jobs left in graphile_worker._private_jobs`).toEqual([])
  const { rows: [events] } = await db.pool.query<{ n: number }>('select count(*)::int as n from praxis.events where consumed_at is null')
  expect(events!.n, `seed ${seed}: unconsumed events`).toBe(0)

  // ---- The chaos really happened, and only the chaos killed anything. ------------------------
  expect(unexpectedExits, `seed ${seed}`).toEqual([])
  expect(restartFailures, `seed ${seed}`).toEqual([])
  expect(kills.worker, `seed ${seed}: worker kills`).toBeGreaterThanOrEqual(MIN_WORKER_KILLS)
  expect(kills.api, `seed ${seed}: API server kills`).toBeGreaterThanOrEqual(2)

  say(`passed in ${since()}: starts ${(startsMs / 1000).toFixed(1)} s, all ended at ${(endedMs / 1000).toFixed(1)} s; `
    + `kills: ${kills.worker} worker, ${kills.api} API server; start requests retried ${retries}, answered by an earlier try ${replayed}; `
    + `timeline: ${timeline['invocation.lost'] ?? 0} lost attempts, ${timeline['invocation.retrying'] ?? 0} retries; max attempts of an invocation ${inv!.max_attempts}; `
    + `${queued.result ?? 0} results queued as events; eagerly dispatched jobs seen in ${eagerSeen} polls`)
  say(`kills: ${killLog.join('; ')}`)
  passed = true
}, TEST_TIMEOUT_MS)

/** What the instances that did not end look like: their timeline, invocations, jobs and events, and the workers. */
async function diagnose(): Promise<string> {
  const q = async (sql: string, params: unknown[] = []): Promise<string> => {
    const { rows } = await db.pool.query(sql, params)
    return rows.map((r) => `    ${JSON.stringify(r)}`).join('\n')
  }
  const lines: string[] = [`seed ${seed}`, `kills: ${killLog.join('; ')}`, `unexpected exits: ${unexpectedExits.join('; ') || 'none'}`, `restart failures: ${restartFailures.join('; ') || 'none'}`]
  lines.push('workers:', await q('select id, heartbeat_at, lock_ids, now() as now from praxis.workers'))
  lines.push('jobs by task:', await q(`select t.identifier, count(*)::int as n, count(j.locked_by)::int as locked, max(j.attempts) as max_attempts
    from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id group by 1`))
  const { rows: stuck } = await db.pool.query<{ id: string }>("select id from praxis.instances where status in ('running', 'paused') order by created_at limit 5")
  const { rows: [total] } = await db.pool.query<{ n: number }>("select count(*)::int as n from praxis.instances where status in ('running', 'paused')")
  lines.push(`${total!.n} instances not ended; the first ${stuck.length}:`)
  for (const { id } of stuck) {
    lines.push(`instance ${id}:`, await q('select idempotency_key, status, revision, facts, updated_at from praxis.instances where id = $1', [id]))
    lines.push('  timeline:', await q('select id, revision, at, kind, rule, data from praxis.timeline where instance_id = $1 order by id', [id]))
    lines.push('  invocations:', await q('select id, function, rule, call_key, status, attempts, created_at, finished_at from praxis.invocations where instance_id = $1 order by created_at', [id]))
    lines.push('  events:', await q('select id, kind, payload, created_at, consumed_at from praxis.events where instance_id = $1 order by id', [id]))
    lines.push('  jobs:', await q(`select j.id, t.identifier, j.payload, j.attempts, j.max_attempts, j.locked_by, j.locked_at, j.run_at, j.last_error
      from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where j.payload->>'i' = $1 or j.payload->>'instance_id' = $1 or j.payload->>'i' in (select id::text from praxis.invocations where instance_id = $1::uuid)
         or j.payload->>'id' in (select id::text from praxis.invocations where instance_id = $1::uuid)`, [id]))
  }
  return lines.join('\n') + '\n'
}
