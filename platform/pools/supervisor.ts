/**
 * Warm capacity: a supervisor keeps `min..max` worker processes per function pool of a tenant's
 * services, each with its service loaded and its connections open before it counts (it prints
 * `praxis worker ready: <id>` once registered in praxis.workers). It samples each pool's queue,
 * scales up one step when the jobs waiting per worker or the oldest one's wait pass a threshold,
 * down one step after the pool was idle (nothing waiting, nothing running) for `idleMs`, and
 * restarts a worker that dies, backing off when it keeps dying. `desiredWorkers` is the policy,
 * a pure function; the class is the processes around it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'
import type { Logger } from 'pino'
import { qualifiedPool } from '../../sdk/index.js'
import { sampleQueues, type QueueSample } from '../queue/index.js'
import { createPool } from '../store/index.js'
import { loadService, type LoadedService } from './service.js'

const BIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../bin/praxis.js' : '../../../bin/praxis.js', import.meta.url))

/** What `praxis worker` prints on stdout once its worker is registered and taking jobs. */
export const WORKER_READY = 'praxis worker ready:'
const READY_LINE = /^praxis worker ready: (\S+)/

// ---------------------------------------------------------------------------------------------
// The policy

/** How one pool scales. */
export interface ScalePolicy {
  /** Workers always kept (0 lets an idle pool scale to none; the first job then waits for a start). */
  min: number
  max: number
  /** Scale up when more jobs than this wait per worker… */
  depthPerWorker: number
  /** …or when the oldest waiting job has waited longer than this. */
  maxAgeMs: number
  /** Scale down one step once the pool has had nothing waiting and nothing running for this long. */
  idleMs: number
}

/** A pool as the supervisor sees it at one sample. */
export interface PoolLoad {
  /** Workers it keeps: ready, starting, or waiting to restart. */
  current: number
  /** Of those, not ready yet (starting, or waiting to restart). */
  starting: number
  /** Jobs due and not taken. */
  depth: number
  /** How long the oldest of them has waited, ms. */
  oldestAgeMs: number
  /** How long the pool has had no job waiting or running (since its last scale event at most), ms. */
  idleForMs: number
}

export interface ScaleDecision { desired: number; reason: string }

const secs = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`

/**
 * How many workers a pool should have: never below `min` nor above `max`; one more when jobs
 * wait and either the jobs per worker or the oldest's wait pass their threshold (not while a
 * worker is still starting: one step at a time, each taking effect first); one fewer once idle
 * for `idleMs`.
 */
export function desiredWorkers(load: PoolLoad, policy: ScalePolicy): ScaleDecision {
  const { current, depth } = load
  if (current < policy.min) return { desired: policy.min, reason: `below the minimum of ${policy.min}` }
  if (current > policy.max) return { desired: policy.max, reason: `above the maximum of ${policy.max}` }
  if (depth > 0 && current < policy.max && load.starting === 0) {
    if (current === 0) return { desired: 1, reason: `${depth} job${depth === 1 ? '' : 's'} waiting and no worker` }
    const perWorker = depth / current
    if (perWorker > policy.depthPerWorker) return { desired: current + 1, reason: `${depth} jobs waiting, ${Number(perWorker.toFixed(1))} per worker > ${policy.depthPerWorker}` }
    if (load.oldestAgeMs > policy.maxAgeMs) return { desired: current + 1, reason: `the oldest job has waited ${secs(load.oldestAgeMs)} > ${secs(policy.maxAgeMs)}` }
  }
  if (depth === 0 && current > policy.min && load.idleForMs >= policy.idleMs) return { desired: current - 1, reason: `idle for ${secs(load.idleForMs)}` }
  return { desired: current, reason: 'steady' }
}

/** Checks a policy's numbers; throws a message naming the bad one. */
export function checkPolicy(policy: ScalePolicy): ScalePolicy {
  const whole = (name: string, value: number, least: number): void => {
    if (!Number.isInteger(value) || value < least) throw new Error(`${name} must be a whole number ≥ ${least}, got ${value}`)
  }
  whole('min', policy.min, 0)
  whole('max', policy.max, 1)
  if (policy.min > policy.max) throw new Error(`min (${policy.min}) is above max (${policy.max})`)
  whole('depthPerWorker', policy.depthPerWorker, 1)
  whole('maxAgeMs', policy.maxAgeMs, 0)
  whole('idleMs', policy.idleMs, 0)
  return policy
}

// ---------------------------------------------------------------------------------------------
// Pools of services

/** A function pool (`service:pool`) and the service folders whose functions serve it. */
export interface PoolSpec { pool: string; dirs: string[]; functions: string[] }

/** The pools the services' functions name, each with the folders that serve it, sorted by pool. */
export function groupPools(services: readonly LoadedService[]): PoolSpec[] {
  const pools = new Map<string, PoolSpec>()
  for (const service of services) {
    for (const fn of service.functions) {
      const pool = qualifiedPool(fn)
      const spec = pools.get(pool) ?? { pool, dirs: [], functions: [] }
      if (!spec.dirs.includes(service.dir)) spec.dirs.push(service.dir)
      spec.functions.push(fn.name)
      pools.set(pool, spec)
    }
  }
  return [...pools.values()].sort((a, b) => (a.pool < b.pool ? -1 : 1))
}

// ---------------------------------------------------------------------------------------------
// The supervisor

/** What happened, as it happens: `formatEvent` makes a line of it. */
export type SupervisorEvent =
  | { kind: 'scale'; pool: string; from: number; to: number; reason: string }
  | { kind: 'spawned'; pool: string; pid: number | undefined; cause: 'start' | 'scale-up' | 'restart' | 'reload' }
  | { kind: 'ready'; pool: string; pid: number | undefined; workerId: string; ms: number }
  /** `restartInMs` is absent when the worker is not started again: it was stopped (`expected`), or it was a new worker of `restartService` that died before it was ready. */
  | { kind: 'exited'; pool: string; pid: number | undefined; code: number | null; signal: string | null; expected: boolean; wasReady: boolean; restartInMs?: number }
  | { kind: 'crash-loop'; pool: string; failures: number; retryInMs: number; maxRetryMs: number; last: string }
  | { kind: 'not-ready'; pool: string; pid: number | undefined; ms: number }

export interface SupervisorOptions {
  tenantId: string
  /** Service folders; their functions' pools are supervised. */
  dirs: string[]
  /**
   * The pools to keep workers for, instead of learning them by importing the services'
   * functions.ts here (`praxis dev` reads them from each service's generated manifest, as it does
   * again after a change: a changed module cannot be imported again in the same process). May be
   * empty: `restartService` adds pools later.
   */
  pools?: PoolSpec[]
  /** Where the workers connect (passed to them as DATABASE_URL). */
  databaseUrl: string
  /** A pool to sample queues with; without it the supervisor opens (and closes) its own. */
  db?: pg.Pool
  log: Logger
  min?: number
  max?: number
  depthPerWorker?: number
  maxAgeMs?: number
  idleMs?: number
  /** How often queues are sampled. Default 1000 ms. */
  sampleMs?: number
  /** A worker not ready this long after its start is killed and counts as a failure. Default 120 s. */
  readyTimeoutMs?: number
  /** First restart delay after a death; it doubles while workers keep dying, up to `maxRestartMs`. */
  restartMs?: number
  maxRestartMs?: number
  /** A worker that was ready this long before dying was not crash-looping: the backoff starts over. */
  stableMs?: number
  /** After `stop()`'s SIGTERM, SIGKILL a worker still running after this long. Default: wait. */
  stopTimeoutMs?: number
  /** Extra environment of the worker processes (over this process's). */
  env?: Record<string, string>
  /** Each event as it happens. */
  onEvent?: (event: SupervisorEvent) => void
  /** A worker's stdout lines other than its ready line (its functions' console output). Default: this process's stdout. */
  onOutput?: (pool: string, line: string) => void
}

type SlotState = 'starting' | 'ready' | 'backoff' | 'stopping'

interface Slot {
  state: SlotState
  child: ChildProcess | null
  pid: number | undefined
  workerId: string | null
  spawnedAt: number
  readyAt: number
  timer: NodeJS.Timeout | null
  exited: Promise<void>
  /** A new worker of `restartService`, not ready yet: dying, it fails the restart instead of being started again. */
  candidate: boolean
}

interface PoolState {
  spec: PoolSpec
  slots: Slot[]
  /** When the pool last had a job waiting or running, or last scaled (idleness counts from the later). */
  busyAt: number
  scaledAt: number
  /** Deaths in a row that were not of a stable worker. */
  failures: number
  /** Its service's workers are being replaced (`restartService`): not scaled meanwhile. */
  restarting: boolean
}

/** What `restartService` did. */
export interface ServiceRestart {
  /** True when the new workers serve the service's pools and the old ones have exited. */
  ok: boolean
  /** The service's pools now (on failure: the pools it had, still served by the old workers). */
  pools: string[]
  /** New worker processes ready, and old ones stopped. */
  started: number
  stopped: number
  /** On failure, what happened: a new worker's exit before it was ready (its error is on stderr). */
  error?: string
  ms: number
}

/** A new worker's fate, as `restartService` waits for it. */
type SlotNews = { slot: Slot; what: 'ready' } | { slot: Slot; what: 'died'; detail: string } | { slot: null; what: 'stopping' }

/** A pool's workers now. */
export interface PoolStatus { pool: string; dirs: string[]; ready: number; starting: number; restarting: number; stopping: number; workerIds: string[]; pids: number[] }

export class Supervisor {
  readonly tenantId: string
  readonly policy: ScalePolicy
  private readonly options: SupervisorOptions
  private readonly pools = new Map<string, PoolState>()
  private db: pg.Pool | null = null
  private ownDb = false
  private sampler: NodeJS.Timeout | null = null
  private sampling: Promise<void> = Promise.resolve()
  private started = false
  private stopping = false
  private readyWaiters: (() => void)[] = []
  private sampleFailing = false
  private readonly slotWatchers = new Set<(news: SlotNews) => void>()
  private readonly restarting = new Set<string>()

  constructor(options: SupervisorOptions) {
    this.options = options
    this.tenantId = options.tenantId
    const min = options.min ?? 1
    this.policy = checkPolicy({
      min,
      max: options.max ?? Math.max(min, 4),
      depthPerWorker: options.depthPerWorker ?? 8,
      maxAgeMs: options.maxAgeMs ?? 2000,
      idleMs: options.idleMs ?? 60_000,
    })
  }

  /**
   * Loads the services (to learn their pools), starts `min` workers per pool and the sampling.
   * Returns the pools; `ready()` tells when their workers are.
   */
  async start(): Promise<PoolSpec[]> {
    if (this.started) throw new Error('the supervisor is already started')
    this.started = true
    const specs = this.options.pools ? [...this.options.pools].sort((a, b) => (a.pool < b.pool ? -1 : 1)) : groupPools(await Promise.all(this.options.dirs.map((d) => loadService(d))))
    if (specs.length === 0 && !this.options.pools) throw new Error(`no functions found in ${this.options.dirs.join(', ')}: a service exports its defineFunction(...) values from functions.ts`)
    this.db = this.options.db ?? null
    if (!this.db) {
      this.db = createPool(this.options.databaseUrl, 2)
      this.ownDb = true
    }
    const now = Date.now()
    for (const spec of specs) {
      const state: PoolState = { spec, slots: [], busyAt: now, scaledAt: now, failures: 0, restarting: false }
      this.pools.set(spec.pool, state)
      for (let i = 0; i < this.policy.min; i++) this.spawn(state, 'start')
    }
    this.schedule()
    return specs
  }

  /** Resolves once every pool has at least `min` ready workers (at once if it has), or once stopped. */
  ready(): Promise<void> {
    if (this.allReady()) return Promise.resolve()
    return new Promise((resolve) => this.readyWaiters.push(resolve))
  }

  status(): PoolStatus[] {
    return [...this.pools.values()].map(({ spec, slots }) => {
      const count = (state: SlotState) => slots.filter((s) => s.state === state).length
      return {
        pool: spec.pool, dirs: spec.dirs, ready: count('ready'), starting: count('starting'), restarting: count('backoff'), stopping: count('stopping'),
        workerIds: slots.filter((s) => s.state === 'ready' && s.workerId).map((s) => s.workerId!),
        pids: slots.filter((s) => s.child && s.pid !== undefined).map((s) => s.pid!),
      }
    })
  }

  /** SIGTERMs every worker (each lets its running functions finish) and waits for them to exit. */
  async stop(): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    if (this.sampler) clearTimeout(this.sampler)
    for (const watch of [...this.slotWatchers]) watch({ slot: null, what: 'stopping' })
    const exits: Promise<void>[] = []
    for (const state of this.pools.values()) {
      for (const slot of [...state.slots]) exits.push(this.retire(state, slot))
    }
    const killer = this.options.stopTimeoutMs === undefined ? null : setTimeout(() => {
      for (const state of this.pools.values()) for (const slot of state.slots) slot.child?.kill('SIGKILL')
    }, this.options.stopTimeoutMs)
    await Promise.all(exits)
    if (killer) clearTimeout(killer)
    for (const resolve of this.readyWaiters.splice(0)) resolve()
    await this.sampling
    if (this.ownDb) await this.db?.end()
  }

  /**
   * Replaces the workers of the service in `dir` with new processes, which load its code as it is
   * now (its functions, or a file they import, changed). `pools` are the service's pools now (each
   * naming `dir`); for each, `min` new workers start beside the old ones, which keep serving.
   * Once every new one is ready, the old ones get SIGTERM (each lets its running functions finish
   * and takes no new job) and it resolves when they have exited: from then on every job of the
   * service runs the new code. A pool the service no longer has loses its workers; a new one gets
   * its own. If a new worker dies before it is ready (or is not ready within `readyTimeoutMs`),
   * the new ones are stopped and the old ones keep serving: `ok` is false and `error` says what
   * happened (the worker's own error is on stderr). The service's pools are not scaled meanwhile.
   */
  async restartService(dir: string, pools: readonly PoolSpec[]): Promise<ServiceRestart> {
    const t0 = Date.now()
    const abs = path.resolve(dir)
    if (!this.started) throw new Error('restartService: the supervisor is not started')
    if (this.restarting.has(abs)) throw new Error(`restartService: the workers of ${dir} are already being restarted`)
    const mine = (spec: PoolSpec): boolean => spec.dirs.some((d) => path.resolve(d) === abs)
    for (const spec of pools) {
      if (!mine(spec)) throw new Error(`restartService: pool ${spec.pool} does not name ${dir} among its folders`)
      const other = this.pools.get(spec.pool)
      if (other && !mine(other.spec)) throw new Error(`restartService: pool ${spec.pool} is served by ${other.spec.dirs.join(', ')}, not ${dir}`)
    }
    const before = [...this.pools.values()].filter((s) => mine(s.spec))
    if (this.stopping) return { ok: false, pools: before.map((s) => s.spec.pool), started: 0, stopped: 0, error: 'the supervisor is stopping', ms: 0 }
    this.restarting.add(abs)
    const now = Date.now()
    // Per pool: its state, the spec to go back to on failure (null: a new pool), and its old workers.
    const plan = pools.map((spec) => {
      const existing = this.pools.get(spec.pool)
      const state: PoolState = existing ?? { spec, slots: [], busyAt: now, scaledAt: now, failures: 0, restarting: true }
      if (!existing) this.pools.set(spec.pool, state)
      const plan = { state, previous: existing ? existing.spec : null, old: [...state.slots] }
      state.restarting = true
      state.spec = { ...spec, dirs: [...spec.dirs] }
      return plan
    })
    const gone = before.filter((s) => !pools.some((p) => p.pool === s.spec.pool))
    for (const state of gone) state.restarting = true

    // Watch for the new workers before spawning them: one can be ready (or die) before spawn returns.
    const pending = new Set<Slot>()
    let resolveOutcome!: (error: string | null) => void
    const outcome = new Promise<string | null>((resolve) => { resolveOutcome = resolve })
    const watch = (news: SlotNews): void => {
      if (news.what === 'stopping') return resolveOutcome('the supervisor is stopping')
      if (!pending.has(news.slot)) return
      if (news.what === 'died') return resolveOutcome(news.detail)
      pending.delete(news.slot)
      if (pending.size === 0) resolveOutcome(null)
    }
    this.slotWatchers.add(watch)
    const fresh: { state: PoolState; slot: Slot }[] = []
    for (const { state } of plan) {
      for (let i = 0; i < this.policy.min; i++) {
        const slot = this.spawn(state, 'reload', undefined, true)
        fresh.push({ state, slot })
        if (slot.state !== 'ready') pending.add(slot)
      }
    }
    if (pending.size === 0) resolveOutcome(null)
    const error = await outcome
    this.slotWatchers.delete(watch)

    try {
      if (error !== null) {
        // The old workers keep serving; the new ones go, and the pools' specs go back.
        await Promise.all(fresh.map(({ state, slot }) => this.retire(state, slot)))
        for (const { state, previous } of plan) {
          if (previous) state.spec = previous
          else if (state.slots.length === 0) this.pools.delete(state.spec.pool)
        }
        return { ok: false, pools: before.map((s) => s.spec.pool), started: 0, stopped: 0, error, ms: Date.now() - t0 }
      }
      for (const { slot } of fresh) slot.candidate = false
      const retiring: Promise<void>[] = []
      for (const { state, old } of plan) for (const slot of old) retiring.push(this.retire(state, slot))
      for (const state of gone) for (const slot of [...state.slots]) retiring.push(this.retire(state, slot))
      await Promise.all(retiring)
      for (const state of gone) this.pools.delete(state.spec.pool)
      for (const { state } of plan) {
        state.failures = 0
        state.scaledAt = Date.now()
      }
      this.checkReady()
      return { ok: !this.stopping, pools: plan.map((p) => p.state.spec.pool), started: fresh.length, stopped: retiring.length, ...(this.stopping ? { error: 'the supervisor is stopping' } : {}), ms: Date.now() - t0 }
    } finally {
      for (const { state } of plan) state.restarting = false
      for (const state of gone) state.restarting = false
      this.restarting.delete(abs)
    }
  }

  // -------------------------------------------------------------------------------------------

  private emit(event: SupervisorEvent): void {
    this.options.onEvent?.(event)
  }

  private allReady(): boolean {
    return [...this.pools.values()].every((s) => s.slots.filter((slot) => slot.state === 'ready').length >= this.policy.min)
  }

  private checkReady(): void {
    if (this.allReady()) for (const resolve of this.readyWaiters.splice(0)) resolve()
  }

  private live(state: PoolState): Slot[] {
    return state.slots.filter((s) => s.state !== 'stopping')
  }

  private notify(news: SlotNews): void {
    for (const watch of [...this.slotWatchers]) watch(news)
  }

  private spawn(state: PoolState, cause: 'start' | 'scale-up' | 'restart' | 'reload', slot?: Slot, candidate = false): Slot {
    const { spec } = state
    const child = spawn(process.execPath, ['--no-node-snapshot', BIN, 'worker', ...spec.dirs, '--tenant', this.tenantId, '--pool', spec.pool], {
      env: { ...process.env, ...this.options.env, DATABASE_URL: this.options.databaseUrl, PRAXIS_SUPERVISED: '1' },
      // stdin stays open: a worker whose supervisor dies sees it close, and stops.
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    let resolveExit!: () => void
    const exited = new Promise<void>((resolve) => { resolveExit = resolve })
    const s: Slot = slot ?? { state: 'starting', child: null, pid: undefined, workerId: null, spawnedAt: 0, readyAt: 0, timer: null, exited, candidate }
    Object.assign(s, { state: 'starting', child, pid: child.pid, workerId: null, spawnedAt: Date.now(), readyAt: 0, timer: null, exited })
    if (!slot) state.slots.push(s)
    this.emit({ kind: 'spawned', pool: spec.pool, pid: child.pid, cause })

    const notReady = setTimeout(() => {
      if (s.child !== child || s.state !== 'starting') return
      this.emit({ kind: 'not-ready', pool: spec.pool, pid: child.pid, ms: Date.now() - s.spawnedAt })
      child.kill('SIGKILL')
    }, this.options.readyTimeoutMs ?? 120_000)
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      const ready = READY_LINE.exec(line)
      if (ready && s.child === child && s.state === 'starting') {
        clearTimeout(notReady)
        s.state = 'ready'
        s.workerId = ready[1]!
        s.readyAt = Date.now()
        this.emit({ kind: 'ready', pool: spec.pool, pid: child.pid, workerId: s.workerId, ms: s.readyAt - s.spawnedAt })
        this.notify({ slot: s, what: 'ready' })
        this.checkReady()
        return
      }
      if (this.options.onOutput) this.options.onOutput(spec.pool, line)
      else process.stdout.write(line + '\n')
    })
    child.stdin!.on('error', () => undefined)
    let gone = false
    const onGone = (code: number | null, signal: string | null): void => {
      if (gone) return
      gone = true
      clearTimeout(notReady)
      this.exited(state, s, child, code, signal)
      resolveExit()
    }
    child.once('exit', onGone)
    // A process that could not be spawned at all emits 'error' and no 'exit'.
    child.once('error', (error) => {
      this.options.log.error({ pool: spec.pool, error: error.message }, 'could not start a worker process')
      onGone(null, null)
    })
    return s
  }

  private exited(state: PoolState, slot: Slot, child: ChildProcess, code: number | null, signal: string | null): void {
    if (slot.child !== child) return
    const wasReady = slot.state === 'ready'
    slot.child = null
    const pool = state.spec.pool
    if (slot.state === 'stopping' || this.stopping) {
      state.slots.splice(state.slots.indexOf(slot), 1)
      this.emit({ kind: 'exited', pool, pid: child.pid, code, signal, expected: true, wasReady })
      return
    }
    // A new worker of restartService that never got ready: the restart fails, the old workers serve on.
    if (slot.candidate && !wasReady) {
      state.slots.splice(state.slots.indexOf(slot), 1)
      this.emit({ kind: 'exited', pool, pid: child.pid, code, signal, expected: false, wasReady })
      this.notify({ slot, what: 'died', detail: `a new worker of ${pool} (pid ${child.pid}) exited with ${signal ? `signal ${signal}` : `exit code ${code}`} before it was ready` })
      return
    }
    // Died on its own: restart it, at once if it had run a while, with a growing delay if not.
    const now = Date.now()
    const stable = wasReady && now - slot.readyAt >= (this.options.stableMs ?? 10_000)
    state.failures = stable ? 0 : state.failures + 1
    const first = this.options.restartMs ?? 500
    const most = this.options.maxRestartMs ?? 30_000
    const delay = state.failures === 0 ? first : Math.min(most, first * 2 ** (state.failures - 1))
    slot.state = 'backoff'
    slot.workerId = null
    this.emit({ kind: 'exited', pool, pid: child.pid, code, signal, expected: false, wasReady, restartInMs: delay })
    if (state.failures >= 3) {
      this.emit({ kind: 'crash-loop', pool, failures: state.failures, retryInMs: delay, maxRetryMs: most, last: `${signal ? `signal ${signal}` : `exit code ${code}`} ${wasReady ? 'after it was ready' : 'before it was ready'}` })
    }
    slot.timer = setTimeout(() => {
      slot.timer = null
      if (this.stopping || slot.state !== 'backoff') return
      this.spawn(state, 'restart', slot)
    }, delay)
  }

  /** Takes a slot away: SIGTERM (the worker finishes its running functions), or cancel its restart. */
  private retire(state: PoolState, slot: Slot): Promise<void> {
    if (slot.timer) {
      clearTimeout(slot.timer)
      slot.timer = null
    }
    if (slot.state === 'stopping') return slot.exited
    if (!slot.child) {
      const i = state.slots.indexOf(slot)
      if (i >= 0) state.slots.splice(i, 1)
      return Promise.resolve()
    }
    slot.state = 'stopping'
    slot.child.kill('SIGTERM')
    return slot.exited
  }

  private schedule(): void {
    if (this.stopping) return
    this.sampler = setTimeout(() => {
      this.sampling = this.sample()
        .catch((error: Error) => this.options.log.error({ error: error.message }, 'a scaling round failed; the next one runs as usual'))
        .finally(() => this.schedule())
    }, this.options.sampleMs ?? 1000)
  }

  private async sample(): Promise<void> {
    let samples: Map<string, QueueSample>
    try {
      samples = await sampleQueues(this.db!, this.tenantId, [...this.pools.keys()])
      if (this.sampleFailing) this.options.log.info('sampling the queues works again')
      this.sampleFailing = false
    } catch (error) {
      if (this.stopping) return
      if (!this.sampleFailing) this.options.log.warn({ error: (error as Error).message }, 'cannot sample the queues (is the database up?); workers are kept as they are until it works again')
      this.sampleFailing = true
      return
    }
    if (this.stopping) return
    const now = Date.now()
    for (const state of this.pools.values()) {
      if (state.restarting) continue
      const sample = samples.get(state.spec.pool) ?? { depth: 0, oldestAgeMs: 0, running: 0 }
      if (sample.depth > 0 || sample.running > 0) state.busyAt = now
      const live = this.live(state)
      const decision = desiredWorkers({
        current: live.length,
        starting: live.filter((s) => s.state !== 'ready').length,
        depth: sample.depth,
        oldestAgeMs: sample.oldestAgeMs,
        idleForMs: now - Math.max(state.busyAt, state.scaledAt),
      }, this.policy)
      if (decision.desired === live.length) continue
      this.emit({ kind: 'scale', pool: state.spec.pool, from: live.length, to: decision.desired, reason: decision.reason })
      state.scaledAt = now
      if (decision.desired > live.length) {
        for (let i = live.length; i < decision.desired; i++) this.spawn(state, 'scale-up')
      } else {
        // Those not serving yet go first, then the youngest.
        const order = [...live].sort((a, b) => Number(a.state === 'ready') - Number(b.state === 'ready') || b.spawnedAt - a.spawnedAt)
        for (const slot of order.slice(0, live.length - decision.desired)) void this.retire(state, slot)
      }
    }
  }
}

/** A line for an event, e.g. `video-encoding:encoders: 1 → 2 workers (12 jobs waiting, 12 per worker > 8)`. */
export function formatEvent(event: SupervisorEvent): string {
  const pid = 'pid' in event && event.pid !== undefined ? `worker ${event.pid}` : 'a worker'
  switch (event.kind) {
    case 'scale': return `${event.pool}: ${event.from} → ${event.to} worker${event.to === 1 ? '' : 's'} (${event.reason})`
    case 'spawned': return `${event.pool}: starting ${pid}${event.cause === 'restart' ? ' again' : event.cause === 'reload' ? ' with the service\'s new code' : ''}`
    case 'ready': return `${event.pool}: ${pid} ready (${event.workerId}, ${secs(event.ms)})`
    case 'not-ready': return `${event.pool}: ${pid} not ready after ${secs(event.ms)}; killing it`
    case 'exited': {
      const how = event.signal ? `signal ${event.signal}` : `exit code ${event.code}`
      if (event.expected) return `${event.pool}: ${pid} stopped (${how})`
      if (event.restartInMs === undefined) return `${event.pool}: ${pid} died (${how}${event.wasReady ? '' : ', before it was ready'})`
      return `${event.pool}: ${pid} died (${how}${event.wasReady ? '' : ', before it was ready'}); restarting it in ${secs(event.restartInMs ?? 0)}`
    }
    case 'crash-loop':
      return `${event.pool}: its workers keep dying (${event.failures} in a row, last: ${event.last}). Their error is in the log above: fix the service or its environment `
        + `(DATABASE_URL, the tenant, the code in functions.ts); it tries again in ${secs(event.retryInMs)}, backing off up to ${secs(event.maxRetryMs)}. Ctrl-C stops it.`
  }
}
