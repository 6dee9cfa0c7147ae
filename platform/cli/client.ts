/**
 * A small HTTP client of the REST API for the CLI, and where the CLI finds the server and its key.
 *
 * Kept light on purpose: `praxis start`, `praxis inspect` and `--help` load this file and
 * commander only (no zod, no pg, no engine), so nothing here may import more than `node:` modules.
 *
 * Server discovery, first match wins:
 *   1. `--server URL`
 *   2. `PRAXIS_URL`
 *   3. the running `praxis dev`: it writes `<PRAXIS_DATA_DIR>/dev-server.json` = { url, pid } once
 *      its API listens; used only while that pid is alive (without PRAXIS_DATA_DIR, the nearest
 *      `.praxis` folder with it in the current folder or above: see devDataDir)
 *   4. `http://HOST:PORT` from the environment (defaults 127.0.0.1 and 3000, as platform/config.ts)
 */
import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'

export interface ApiClient { request(method: 'GET' | 'POST', url: string, body?: unknown): Promise<any> }

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: { error?: { code?: string; message?: string; details?: unknown } } | null) {
    super(body?.error?.message ?? `HTTP ${status}`)
    this.name = 'ApiError'
  }
}

/** The file `praxis dev` writes when its API listens: where it listens and its process id. */
export const DEV_SERVER_FILE = 'dev-server.json'

/**
 * What the CLI reads from the environment before loading the full configuration (platform/config.ts,
 * which loads zod): where the API listens by default and where `praxis dev` keeps its files. Same
 * variables, defaults and checks as loadConfig; test/cli.test.ts holds the two together.
 */
export interface CliEnv { host: string; port: number; dataDir: string }

export function cliEnv(env: NodeJS.ProcessEnv = process.env): CliEnv {
  const port = env.PORT === undefined ? 3000 : Number(env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid environment:\n  PORT: ${JSON.stringify(env.PORT)} is not a port (a whole number from 0 to 65535)\nfix it (docs/cli.md, "Environment variables") and run again`)
  return { host: env.HOST ?? '127.0.0.1', port, dataDir: env.PRAXIS_DATA_DIR ?? '.praxis' }
}

/**
 * Where a running `praxis dev` keeps the files other commands read (its address, its API key):
 * PRAXIS_DATA_DIR; else the nearest `.praxis` folder holding them, in `cwd` or a folder above it, so
 * a command run inside a service folder finds the dev server its project runs; else `.praxis`.
 */
export function devDataDir(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  if (env.PRAXIS_DATA_DIR) return env.PRAXIS_DATA_DIR
  const here = path.resolve(cwd)
  for (let dir = here; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, '.praxis')
    if (existsSync(path.join(candidate, DEV_SERVER_FILE)) || existsSync(path.join(candidate, 'dev-api-key'))) return dir === here ? '.praxis' : candidate
    if (path.dirname(dir) === dir) return '.praxis'
  }
}

/** `http://HOST:PORT`, an IPv6 host in brackets. */
export const defaultServerUrl = (e: CliEnv): string => `http://${e.host.includes(':') && !e.host.startsWith('[') ? `[${e.host}]` : e.host}:${e.port}`

/** Where a server URL came from: said in errors and in `--help`. */
export type ServerSource =
  | { kind: 'flag' }
  | { kind: 'env' }
  | { kind: 'dev'; pid: number; file: string }
  | { kind: 'default'; host: string; port: number }

export interface ServerTarget { url: string; source: ServerSource }

/** The record of a running `praxis dev`, or why there is none to use. */
export type DevServer = { url: string; pid: number; file: string; alive: boolean } | { file: string; missing: true } | { file: string; invalid: string }

/** Reads `<dataDir>/dev-server.json` and checks whether the process that wrote it still runs. */
export function readDevServer(dataDir: string): DevServer {
  const file = path.join(dataDir, DEV_SERVER_FILE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return { file, missing: true }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    return { file, invalid: `not JSON (${(error as Error).message})` }
  }
  const record = parsed as { url?: unknown; pid?: unknown } | null
  if (typeof record?.url !== 'string' || !Number.isInteger(record.pid) || (record.pid as number) <= 0) return { file, invalid: 'not {"url": "...", "pid": N}' }
  return { url: record.url, pid: record.pid as number, file, alive: processAlive(record.pid as number) }
}

/** Whether a process of this id exists (one of another user counts: it answers EPERM). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The server a command talks to (see the order at the top of this file). */
export function resolveServer(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ServerTarget {
  const e = cliEnv(env)
  const checked = (url: string, source: ServerSource, what: string): ServerTarget => {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new Error(`${what} ${JSON.stringify(url)} is not a URL: give the API's address, e.g. http://127.0.0.1:3000`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`${what} ${JSON.stringify(url)} is not an http(s) URL: give the API's address, e.g. http://127.0.0.1:3000`)
    return { url, source }
  }
  if (flag !== undefined) return checked(flag, { kind: 'flag' }, '--server')
  if (env.PRAXIS_URL) return checked(env.PRAXIS_URL, { kind: 'env' }, 'PRAXIS_URL')
  const dev = readDevServer(devDataDir(env))
  if ('alive' in dev && dev.alive) return checked(dev.url, { kind: 'dev', pid: dev.pid, file: dev.file }, `the URL in ${dev.file}`)
  return { url: defaultServerUrl(e), source: { kind: 'default', host: e.host, port: e.port } }
}

/** "from --server", "from PRAXIS_URL", …: where the URL came from, for messages. */
export function describeSource(source: ServerSource): string {
  switch (source.kind) {
    case 'flag': return 'from --server'
    case 'env': return 'from PRAXIS_URL'
    case 'dev': return `from the running praxis dev (pid ${source.pid}, ${source.file})`
    case 'default': return `the default from HOST and PORT (${source.host}, ${source.port}), as no --server, PRAXIS_URL or running praxis dev gave one`
  }
}

/** What to do when the server of this source does not answer. */
function unreachableFix(source: ServerSource): string {
  switch (source.kind) {
    case 'flag': return 'check the URL given to --server and that the API runs there'
    case 'env': return 'check PRAXIS_URL and that the API runs there (unset it to use a running `praxis dev`), or pass --server URL'
    case 'dev': return `praxis dev (pid ${source.pid}) recorded this address but does not answer on it: wait for it to finish starting, or restart it (\`praxis dev\`), or pass --server URL`
    case 'default': return 'start the API with `praxis dev` (or `npm start`) in another terminal, or pass --server URL, or set PRAXIS_URL (or HOST and PORT)'
  }
}

/** The key from --api-key, PRAXIS_API_KEY, or the one `praxis dev` wrote for its local tenant. */
export async function resolveApiKey(flag: string | undefined, dataDir: string): Promise<string> {
  const key = flag ?? process.env.PRAXIS_API_KEY ?? (await readFile(path.join(dataDir, 'dev-api-key'), 'utf8').catch(() => '')).trim()
  if (!key) throw new Error(`no API key: pass --api-key, set PRAXIS_API_KEY, or run \`praxis dev\` first (it writes ${path.join(dataDir, 'dev-api-key')})`)
  return key
}

/**
 * One HTTP request with node:http(s), not fetch: fetch loads undici on first use, 30 to 50 ms of
 * every command's start-up here.
 */
async function send(url: URL, method: string, headers: Record<string, string>, body: string | undefined): Promise<{ status: number; text: string }> {
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http')
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** A client of the API at `server` (a URL, or a resolved target whose source errors name). */
export function apiClient(server: string | ServerTarget, apiKey: string): ApiClient {
  const target = typeof server === 'string' ? { url: server, source: { kind: 'flag' } as const } : server
  const from = typeof server === 'string' ? '' : `, ${describeSource(target.source)}`
  return {
    async request(method, url, body) {
      let response: { status: number; text: string }
      try {
        response = await send(new URL(url, target.url), method, { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body === undefined ? undefined : JSON.stringify(body))
      } catch (error) {
        const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message
        throw new Error(`cannot reach the Praxis API at ${target.url} (${why}${from}): ${typeof server === 'string' ? 'start it with `praxis dev` or pass --server' : unreachableFix(target.source)}`, { cause: error })
      }
      const { text } = response
      let parsed: unknown = null
      try {
        parsed = text ? JSON.parse(text) : null
      } catch {
        throw new Error(`the server at ${target.url}${from} answered ${method} ${url} with HTTP ${response.status} and no JSON (${JSON.stringify(text.slice(0, 80))}): is it a Praxis API? Pass --server with the API's address`)
      }
      if (response.status < 200 || response.status > 299) throw new ApiError(response.status, parsed as ApiError['body'])
      return parsed
    },
  }
}
