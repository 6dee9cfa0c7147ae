/**
 * The `praxis` command as a user runs it: `node bin/praxis.js …` in a child process, against a real
 * API (test/support/platform.ts, listening on a port) on a test database. Help per command, usage
 * errors that name the command, `--json` for scripts, where the CLI finds its server (--server,
 * PRAXIS_URL, a running `praxis dev`, HOST:PORT) and what it says when that server does not answer.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliEnv, devDataDir } from '../platform/cli/client.js'
import { loadConfig } from '../platform/config.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

interface Ran { code: number | null; stdout: string; stderr: string }

/** Variables that would steer the CLI elsewhere: each test sets the ones it means. */
const STEERING = ['PRAXIS_URL', 'PRAXIS_API_KEY', 'PRAXIS_TENANT', 'HOST', 'PORT', 'PRAXIS_DATA_DIR', 'DATABASE_URL', 'NODE_OPTIONS']
const temps: string[] = []

/** A fresh PRAXIS_DATA_DIR: no dev-server.json or dev-api-key of a real `praxis dev` leaks in. */
function dataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'praxis-cli-'))
  temps.push(dir)
  return dir
}

function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000, cwd?: string): Promise<Ran> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !STEERING.includes(k)))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.resolve('bin/praxis.js'), ...args], { env: { ...base, PRAXIS_DATA_DIR: dataDir(), ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`praxis ${args.join(' ')} ran over ${timeoutMs} ms:\n${stdout}\n${stderr}`)) }, timeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** The id of a process that has ended. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'])
  await new Promise((resolve) => child.once('exit', resolve))
  return child.pid!
}

let p: TestPlatform
let url: string
let instanceId: string
beforeAll(async () => {
  p = await startTestPlatform()
  expect((await p.deploy('test/fixtures/counter')).status).toBe(201)
  await p.startWorker('test/fixtures/counter')
  url = await p.api.listen({ port: 0, host: '127.0.0.1' })
  const started = await p.request('POST', '/v1/workflows/counter/instances', { input: {} })
  instanceId = started.body.id
  expect((await p.request('GET', `/v1/instances/${instanceId}?wait=completed&timeoutMs=30000`)).body.status).toBe('completed')
})
afterAll(async () => {
  await p?.close()
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

describe('help', () => {
  it('praxis --help lists every command and the server it would use, with the real default', async () => {
    const ran = await cli(['--help'], { PORT: '4123', HOST: '127.0.0.9' })
    expect(ran.code, ran.stderr).toBe(0)
    for (const command of ['dev', 'worker', 'pools', 'deploy', 'rollback', 'codegen', 'init', 'check', 'start', 'inspect', 'tenants', 'keys', 'help']) expect(ran.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'))
    expect(ran.stdout).toMatch(/PRAXIS_URL/)
    expect(ran.stdout).toMatch(/dev-server\.json/)
    expect(ran.stdout).toMatch(/4\. http:\/\/HOST:PORT +http:\/\/127\.0\.0\.9:4123/)
    expect(ran.stdout).not.toMatch(/:3000/)
  })

  const options: Record<string, string[]> = {
    dev: ['--no-watch', '--no-demo', '--workers', '--min', '--max', '--idle-ms'],
    worker: ['--tenant', '--api-key', '--pool'],
    pools: ['--tenant', '--api-key', '--min', '--max', '--idle-ms'],
    deploy: ['--dry-run', '--wait', '--timeout-ms', '--json', '--server', '--api-key'],
    rollback: ['--dry-run', '--wait', '--timeout-ms', '--json', '--server', '--api-key'],
    codegen: ['--check', '--from', '--service', '--manifest', '--api-key', '--json'],
    init: ['--name', '--force', '--json'],
    check: ['--json'],
    start: ['--input', '--wait', '--idempotency-key', '--timeout-ms', '--json', '--server', '--api-key'],
    inspect: ['--json', '--server', '--api-key'],
    'tenants create': ['--id', '--json'],
    'tenants list': ['--json'],
    'tenants retention': ['--finished-days', '--events-days', '--running-timeline-days', '--purge'],
    'keys create': ['--tenant', '--label', '--json'],
    'keys list': ['--tenant', '--json'],
    'keys revoke': ['--json'],
  }
  it.each(Object.entries(options))('praxis %s --help exits 0 and lists its options', async (command, flags) => {
    const ran = await cli([...command.split(' '), '--help'])
    expect(ran.code, ran.stderr).toBe(0)
    expect(ran.stdout).toMatch(new RegExp(`^Usage: praxis ${command} `, 'm'))
    for (const flag of flags) expect(ran.stdout).toMatch(new RegExp(`^  (-\\w, )?${flag}\\b`, 'm'))
  })

  it('praxis help <command> prints that command\'s help', async () => {
    const env = { PRAXIS_DATA_DIR: dataDir() }
    const [viaHelp, viaFlag] = await Promise.all([cli(['help', 'start'], env), cli(['start', '--help'], env)])
    expect(viaHelp.code).toBe(0)
    expect(viaHelp.stdout).toMatch(/^Usage: praxis start \[options\] <workflow>/m)
    expect(viaHelp.stdout).toBe(viaFlag.stdout)
  })
})

describe('usage errors', () => {
  it('an unknown command exits 2 naming it, and points to praxis --help', async () => {
    const ran = await cli(['frobnicate'])
    expect(ran.code).toBe(2)
    expect(ran.stdout).toBe('')
    expect(ran.stderr).toMatch(/^error: praxis: unknown command 'frobnicate'/m)
    expect(ran.stderr).toMatch(/`praxis --help`/)
    const sub = await cli(['keys', 'frobnicate'])
    expect(sub.code).toBe(2)
    expect(sub.stderr).toMatch(/^error: praxis keys: unknown command 'frobnicate'/m)
    expect(sub.stderr).toMatch(/`praxis keys --help`/)
  })

  it('an unknown flag exits 2 naming the command and its --help', async () => {
    const ran = await cli(['start', 'counter', '--frobnicate'])
    expect(ran.code).toBe(2)
    expect(ran.stderr).toMatch(/^error: praxis start: unknown option '--frobnicate'/m)
    expect(ran.stderr).toMatch(/`praxis start --help`/)
    const misplaced = await cli(['inspect', instanceId, '--purge'])
    expect(misplaced.code).toBe(2)
    expect(misplaced.stderr).toMatch(/praxis inspect: unknown option '--purge'/)
  })

  it('a bad value names its flag', async () => {
    const input = await cli(['start', 'counter', '--input', '{oops'])
    expect(input.code).toBe(2)
    expect(input.stderr).toMatch(/praxis start: option '--input <json>' argument '\{oops' is invalid\. not valid JSON/)
    const min = await cli(['pools', 'x', '--min', 'many'])
    expect(min.code).toBe(2)
    expect(min.stderr).toMatch(/praxis pools: option '--min <n>' argument 'many' is invalid/)
  })
})

describe('--json', () => {
  it('start --wait --json prints the final instance alone on stdout, progress on stderr', async () => {
    const ran = await cli(['start', 'counter', '--input', '{}', '--wait', '--json', '--server', url, '--api-key', p.apiKey])
    expect(ran.code, ran.stderr).toBe(0)
    const instance = JSON.parse(ran.stdout)
    expect(instance).toMatchObject({ workflow: 'counter', service: 'counter', status: 'completed', result: { reactions: 1 }, facts: { reactions: 1 } })
    expect(instance.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(ran.stderr).toMatch(new RegExp(`started: ${instance.id}`))
    expect(ran.stderr).toMatch(/invocation\.succeeded bump/)
  })

  it('start --json without --wait prints the start answer', async () => {
    const ran = await cli(['start', 'counter', '--json', '--idempotency-key', 'cli-json-once', '--server', url, '--api-key', p.apiKey])
    expect(ran.code, ran.stderr).toBe(0)
    expect(JSON.parse(ran.stdout)).toMatchObject({ created: true, id: expect.any(String), revision: expect.any(Number) })
    const again = await cli(['start', 'counter', '--json', '--idempotency-key', 'cli-json-once', '--server', url, '--api-key', p.apiKey])
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, id: JSON.parse(ran.stdout).id })
  })

  it('inspect --json prints the instance with its whole timeline', async () => {
    const ran = await cli(['inspect', instanceId, '--json', '--server', url, '--api-key', p.apiKey])
    expect(ran.code, ran.stderr).toBe(0)
    expect(ran.stderr).toBe('')
    const inspected = JSON.parse(ran.stdout)
    expect(inspected).toMatchObject({ id: instanceId, status: 'completed', workflow: 'counter', facts: { reactions: 1 } })
    const kinds = inspected.timeline.map((e: { kind: string }) => e.kind)
    expect(kinds[0]).toBe('instance.started')
    expect(kinds).toContain('invocation.succeeded')
    expect(kinds.at(-1)).toBe('instance.completed')
    for (const entry of inspected.timeline) expect(Number.isNaN(Date.parse(entry.at))).toBe(false)
  })

  it('an error with --json is a JSON document on stdout too (the text stays on stderr)', async () => {
    const ran = await cli(['inspect', '00000000-0000-0000-0000-000000000000', '--json', '--server', url, '--api-key', p.apiKey])
    expect(ran.code).toBe(1)
    expect(JSON.parse(ran.stdout)).toMatchObject({ error: { code: 'PRX_INSTANCE_NOT_FOUND', status: 404, message: expect.any(String) } })
    expect(ran.stderr).toMatch(/^error 404 PRX_INSTANCE_NOT_FOUND/)
  })

  it('tenants list, keys create and keys list --json', async () => {
    const env = { DATABASE_URL: p.db.url }
    expect((await cli(['tenants', 'create', 'Json Corp', '--id', 'jsoncorp'], env)).code).toBe(0)
    const tenants = await cli(['tenants', 'list', '--json'], env)
    expect(tenants.code, tenants.stderr).toBe(0)
    expect(JSON.parse(tenants.stdout).tenants).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'jsoncorp', name: 'Json Corp', activeKeys: 0 })]))
    const created = await cli(['keys', 'create', '--tenant', 'jsoncorp', '--label', 'ci', '--json'], env)
    expect(created.code, created.stderr).toBe(0)
    const key = JSON.parse(created.stdout)
    expect(key).toMatchObject({ tenantId: 'jsoncorp', label: 'ci', revokedAt: null })
    expect(key.key).toMatch(new RegExp(`^prx_${key.id}_`))
    const listed = await cli(['keys', 'list', '--tenant', 'jsoncorp', '--json'], env)
    expect(JSON.parse(listed.stdout).keys).toEqual([expect.objectContaining({ id: key.id, label: 'ci', revokedAt: null })])
    expect(listed.stdout).not.toContain(key.key)
  }, 60_000)

  it('deploy --json prints the deploy answer and the run, codegen --json each service', async () => {
    const { createTenant, createApiKey } = await import('../platform/store/index.js')
    await createTenant(p.db.pool, { name: 'Deployer', id: 'deployer' })
    const { key } = await createApiKey(p.db.pool, 'deployer')
    const deployed = await cli(['deploy', 'test/fixtures/counter', '--wait', '--json', '--server', url, '--api-key', key], {}, 120_000)
    expect(deployed.code, deployed.stderr).toBe(0)
    const answer = JSON.parse(deployed.stdout)
    expect(answer.deployment).toMatchObject({ service: 'counter', version: 1, created: true, unservedPools: ['counter:default'] })
    expect(answer).toHaveProperty('run')
    expect(deployed.stderr).toMatch(/deployed: counter version 1/)
    const generated = await cli(['codegen', '--check', 'test/fixtures/counter', '--json'], {}, 120_000)
    expect(generated.code, generated.stderr).toBe(0)
    const result = JSON.parse(generated.stdout)
    expect(result).toMatchObject({ check: true, stale: [], services: [{ dir: 'test/fixtures/counter', service: 'counter', functions: 1, workflows: 1 }] })
    expect(result.services[0].files.every((f: { state: string }) => f.state === 'unchanged')).toBe(true)
  }, 180_000)
})

describe('start --wait', () => {
  it("stamps each event with its time in the timeline (ms after the instance's creation), not when it was printed", async () => {
    const ran = await cli(['start', 'counter', '--wait', '--server', url, '--api-key', p.apiKey])
    expect(ran.code, ran.stderr).toBe(0)
    const id = /^started: (\S+)/m.exec(ran.stdout)![1]!
    const printed = ran.stdout.split('\n').flatMap((line) => {
      const m = /^\s*(-?\d+) ms {2}(\S+)/.exec(line)
      return m ? [[Number(m[1]), m[2]] as const] : []
    })
    const created = Date.parse((await p.request('GET', `/v1/instances/${id}`)).body.createdAt)
    const { entries } = (await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)).body
    const expected = entries.map((e: { at: string; kind: string }) => [Math.round(Date.parse(e.at) - created), e.kind])
    expect(printed).toEqual(expected)
  })
})

describe('server discovery', () => {
  /** A dev-server.json as `praxis dev` writes it, in a data dir of its own. */
  const devRecord = (record: { url: string; pid: number }): string => {
    const dir = dataDir()
    writeFileSync(path.join(dir, 'dev-server.json'), JSON.stringify(record) + '\n')
    return dir
  }
  const inspect = (env: Record<string, string>, ...flags: string[]) => cli(['inspect', instanceId, '--json', ...flags], { PRAXIS_API_KEY: p.apiKey, ...env })

  it('--server beats PRAXIS_URL, which beats a running praxis dev, which beats HOST:PORT', async () => {
    const nowhere = `http://127.0.0.1:${await closedPort()}`
    const live = devRecord({ url: nowhere, pid: process.pid })
    const flag = await inspect({ PRAXIS_URL: nowhere, PRAXIS_DATA_DIR: live, PORT: String(await closedPort()) }, '--server', url)
    expect(flag.code, flag.stderr).toBe(0)
    expect(JSON.parse(flag.stdout).id).toBe(instanceId)
    const env = await inspect({ PRAXIS_URL: url, PRAXIS_DATA_DIR: live })
    expect(env.code, env.stderr).toBe(0)
    const dev = await inspect({ PRAXIS_DATA_DIR: devRecord({ url, pid: process.pid }), PORT: String(await closedPort()) })
    expect(dev.code, dev.stderr).toBe(0)
    const port = new URL(url).port
    const fallback = await inspect({ HOST: '127.0.0.1', PORT: port })
    expect(fallback.code, fallback.stderr).toBe(0)
  })

  it('finds the praxis dev of the project from a folder inside it (its .praxis is in a folder above)', () => {
    const project = mkdtempSync(path.join(tmpdir(), 'praxis-project-'))
    try {
      mkdirSync(path.join(project, '.praxis'))
      writeFileSync(path.join(project, '.praxis', 'dev-server.json'), JSON.stringify({ url: 'http://127.0.0.1:1', pid: process.pid }) + '\n')
      const inner = path.join(project, 'orders', 'generated')
      mkdirSync(inner, { recursive: true })
      expect(devDataDir({}, inner)).toBe(path.join(project, '.praxis'))
      expect(devDataDir({}, project)).toBe('.praxis')
      expect(devDataDir({ PRAXIS_DATA_DIR: '/elsewhere' }, inner)).toBe('/elsewhere')
    } finally {
      rmSync(project, { recursive: true, force: true })
    }
  })

  it("ignores the record of a praxis dev whose process has ended", async () => {
    const stale = devRecord({ url, pid: await deadPid() })
    const port = await closedPort()
    const ran = await inspect({ PRAXIS_DATA_DIR: stale, PORT: String(port) })
    expect(ran.code).toBe(1)
    expect(ran.stderr).toMatch(new RegExp(`cannot reach the Praxis API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED, the default from HOST and PORT`))
  })

  it('says where an unreachable URL came from, and what to do', async () => {
    const nowhere = `http://127.0.0.1:${await closedPort()}`
    const flag = await inspect({}, '--server', nowhere)
    expect(flag.code).toBe(1)
    expect(flag.stderr).toMatch(/cannot reach the Praxis API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED, from --server\): check the URL given to --server/)
    const env = await inspect({ PRAXIS_URL: nowhere })
    expect(env.stderr).toMatch(/\(ECONNREFUSED, from PRAXIS_URL\): check PRAXIS_URL/)
    const dev = await inspect({ PRAXIS_DATA_DIR: devRecord({ url: nowhere, pid: process.pid }) })
    expect(dev.stderr).toMatch(new RegExp(`\\(ECONNREFUSED, from the running praxis dev \\(pid ${process.pid}, .*dev-server\\.json\\)\\): praxis dev \\(pid ${process.pid}\\) recorded this address`))
    const fallback = await inspect({ PORT: new URL(nowhere).port })
    expect(fallback.stderr).toMatch(/the default from HOST and PORT \(127\.0\.0\.1, \d+\).*: start the API with `praxis dev`/)
    const bad = await inspect({ PRAXIS_URL: 'localhost:3000' })
    expect(bad.stderr).toMatch(/PRAXIS_URL "localhost:3000" is not an http\(s\) URL/)
  })

  it("reads HOST, PORT and PRAXIS_DATA_DIR as platform/config.ts does", () => {
    for (const env of [{}, { PORT: '4000', HOST: '0.0.0.0', PRAXIS_DATA_DIR: '/tmp/x' }, { PORT: '' }, { PORT: ' 17 ' }]) {
      const config = loadConfig(env)
      expect(cliEnv(env), JSON.stringify(env)).toEqual({ host: config.host, port: config.port, dataDir: config.dataDir })
    }
    for (const PORT of ['abc', '70000', '1.5', '-1']) {
      expect(() => loadConfig({ PORT })).toThrow(/PORT/)
      expect(() => cliEnv({ PORT })).toThrow(/PORT/)
    }
  })
})

describe('the default service folders', () => {
  it("codegen and check without folders take the project's services, as praxis dev finds them", async () => {
    // A project holding one service a level down (under test/, so its relative SDK imports resolve).
    const project = mkdtempSync(path.resolve('test', '.tmp-cli-project-'))
    try {
      cpSync('test/fixtures/counter', path.join(project, 'counter'), { recursive: true })
      const ran = await cli(['codegen', '--json'], {}, 60_000, project)
      expect(ran.code, ran.stderr).toBe(0)
      expect(JSON.parse(ran.stdout).services.map((s: { service: string }) => s.service)).toEqual(['counter'])
    } finally {
      rmSync(project, { recursive: true, force: true })
    }
  })
})

describe('bin/praxis.js', () => {
  it('passes a signal on to the command it started again with --no-node-snapshot, and exits as a shell would (128 + the signal)', async () => {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !STEERING.includes(k)))
    // codegen runs rule code in the sandbox: started without the flag, the CLI starts itself again with it.
    const child = spawn(process.execPath, ['bin/praxis.js', 'codegen', '--check', 'test/fixtures/counter'], { env: { ...base, PRAXIS_DATA_DIR: dataDir() }, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    // Its first line comes from the command itself, in the second process.
    await new Promise<void>((resolve) => child.stderr!.once('data', () => resolve()))
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
  })
})

describe('praxis dev', () => {
  let dev: ChildProcess | undefined
  afterAll(() => { if (dev && dev.exitCode === null) process.kill(-dev.pid!, 'SIGKILL') })

  it('records where its API listens; start --wait then finds it with no flag; Ctrl-C stops it once; then the record is ignored', async () => {
    const dir = dataDir()
    // Started without --no-node-snapshot: bin/praxis.js starts dev again with it. In a process
    // group of its own, signalled as a terminal's Ctrl-C signals it: the whole group.
    dev = spawn(process.execPath, ['bin/praxis.js', 'dev', 'test/fixtures/counter', '--no-demo', '--no-watch'], {
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !STEERING.includes(k))), DATABASE_URL: p.db.url, PRAXIS_DATA_DIR: dir, PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    })
    const exited = new Promise<number | null>((resolve) => dev!.once('exit', (code) => resolve(code)))
    let out = ''
    dev.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    const deadline = Date.now() + 120_000
    while (!/^\[5\/5\]/m.test(out)) {
      if (Date.now() > deadline || dev.exitCode !== null) throw new Error(`praxis dev did not get ready:\n${out}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const listening = /API listening on (\S+)/.exec(out)![1]!
    const record = JSON.parse(readFileSync(path.join(dir, 'dev-server.json'), 'utf8'))
    expect(record.url).toBe(listening)
    expect(record.pid).not.toBe(dev.pid) // the child bin/praxis.js started with --no-node-snapshot

    const port = String(await closedPort())
    const ran = await cli(['start', 'counter', '--wait', '--json'], { PRAXIS_DATA_DIR: dir, PORT: port })
    expect(ran.code, ran.stderr).toBe(0)
    expect(JSON.parse(ran.stdout)).toMatchObject({ status: 'completed', result: { reactions: 1 } })
    const help = await cli(['start', '--help'], { PRAXIS_DATA_DIR: dir, PORT: port })
    expect(help.stdout).toContain(`without --server, now:      ${listening}  (3.)`)

    // Ctrl-C: dev gets SIGINT from the group and again from bin/praxis.js, and stops once, gracefully.
    process.kill(-dev.pid!, 'SIGINT')
    expect(await exited, out).toBe(0)
    expect(out).toMatch(/^stopping: /m)
    // The record went with the server.
    expect(existsSync(path.join(dir, 'dev-server.json'))).toBe(false)
    const after = await cli(['inspect', JSON.parse(ran.stdout).id], { PRAXIS_DATA_DIR: dir, PORT: port })
    expect(after.code).toBe(1)
    expect(after.stderr).toMatch(/the default from HOST and PORT/)
  }, 180_000)
})
