/**
 * CLI start-up benchmark (`npm run bench -- --only cli`): how long a `praxis` command takes as a
 * user runs it, a whole Node process from spawn to exit, next to `node -e 0` (Node's own start-up,
 * the floor) measured in the same run, interleaved. Commands:
 *
 *   praxis --help, praxis start --help   nothing but the CLI and its help
 *   praxis inspect <id>                  against a running API (this process, on an embedded
 *                                        PostgreSQL of its own): an instance of bench/fixtures/queue
 *                                        waiting on its call, with its timeline
 *   praxis start retried                 a real start (POST), no --wait
 *
 * For inspect and start, also the time from spawn to the request's arrival at the API (its first
 * request): what a user waits before anything happens. Each child runs with a PRAXIS_DATA_DIR of
 * its own (no running `praxis dev` is found) and --server / --api-key given. Target: --help,
 * start --help and inspect within 300 ms on this machine.
 *
 * Sizes: BENCH_CLI_RUNS (15) rounds; each round runs every command once, in a rotated order.
 * BENCH_CLI_COMPARE=<folder of another checkout> measures that checkout's bin/praxis.js too, in
 * the same rounds (e.g. the main branch, for a before/after), as rows `… (compared)`.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pino from 'pino'
import { buildApi } from '../platform/api/index.js'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, startEmbedded } from '../platform/store/index.js'
import type { RecordRow } from './sandbox.js'

const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 15)
const COMPARE = process.env.BENCH_CLI_COMPARE ? path.resolve(process.env.BENCH_CLI_COMPARE) : null
const SERVICE_DIR = 'bench/fixtures/queue'
const TARGET_MS = 300

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

interface Timed { ms: number; firstRequestMs: number | null }

export async function benchCli(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const dataDir = path.resolve('.praxis', 'bench-cli-pg')
  await rm(dataDir, { recursive: true, force: true })
  progress('[cli] starting embedded PostgreSQL and an API…')
  const server = await startEmbedded({ dataDir, port: 55300 + (process.pid % 90) })
  const childData = await mkdtemp(path.join(tmpdir(), 'praxis-bench-cli-'))
  const pool = createPool(server.urlFor('bench'), 10)
  let api: Awaited<ReturnType<typeof buildApi>> | undefined
  try {
    await ensureDatabase(server.adminUrl, 'bench')
    await migrate(pool)
    const { apiKey } = await ensureTenant(pool, 'bench')
    api = await buildApi({ pool, databaseUrl: server.urlFor('bench'), log: pino({ level: 'silent' }) })
    // When a child's request arrives: its first request is the first one after its spawn.
    const arrivals: number[] = []
    api.addHook('onRequest', async () => { arrivals.push(performance.now()) })
    const url = await api.listen({ port: 0, host: '127.0.0.1' })
    const call = async (method: string, route: string, body?: unknown): Promise<any> => {
      const response = await fetch(new URL(route, url), { method, headers: { authorization: `Bearer ${apiKey}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) })
      if (!response.ok) throw new Error(`cli bench: ${method} ${route}: ${response.status} ${await response.text()}`)
      return response.json()
    }
    await call('POST', '/v1/services/queue/deployments', { code: (await buildBundle(SERVICE_DIR)).code, manifest: await readGeneratedManifest(SERVICE_DIR) })
    const { id } = await call('POST', '/v1/workflows/retried/instances', { input: { tag: 'cli-bench' } })

    // A compared CLI may exit non-zero where this one does not (main's `praxis --help` exits 2).
    const run = (args: string[], compared = false): Promise<Timed> => new Promise((resolve, reject) => {
      const { PRAXIS_URL: _u, PRAXIS_API_KEY: _k, ...env } = process.env
      const t0 = performance.now()
      const child = spawn(process.execPath, args, { env: { ...env, PRAXIS_DATA_DIR: childData }, stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
      child.once('exit', (code) => {
        const ms = performance.now() - t0
        if (code !== 0 && !compared) return reject(new Error(`cli bench: node ${args.join(' ')} exited ${code}: ${stderr}`))
        const first = arrivals.find((t) => t >= t0)
        resolve({ ms, firstRequestMs: first === undefined ? null : first - t0 })
      })
    })
    const auth = ['--server', url, '--api-key', apiKey]
    const commands = (bin: string, suffix: string): [string, string[], boolean][] => [
      [`praxis --help${suffix}`, [bin, '--help'], false],
      [`praxis start --help${suffix}`, [bin, 'start', '--help'], false],
      [`praxis inspect <id>${suffix}`, [bin, 'inspect', id, ...auth], true],
      [`praxis start retried${suffix}`, [bin, 'start', 'retried', '--input', '{"tag":"cli-bench-start"}', ...auth], true],
    ]
    const measured: [string, string[], boolean][] = [
      ['node -e 0', ['-e', '0'], false],
      ...commands('bin/praxis.js', ''),
      ...(COMPARE ? commands(path.join(COMPARE, 'bin', 'praxis.js'), ' (compared)') : []),
    ]
    const times = new Map<string, number[]>(measured.map(([name]) => [name, []]))
    const firsts = new Map<string, number[]>(measured.map(([name]) => [name, []]))
    // One warm-up round: the file system cache, tsx's transform cache.
    const compared = (name: string): boolean => name.endsWith('(compared)')
    for (const [name, args] of measured) await run(args, compared(name))
    for (let round = 0; round < RUNS; round++) {
      if (round % 5 === 0) progress(`[cli] round ${round + 1}/${RUNS}: ${measured.length} commands…`)
      const order = measured.map((_, i) => measured[(i + round) % measured.length]!)
      for (const [name, args, requests] of order) {
        const t = await run(args, compared(name))
        times.get(name)!.push(t.ms)
        if (requests && t.firstRequestMs !== null) firsts.get(name)!.push(t.firstRequestMs)
      }
    }
    const floor = median(times.get('node -e 0')!)
    record('cli', 'node -e 0, whole process, median', floor, 'ms', null)
    for (const [name, , requests] of measured.slice(1)) {
      const ms = median(times.get(name)!)
      const fast = /--help|inspect/.test(name) && !compared(name)
      record('cli', `${name}, whole process, median`, ms, 'ms', floor, fast ? { text: `≤ ${TARGET_MS} ms`, met: ms <= TARGET_MS } : undefined)
      if (requests && firsts.get(name)!.length > 0) record('cli', `${name}, spawn to its first request, median`, median(firsts.get(name)!), 'ms', floor)
    }
  } finally {
    await api?.close()
    await pool.end()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
    await rm(childData, { recursive: true, force: true })
  }
}
