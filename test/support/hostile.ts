/**
 * The harness of test/hostile.test.ts: a test database, the API in a child process
 * (hostile-host.ts) restarted whenever a probe kills or hangs it, one tenant per probe, an honest
 * tenant and a victim tenant, and the checks every probe shares (secrets, health, honest work).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildBundle, readGeneratedManifest } from '../../platform/engine/index.js'
import { ensureTenant } from '../../platform/store/index.js'
import { createTestDatabase, type TestDatabase } from './database.js'
import type { HostReply, HostRequest } from './hostile-host.js'

export const HOSTILE_DIR = 'test/fixtures/hostile'
export const VICTIM_DIR = 'test/fixtures/hostile-victim'
export const VICTIM_SECRET = 'victim-secret-7d41c9e2'
const HOST_SCRIPT = fileURLToPath(new URL('./hostile-host.ts', import.meta.url))

export interface Reply { status: number; body: any; ms: number }
export interface Tenant { id: string; key: string }
export type At = 'init' | 'action' | 'reaction' | 'error' | 'signal'

/** A request that got no answer: the host died or hung. */
export class NoAnswer extends Error {}

interface Host { child: ChildProcess; url: string; stderr: string[]; exit: { code: number | null; signal: string | null } | null; replies: Map<number, (r: HostReply) => void> }

export class Harness {
  db!: TestDatabase
  readonly canaryEnv = `canary-env-${randomBytes(8).toString('hex')}`
  readonly canaryText = `canary-file-${randomBytes(8).toString('hex')}`
  readonly canaryFile: string
  bundle!: { code: string; manifest: unknown }
  victim!: { code: string; manifest: unknown }
  honest!: Tenant
  victimTenant!: Tenant
  /** Why each earlier host died (for the report). */
  readonly deaths: string[] = []
  #host: Host | undefined
  #nextId = 1
  /** Workers to restart with a new host: the honest and the victim tenant's. */
  #baseWorkers: Omit<Extract<HostRequest, { op: 'worker' }>, 'id' | 'op'>[] = []

  constructor() {
    const dir = mkdtempSync(path.join(tmpdir(), 'praxis-hostile-'))
    this.canaryFile = path.join(dir, 'canary.txt')
    writeFileSync(this.canaryFile, this.canaryText)
  }

  async start(): Promise<void> {
    this.db = await createTestDatabase()
    const [code, manifest, victimCode, victimManifest] = await Promise.all([
      buildBundle(HOSTILE_DIR).then((b) => b.code), readGeneratedManifest(HOSTILE_DIR),
      buildBundle(VICTIM_DIR).then((b) => b.code), readGeneratedManifest(VICTIM_DIR),
    ])
    this.bundle = { code, manifest }
    this.victim = { code: victimCode, manifest: victimManifest }
    this.honest = await this.tenant('honest')
    this.victimTenant = await this.tenant('victim')
    await this.ensureHost()
    await this.mustDeploy(this.honest, 'hostile', this.bundle.code, this.bundle.manifest)
    await this.mustDeploy(this.victimTenant, 'hostile-victim', this.victim.code, this.victim.manifest)
    this.#baseWorkers = [
      { key: 'honest', dir: HOSTILE_DIR, tenantId: this.honest.id, exclude: ['sink'] },
      { key: 'victim', dir: VICTIM_DIR, tenantId: this.victimTenant.id, exclude: [] },
    ]
    for (const w of this.#baseWorkers) await this.#control({ op: 'worker', ...w })
  }

  async close(): Promise<void> {
    await this.#kill()
    await this.db?.drop()
  }

  /** Every string that must never reach a tenant: the database URL and password, canaries, the victim's secret. */
  secrets(): string[] {
    const url = new URL(this.db.url)
    const found = [this.db.url, this.canaryEnv, this.canaryText, VICTIM_SECRET]
    if (url.password) found.push(`:${decodeURIComponent(url.password)}@`)
    if (url.password && url.password.length >= 8) found.push(decodeURIComponent(url.password))
    return found
  }

  /** Secrets, or signs of reaching the host (a process, Node internals' source), in `text`. */
  leaks(text: string): string[] {
    const found = this.secrets().filter((s) => text.includes(s)).map((s) => `secret ${JSON.stringify(s.slice(0, 40))}`)
    for (const sign of [/ESCAPED process/, /child_process reachable/, /SOCKET: node:net/, /global with process/, /primordials/, /internalBinding/, /node:internal/, /DATABASE_URL=/]) {
      const m = sign.exec(text)
      if (m) found.push(`${sign.source} in …${text.slice(Math.max(0, m.index - 80), m.index + 160)}…`)
    }
    return found
  }

  // --- the host process --------------------------------------------------------------------

  get alive(): boolean {
    return Boolean(this.#host && !this.#host.exit)
  }

  /** How the current host ended, or null while it runs. */
  get hostExit(): string | null {
    const h = this.#host
    if (!h) return 'no host'
    if (!h.exit) return null
    return `host process exited (code ${h.exit.code}, signal ${h.exit.signal}); stderr: ${h.stderr.join('').slice(-1500)}`
  }

  /** Starts the host, or replaces one that died or stopped answering. Returns why it was replaced. */
  async ensureHost(): Promise<string | null> {
    let why: string | null = null
    if (this.#host && !this.#host.exit) {
      const health = await this.health(5000)
      if (health.status === 200) return null
      why = `host stopped answering /v1/health (${health.error ?? health.status}); killed`
      await this.#kill()
    } else if (this.#host) {
      why = this.hostExit
    }
    if (why) this.deaths.push(why)
    const host: Host = { child: undefined as unknown as ChildProcess, url: '', stderr: [], exit: null, replies: new Map() }
    host.child = fork(HOST_SCRIPT, [], {
      execArgv: ['--no-node-snapshot', '--max-old-space-size=1536', '--import', 'tsx'],
      env: { ...process.env, DATABASE_URL: this.db.url, PRAXIS_HOSTILE_CANARY: this.canaryEnv },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    host.child.stderr!.on('data', (chunk: Buffer) => {
      host.stderr.push(chunk.toString())
      if (host.stderr.length > 200) host.stderr.splice(0, 100)
    })
    host.child.on('exit', (code, signal) => {
      host.exit = { code, signal }
      for (const resolve of host.replies.values()) resolve({ id: -1, ok: false, error: 'host exited' })
    })
    const ready = new Promise<string>((resolve, reject) => {
      host.child.on('message', (reply: HostReply) => {
        if ('ready' in reply) resolve(reply.ready)
        else host.replies.get(reply.id)?.(reply)
      })
      host.child.on('exit', () => reject(new Error(`host exited while starting: ${host.stderr.join('').slice(-2000)}`)))
      setTimeout(() => reject(new Error(`host did not start in 60 s: ${host.stderr.join('').slice(-2000)}`)), 60_000).unref()
    })
    this.#host = host
    host.url = await ready
    if (why) for (const w of this.#baseWorkers) await this.#control({ op: 'worker', ...w })
    return why
  }

  async #kill(): Promise<void> {
    const host = this.#host
    if (!host || host.exit) return
    const exited = new Promise((resolve) => host.child.once('exit', resolve))
    host.child.kill('SIGKILL')
    await exited
  }

  async #control(request: HostRequest extends infer R ? (R extends HostRequest ? Omit<R, 'id'> : never) : never): Promise<void> {
    const host = this.#host
    if (!host || host.exit) throw new NoAnswer(`cannot ${request.op} a worker: ${this.hostExit}`)
    const id = this.#nextId++
    const reply = await new Promise<HostReply>((resolve) => {
      host.replies.set(id, resolve)
      host.child.send({ ...request, id } as HostRequest)
    })
    host.replies.delete(id)
    if ('ok' in reply && !reply.ok) throw new Error(`host could not ${request.op} worker: ${reply.error}`)
  }

  /** Starts a worker for `tenant` in the host (its functions minus `sink`, whose calls must stay pending). */
  startWorker(tenant: Tenant, dir = HOSTILE_DIR): Promise<void> {
    return this.#control({ op: 'worker', key: tenant.id, dir, tenantId: tenant.id, exclude: ['sink'] })
  }

  async stopWorker(tenant: Tenant): Promise<void> {
    if (this.alive) await this.#control({ op: 'stop', key: tenant.id }).catch(() => undefined)
  }

  // --- requests ----------------------------------------------------------------------------

  async request(method: 'GET' | 'POST', url: string, body?: unknown, key?: string, timeoutMs = 30_000): Promise<Reply> {
    const host = this.#host
    if (!host || host.exit) throw new NoAnswer(`no host to ask ${method} ${url}: ${this.hostExit}`)
    const t0 = Date.now()
    let response: Response
    try {
      response = await fetch(new URL(url, host.url), {
        method,
        headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (error) {
      await new Promise((r) => setTimeout(r, 200))
      throw new NoAnswer(`${method} ${url} got no answer in ${Date.now() - t0} ms (${(error as Error).message}); ${this.hostExit ?? 'the host is still running (hung?)'}`)
    }
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed, ms: Date.now() - t0 }
  }

  async health(timeoutMs = 5000): Promise<{ status: number; ms: number; error?: string }> {
    try {
      const r = await this.request('GET', '/v1/health', undefined, undefined, timeoutMs)
      return { status: r.status, ms: r.ms }
    } catch (error) {
      return { status: 0, ms: timeoutMs, error: (error as Error).message }
    }
  }

  /**
   * Runs `work` while asking /v1/health back to back; returns the longest time without an answer
   * (a host whose event loop is blocked answers late) and any health request that failed.
   */
  async healthWhile<T>(work: () => Promise<T>): Promise<{ result: T; maxGapMs: number; failures: string[] }> {
    let done = false
    const running = work().finally(() => { done = true })
    running.catch(() => undefined)
    const failures: string[] = []
    const t0 = Date.now()
    let last = t0
    let maxGapMs = 0
    while (!done || Date.now() - t0 < 500) {
      const h = await this.health(3000)
      const now = Date.now()
      maxGapMs = Math.max(maxGapMs, now - last)
      last = now
      if (h.status !== 200) {
        failures.push(`health: ${h.error ?? h.status} after ${now - t0} ms`)
        if (!this.alive || failures.length >= 3) break
      }
      await new Promise((r) => setTimeout(r, 10))
    }
    return { result: await running, maxGapMs, failures }
  }

  // --- tenants and instances ---------------------------------------------------------------

  async tenant(id: string): Promise<Tenant> {
    const { apiKey } = await ensureTenant(this.db.pool, id)
    return { id, key: apiKey }
  }

  deploy(tenant: Tenant, service: string, code: string, manifest: unknown, timeoutMs?: number): Promise<Reply> {
    return this.request('POST', `/v1/services/${service}/deployments`, { code, ...(manifest ? { manifest } : {}) }, tenant.key, timeoutMs)
  }

  async mustDeploy(tenant: Tenant, service: string, code: string, manifest: unknown): Promise<void> {
    const r = await this.deploy(tenant, service, code, manifest)
    if (r.status !== 201 && r.status !== 200) throw new Error(`deploying ${service} for ${tenant.id}: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`)
  }

  startProbe(tenant: Tenant, probe: string, at: At): Promise<Reply> {
    return this.request('POST', '/v1/workflows/probe/instances', { input: { probe, at, arg: this.canaryFile } }, tenant.key)
  }

  /** The instance once it ended (or as it is after `timeoutMs`), with its timeline. */
  async settle(tenant: Tenant, id: string, timeoutMs: number): Promise<{ view: any; timeline: any[] }> {
    const view = (await this.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=${timeoutMs}`, undefined, tenant.key, timeoutMs + 30_000)).body
    const timeline = (await this.request('GET', `/v1/instances/${id}/timeline?limit=1000`, undefined, tenant.key)).body?.entries ?? []
    return { view, timeline }
  }

  /**
   * Starts a `noop` probe at `at` in `tenant` and waits for it: it must complete, with nothing
   * left over from earlier evaluations. Returns problems found.
   */
  async ordinary(tenant: Tenant, at: At, what: string): Promise<string[]> {
    const started = await this.startProbe(tenant, 'noop', at)
    if (started.status !== 201) return [`${what}: start answered ${started.status} ${JSON.stringify(started.body).slice(0, 600)}`]
    if (at === 'signal') {
      const s = await this.request('POST', `/v1/instances/${started.body.id}/signals/poke`, { payload: {} }, tenant.key)
      if (s.status !== 202) return [`${what}: signal answered ${s.status} ${JSON.stringify(s.body).slice(0, 600)}`]
    }
    const { view, timeline } = await this.settle(tenant, started.body.id, 20_000)
    const problems: string[] = []
    if (view?.status !== 'completed') problems.push(`${what}: ${view?.status} ${JSON.stringify(view?.error ?? null).slice(0, 800)}`)
    else if (view.facts?.got) problems.push(`${what}: saw ${String(view.facts.got).slice(0, 800)}`)
    problems.push(...this.leaks(JSON.stringify([started.body, view, timeline])).map((l) => `${what}: ${l}`))
    return problems
  }

  /** The honest tenant's workflow (through a function and its reaction) completes. */
  honestRoundTrip(): Promise<string[]> {
    return this.ordinary(this.honest, 'reaction', 'honest tenant workflow')
  }
}

/** The error code of a failed instance or an error answer: `error.details.code`, else `error.code`. */
export function codeOf(error: any): string | null {
  return error?.details?.code ?? error?.code ?? null
}
