/**
 * `praxis codegen` on throwaway services written under test/.tmp-codegen-<random>/: which
 * definitions it finds and how it reads their options and schemas statically, the errors it
 * reports (with file and line), byte-for-byte determinism, `--check` (API and CLI), stubs whose
 * schemas accept and reject what the originals do, and rules bundles that never carry handlers.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codegen, CodegenError } from '../codegen/index.js'
import { buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import type { ServiceManifest } from '../sdk/index.js'

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)))
const SDK_ENTRY = path.join(ROOT, 'sdk', 'index.js')
const run = promisify(execFile)

let tmp: string
beforeAll(async () => {
  tmp = await mkdtemp(path.join(ROOT, 'test', '.tmp-codegen-'))
})
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

/** Writes a service folder under the temp root; `'@sdk'` in a file stands for the SDK's relative path. */
async function service(name: string, files: Record<string, string>): Promise<string> {
  const dir = path.join(tmp, name)
  await mkdir(dir, { recursive: true })
  for (const [file, text] of Object.entries(files)) await write(dir, file, text)
  return dir
}

async function write(dir: string, file: string, text: string): Promise<void> {
  await writeFile(path.join(dir, file), text.replaceAll('@sdk', path.relative(dir, SDK_ENTRY).split(path.sep).join('/')))
}

/** Every file under `dir/generated`, by path relative to the service folder. */
async function generated(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, sub), { withFileTypes: true })) {
      const relative = path.join(sub, entry.name)
      if (entry.isDirectory()) await walk(relative)
      else out.set(relative.split(path.sep).join('/'), await readFile(path.join(dir, relative)))
    }
  }
  await walk('generated')
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)))
}

async function manifestOf(dir: string): Promise<ServiceManifest> {
  return JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8')) as ServiceManifest
}

/** The 1-based line of the first occurrence of `needle` in `text`. */
function lineOf(text: string, needle: string): number {
  const index = text.indexOf(needle)
  if (index < 0) throw new Error(`fixture has no ${JSON.stringify(needle)}`)
  return text.slice(0, index).split('\n').length
}

async function codegenError(dir: string): Promise<CodegenError> {
  const error = await codegen({ dir }).then(() => null, (e: unknown) => e)
  expect(error).toBeInstanceOf(CodegenError)
  return error as CodegenError
}

type Schema = { safeParse(value: unknown): { success: boolean; data?: unknown } }
type Module = Record<string, { name: string; pool: string; timeoutMs: number; input: Schema; output: Schema }>
const load = async (file: string): Promise<Module> => (await import(pathToFileURL(file).href)) as Module

/** The export `name` of a module of the temp service (the original or a generated one). */
async function exported(file: string, name: string): Promise<Module[string]> {
  const value = (await load(file))[name]
  if (!value) throw new Error(`${file} exports no ${name}`)
  return value
}

/** One function and one workflow calling it through its generated stub: the smallest service with a rules side. */
const PING_FUNCTIONS = `import { z } from 'zod'
import { defineFunction } from '@sdk'

export const ping = defineFunction({
  name: 'ping',
  input: z.object({ n: z.number().int() }),
  output: z.object({ n: z.number().int() }),
  handler: ({ n }) => ({ n }),
})
`
const pingWorkflow = (from: string): string => `import { z } from 'zod'
import { defineWorkflow } from '@sdk'
import { ping } from '${from}'

export const pinger = defineWorkflow({
  name: 'pinger',
  input: z.object({}),
  facts: z.object({ stage: z.enum(['new', 'pinging', 'done']).default('new') }),
  init: () => ({}),
  rules: (rule) => [
    rule('ping')
      .match((f) => f.stage.eq('new'))
      .action((_facts, ctx) => {
        ctx.set({ stage: 'pinging' })
        return ctx.call(ping, { n: 1 })
      })
      .reaction((_facts, _out, ctx) => ctx.set({ stage: 'done' })),
    rule('finish')
      .match((f) => f.stage.eq('done'))
      .action((_facts, ctx) => ctx.complete({})),
  ],
})
`

describe('codegen', () => {
  it('finds functions wherever declared and however exported, and reads their options and schemas statically', async () => {
    const files = {
      'schemas.ts': `import { z } from 'zod'
export const Id = z.string().uuid()
export const KINDS = ['small', 'large'] as const
export const Base = { id: Id, kind: z.enum(KINDS) }
export const RETRY = { attempts: 5, backoff: 'fixed' } as const
export const LONG = 120_000
`,
      'more.ts': `import { z } from 'zod'
import { defineFunction as df } from '@sdk'
import { Id } from './schemas.js'

export const epsilon = df({
  name: 'epsilon',
  pool: 'extra',
  input: z.object({ id: Id }),
  output: z.object({}),
  handler: () => ({}),
})
`,
      'functions.ts': `import { z } from 'zod'
import * as sdk from '@sdk'
import { defineFunction } from '@sdk'
import { Base, LONG, RETRY } from './schemas.js'
export * from './more.js'

export const alpha = defineFunction({
  name: 'alpha',
  timeoutMs: LONG,
  retry: RETRY,
  input: z.object({ ...Base, n: z.number().int() }),
  output: z.object({ ok: z.boolean() }),
  handler: () => ({ ok: 'HANDLER-ONLY' === String(Date.now()) }),
})

const b = defineFunction({
  name: 'beta',
  input: z.object({ s: z.string() }),
  output: z.string(),
  handler: ({ s }) => s,
})
export { b as bee }

export const group = {
  c: defineFunction({ name: 'gamma', pool: 'gpu' as const, input: z.object({}), output: z.null(), handler: () => null }),
}

export const zeta = sdk.defineFunction({
  name: 'zeta-v2',
  timeoutMs: 5_000,
  input: z.object({ x: z.number() }),
  output: z.object({ x: z.number() }),
  handler: (input) => input,
})

export default defineFunction({
  name: 'delta',
  retry: { initialDelayMs: 1_000 },
  input: z.object({ v: z.string() }),
  output: z.object({ v: z.string() }),
  handler: (input) => input,
})
`,
    }
    const dir = await service('discovery', files)
    const result = await codegen({ dir })
    expect(result).toMatchObject({ service: 'discovery', functions: 6, workflows: 0, layers: [] })

    const defaults = { attempts: 3, backoff: 'exponential', initialDelayMs: 200, maxDelayMs: 30000 }
    const at = (file: 'functions.ts' | 'more.ts', needle: string): string => `${file}:${lineOf(files[file], needle)}`
    const manifest = await manifestOf(dir)
    expect(manifest.functions.map(({ name, pool, timeoutMs, retry, source }) => ({ name, pool, timeoutMs, retry, source }))).toEqual([
      { name: 'alpha', pool: 'default', timeoutMs: 120000, retry: { ...defaults, attempts: 5, backoff: 'fixed' }, source: at('functions.ts', 'alpha = defineFunction(') },
      { name: 'beta', pool: 'default', timeoutMs: 60000, retry: defaults, source: at('functions.ts', 'b = defineFunction(') },
      { name: 'delta', pool: 'default', timeoutMs: 60000, retry: { ...defaults, initialDelayMs: 1000 }, source: at('functions.ts', 'export default defineFunction(') },
      { name: 'epsilon', pool: 'extra', timeoutMs: 60000, retry: defaults, source: at('more.ts', 'epsilon = df(') },
      { name: 'gamma', pool: 'gpu', timeoutMs: 60000, retry: defaults, source: at('functions.ts', 'c: defineFunction(') },
      { name: 'zeta-v2', pool: 'default', timeoutMs: 5000, retry: defaults, source: at('functions.ts', 'zeta = sdk.defineFunction(') },
    ])
    // The spread of a const object (from another file), an `as const` tuple and a const schema, resolved.
    expect(manifest.functions[0]!.input).toMatchObject({
      type: 'object',
      properties: { id: { type: 'string', format: 'uuid' }, kind: { type: 'string', enum: ['small', 'large'] }, n: { type: 'integer' } },
      required: ['id', 'kind', 'n'],
    })
    expect(manifest.functions[3]!.input).toMatchObject({ properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] })

    // One stub per function, exported under (an identifier of) the function's name, not the variable's.
    const text = await readFile(path.join(dir, 'generated', 'functions.ts'), 'utf8')
    expect(text).not.toContain('HANDLER-ONLY')
    expect(text).not.toContain('handler')
    const stubs = await load(path.join(dir, 'generated', 'functions.ts'))
    expect(Object.keys(stubs).sort()).toEqual(['alpha', 'beta', 'delta', 'epsilon', 'gamma', 'zetaV2'])
    expect(Object.entries(stubs).map(([id, stub]) => [id, stub.name, stub.pool, stub.timeoutMs])).toEqual(expect.arrayContaining([
      ['alpha', 'alpha', 'default', 120000], ['beta', 'beta', 'default', 60000], ['delta', 'delta', 'default', 60000],
      ['epsilon', 'epsilon', 'extra', 60000], ['gamma', 'gamma', 'gpu', 60000], ['zetaV2', 'zeta-v2', 'default', 5000],
    ]))
  })

  it('reports what it cannot read with its code, file and line, and writes nothing', async () => {
    const fn = (input: string, prelude = ''): string => `import { z } from 'zod'
import { defineFunction } from '@sdk'
${prelude}
export const f = defineFunction({
  name: 'f',
  input: z.object({ a: ${input} }),
  output: z.object({}),
  handler: () => ({}),
})
`
    const cases: { name: string; source: string; code: string; needle?: string; says: RegExp }[] = [
      { name: 'call', source: fn('make()', 'const make = () => z.string()'), code: 'PRX_CODEGEN_NOT_STATIC', needle: 'make()', says: /cannot be read statically/ },
      // Source cannot smuggle a call of anything but a zod builder (it once could: Function via .constructor).
      { name: 'forged', source: fn("z.literal(c('return 1')())", "const c = { schemaMethod: 'constructor', of: z.string }"), code: 'PRX_CODEGEN_NOT_STATIC', says: /cannot be read statically/ },
      { name: 'constructor', source: fn("z.literal(z.string()['constructor']('return 1')())"), code: 'PRX_CODEGEN_NOT_STATIC', says: /cannot be read statically/ },
      { name: 'pool', source: fn('z.string()').replace("name: 'f',", "name: 'f', pool: 'no spaces allowed',"), code: 'PRX_CODEGEN_INVALID', needle: 'defineFunction({', says: /pool: must be a pool name/ },
      { name: 'flags', source: fn('z.string().regex(/^abc$/i)'), code: 'PRX_CODEGEN_UNSUPPORTED_SCHEMA', needle: '/^abc$/i', says: /has flags \(i\)/ },
      { name: 'refine', source: fn('z.string().refine((s) => s.length > 2)'), code: 'PRX_CODEGEN_UNSUPPORTED_SCHEMA', needle: 'refine', says: /\.refine\(/ },
      { name: 'transform', source: fn('z.string().transform((s) => s.length)'), code: 'PRX_CODEGEN_UNSUPPORTED_SCHEMA', needle: 'transform', says: /\.transform\(/ },
      { name: 'date', source: fn('z.date()'), code: 'PRX_CODEGEN_UNSUPPORTED_SCHEMA', needle: 'z.date()', says: /\.date\(/ },
      { name: 'let', source: fn('S', 'let S = z.string()\nS = z.string().min(1)'), code: 'PRX_CODEGEN_NOT_STATIC', needle: 'let S', says: /let or var/ },
    ]
    for (const c of cases) {
      const dir = await service(`error-${c.name}`, { 'functions.ts': c.source })
      const error = await codegenError(dir)
      expect(error.code, c.name).toBe(c.code)
      expect(error.message, c.name).toMatch(/functions\.ts:\d+/)
      expect(error.message, c.name).toMatch(c.says)
      if (c.needle) expect(error.message, c.name).toContain(`functions.ts:${lineOf(c.source, c.needle)}:`)
      expect(existsSync(path.join(dir, 'generated')), c.name).toBe(false)
    }

    const one = `import { z } from 'zod'
import { defineFunction } from '@sdk'
export * from './other.js'

export const f = defineFunction({ name: 'same', input: z.object({}), output: z.object({}), handler: () => ({}) })
`
    const other = `import { z } from 'zod'
import { defineFunction } from '@sdk'

export const g = defineFunction({
  name: 'same', input: z.object({}), output: z.object({}), handler: () => ({}),
})
`
    const duplicate = await codegenError(await service('error-duplicate', { 'functions.ts': one, 'other.ts': other }))
    expect(duplicate.code).toBe('PRX_CODEGEN_DUPLICATE')
    expect(duplicate.message).toContain(`functions.ts:${lineOf(one, 'defineFunction({')}`)
    expect(duplicate.message).toContain(`other.ts:${lineOf(other, 'defineFunction({')}`)
    expect(duplicate.message).toContain('"same"')

    const unresolved = `import { z } from 'zod'
import { defineFunction } from './no-such-sdk.js'

export const f = defineFunction({ name: 'f', input: z.object({}), output: z.object({}), handler: () => ({}) })
`
    const wrongImport = await codegenError(await service('error-import', { 'functions.ts': unresolved }))
    expect(wrongImport.code).toBe('PRX_CODEGEN_NOT_STATIC')
    expect(wrongImport.message).toContain(`functions.ts:${lineOf(unresolved, 'defineFunction({')}:`)
    expect(wrongImport.message).toMatch(/"\.\/no-such-sdk\.js", which does not resolve/)

    const empty = await service('error-empty', { 'index.ts': 'export const x = 1\n' })
    const none = await codegenError(empty)
    expect(none.code).toBe('PRX_CODEGEN_NO_SERVICE')
    expect(none.message).toContain(empty)
    expect(existsSync(path.join(empty, 'generated'))).toBe(false)
  })

  it('writes byte-identical files on every run, from any working directory', async () => {
    const dir = await service('determinism', { 'functions.ts': PING_FUNCTIONS, 'workflows.ts': pingWorkflow('./generated/functions.js') })
    const first = await codegen({ dir })
    expect(first.files.map((f) => [f.path, f.state])).toEqual([
      ['generated/client.ts', 'written'], ['generated/functions.ts', 'written'], ['generated/manifest.json', 'written'], ['generated/workflows.ts', 'written'],
    ])
    expect(first).toMatchObject({ functions: 1, workflows: 1 })
    const bytes = await generated(dir)
    expect([...bytes.keys()]).toEqual(['generated/client.ts', 'generated/functions.ts', 'generated/manifest.json', 'generated/workflows.ts'])
    expect((await manifestOf(dir)).workflows[0]!.rules.map((r) => r.name)).toEqual(['ping', 'finish'])

    // From scratch again, then from another working directory.
    await rm(path.join(dir, 'generated'), { recursive: true })
    await codegen({ dir })
    expect(await generated(dir)).toEqual(bytes)
    await rm(path.join(dir, 'generated'), { recursive: true })
    const cwd = process.cwd()
    try {
      process.chdir(os.tmpdir())
      await codegen({ dir })
    } finally {
      process.chdir(cwd)
    }
    const again = await generated(dir)
    for (const [file, content] of bytes) expect(content.equals(again.get(file)!), file).toBe(true)
    expect([...again.keys()]).toEqual([...bytes.keys()])

    // Each .ts file names the command that regenerates it, with the folder relative to the repo root.
    const relative = path.relative(ROOT, dir).split(path.sep).join('/')
    expect(relative).toMatch(/^test\/\.tmp-codegen-[^/]+\/determinism$/)
    for (const [file, content] of bytes) {
      if (file.endsWith('.ts')) expect(content.toString('utf8').split('\n')[0], file).toMatch(new RegExp(`^// Generated by \`praxis codegen ${relative.replaceAll('.', '\\.')}\` `))
    }
  })

  it('--check names stale files without writing, and a run removes generated files no longer produced', async () => {
    const source = PING_FUNCTIONS
    const dir = await service('check', { 'functions.ts': source })
    await codegen({ dir })
    const states = async (): Promise<[string, string][]> => (await codegen({ dir, check: true })).files.map((f) => [f.path, f.state])
    expect(await states()).toEqual([
      ['generated/client.ts', 'unchanged'], ['generated/functions.ts', 'unchanged'], ['generated/manifest.json', 'unchanged'], ['generated/workflows.ts', 'unchanged'],
    ])

    await write(dir, 'functions.ts', source.replace('input: z.object({ n: z.number().int() })', 'input: z.object({ n: z.number().int().min(10) })'))
    const before = await generated(dir)
    expect(await states()).toEqual([
      ['generated/client.ts', 'unchanged'], ['generated/functions.ts', 'stale'], ['generated/manifest.json', 'stale'], ['generated/workflows.ts', 'unchanged'],
    ])
    expect(await generated(dir)).toEqual(before)

    // A generated file codegen no longer produces (a removed layer, say) is stale; a user's own file is not.
    await writeFile(path.join(dir, 'generated', 'old.ts'), '// Generated by `praxis codegen somewhere` from an old source.\nexport const old = 1\n')
    await writeFile(path.join(dir, 'generated', '.gitignore'), 'scratch/\n')
    expect(await states()).toContainEqual(['generated/old.ts', 'stale'])
    expect((await states()).map(([file]) => file)).not.toContain('generated/.gitignore')
    expect(existsSync(path.join(dir, 'generated', 'old.ts'))).toBe(true)

    const written = await codegen({ dir })
    expect(written.files.map((f) => [f.path, f.state])).toEqual([
      ['generated/client.ts', 'unchanged'], ['generated/functions.ts', 'written'], ['generated/manifest.json', 'written'], ['generated/workflows.ts', 'unchanged'],
      ['generated/old.ts', 'removed'],
    ])
    expect(existsSync(path.join(dir, 'generated', 'old.ts'))).toBe(false)
    expect(existsSync(path.join(dir, 'generated', '.gitignore'))).toBe(true)
    expect(await readFile(path.join(dir, 'generated', 'functions.ts'), 'utf8')).toContain('input: z.object({ n: z.int().gte(10) })')
    expect((await states()).every(([, state]) => state === 'unchanged')).toBe(true)
  })

  it('praxis codegen --check exits non-zero and prints every stale file', async () => {
    const dir = await service('cli', { 'functions.ts': PING_FUNCTIONS })
    await codegen({ dir })
    await write(dir, 'functions.ts', PING_FUNCTIONS.replace("name: 'ping'", "name: 'ping', pool: 'elsewhere'"))
    const before = await generated(dir)
    const relative = path.relative(ROOT, dir)
    const failure = await run(process.execPath, ['bin/praxis.js', 'codegen', '--check', relative], { cwd: ROOT }).then(
      () => null,
      (error: { code?: number; stdout?: string; stderr?: string }) => error,
    )
    expect(failure).not.toBeNull()
    expect(failure!.code).toBe(1) // a non-zero exit: the CLI's failure code
    const lines = failure!.stdout!.split('\n').filter((line) => line.startsWith('stale: '))
    expect(lines).toEqual([`stale: ${path.join(relative, 'generated/functions.ts')}`, `stale: ${path.join(relative, 'generated/manifest.json')}`])
    expect(failure!.stderr).toContain('2 generated files are stale')
    expect(await generated(dir)).toEqual(before)

    // praxis deploy refuses to ship rules built on stale stubs, before it talks to any server.
    const deploy = await run(process.execPath, ['bin/praxis.js', 'deploy', relative, '--server', 'http://127.0.0.1:9', '--api-key', 'k'], { cwd: ROOT }).then(
      () => null,
      (error: { code?: number; stderr?: string }) => error,
    )
    expect(deploy?.code).toBe(1)
    expect(deploy?.stderr).toMatch(/generated code of cli is stale \(.*generated\/functions\.ts.*\): run `praxis codegen/)
  })

  it('generates stubs whose schemas accept and reject what the original schemas do', async () => {
    const dir = await service('roundtrip', {
      'functions.ts': `import { z } from 'zod'
import { defineFunction } from '@sdk'

export const check = defineFunction({
  name: 'check',
  input: z.object({
    name: z.string().min(3).max(10),
    count: z.number().int().nonnegative(),
    ratio: z.number().gt(0).lte(1),
    kind: z.enum(['a', 'b']),
    note: z.string().optional(),
    level: z.number().default(5),
    parent: z.object({ id: z.string() }).nullable(),
    choice: z.enum(['x', 'y']).nullable(),
    scores: z.record(z.string(), z.number()),
    pair: z.tuple([z.string(), z.number()]),
    shape: z.union([z.object({ kind: z.literal('circle'), r: z.number() }), z.object({ kind: z.literal('square'), side: z.number() })]),
    email: z.string().email(),
    id: z.string().uuid(),
    tags: z.array(z.string()).min(1).max(3),
    code: z.string().regex(/^[A-Z]{3}$/),
    both: z.string().regex(/^a/).regex(/z$/),
    prefixed: z.string().startsWith('sku-').endsWith('!'),
  }),
  output: z.strictObject({ ok: z.boolean() }),
  handler: () => ({ ok: true }),
})
`,
    })
    await codegen({ dir })
    const original = await exported(path.join(dir, 'functions.ts'), 'check')
    const stub = await exported(path.join(dir, 'generated', 'functions.ts'), 'check')
    expect(stub).not.toBe(original)

    const valid = {
      name: 'abc', count: 0, ratio: 1, kind: 'a', parent: null, choice: 'x', scores: { a: 1 }, pair: ['p', 2],
      shape: { kind: 'circle', r: 1 }, email: 'ada@example.com', id: '123e4567-e89b-42d3-a456-426614174000', tags: ['t'], code: 'ABC',
      both: 'abz', prefixed: 'sku-1!',
    }
    const cases: [string, Record<string, unknown>, boolean][] = [
      ['valid', valid, true],
      ['all optional parts given', { ...valid, note: 'n', level: 7, parent: { id: 'p' }, choice: null, shape: { kind: 'square', side: 2 } }, true],
      ['name too short', { ...valid, name: 'ab' }, false],
      ['name too long', { ...valid, name: 'abcdefghijk' }, false],
      ['count not an int', { ...valid, count: 1.5 }, false],
      ['count negative', { ...valid, count: -1 }, false],
      ['ratio zero', { ...valid, ratio: 0 }, false],
      ['ratio above 1', { ...valid, ratio: 1.01 }, false],
      ['kind outside the enum', { ...valid, kind: 'c' }, false],
      ['note of the wrong type', { ...valid, note: 5 }, false],
      ['parent missing', { ...valid, parent: undefined }, false],
      ['parent malformed', { ...valid, parent: { id: 1 } }, false],
      ['choice missing', { ...valid, choice: undefined }, false],
      ['choice outside the enum', { ...valid, choice: 'z' }, false],
      ['record value of the wrong type', { ...valid, scores: { a: 'x' } }, false],
      ['tuple too long', { ...valid, pair: ['p', 2, 3] }, false],
      ['tuple of the wrong types', { ...valid, pair: [2, 'p'] }, false],
      ['union matching no variant', { ...valid, shape: { kind: 'circle', side: 2 } }, false],
      ['not an email', { ...valid, email: 'ada.example.com' }, false],
      ['not a uuid', { ...valid, id: 'not-a-uuid' }, false],
      ['no tags', { ...valid, tags: [] }, false],
      ['too many tags', { ...valid, tags: ['a', 'b', 'c', 'd'] }, false],
      ['code not matching the regex', { ...valid, code: 'abc' }, false],
      ['first of two regexes failing', { ...valid, both: 'bz' }, false],
      ['second of two regexes failing', { ...valid, both: 'ab' }, false],
      ['prefix missing', { ...valid, prefixed: 'x-1!' }, false],
      ['suffix missing', { ...valid, prefixed: 'sku-1' }, false],
    ]
    for (const [label, value, accepted] of cases) {
      const want = original.input.safeParse(value)
      const got = stub.input.safeParse(value)
      expect(want.success, `original: ${label}`).toBe(accepted)
      expect(got.success, `stub: ${label}`).toBe(accepted)
      expect(got.data, label).toEqual(want.data)
    }
    // The default is applied by the stub too.
    expect(stub.input.safeParse(valid).data).toMatchObject({ level: 5 })

    for (const [value, accepted] of [[{ ok: true }, true], [{ ok: 'yes' }, false], [{ ok: true, extra: 1 }, false], [{}, false]] as const) {
      expect(original.output.safeParse(value).success).toBe(accepted)
      expect(stub.output.safeParse(value).success).toBe(accepted)
    }
  })

  // zod writes z.string().nullable() as { type: ['string', 'null'] } and a union of primitives as
  // { type: ['string', 'number'] }: each type must come back as a variant, with nothing added.
  it('stubs of nullable primitives and unions of primitives reject missing values like the originals', async () => {
    const dir = await service('roundtrip-nullable', {
      'functions.ts': `import { z } from 'zod'
import { defineFunction } from '@sdk'

export const check = defineFunction({
  name: 'check',
  input: z.object({ parent: z.string().nullable(), either: z.union([z.string(), z.number()]) }),
  output: z.object({}),
  handler: () => ({}),
})
`,
    })
    await codegen({ dir })
    const original = await exported(path.join(dir, 'functions.ts'), 'check')
    const stub = await exported(path.join(dir, 'generated', 'functions.ts'), 'check')
    for (const value of [{ either: 1 }, { parent: null }]) {
      expect(original.input.safeParse(value).success).toBe(false)
      expect(stub.input.safeParse(value).success).toBe(false)
    }
  })

  it('accepts any one-line file name in sources, and ignores symlinks in generated/', async () => {
    const dir = await service('odd-names', {
      'functions.ts': "export * from './more fns.js'\n",
      'more fns.ts': PING_FUNCTIONS,
    })
    await codegen({ dir })
    const manifest = await readGeneratedManifest(dir)
    expect(manifest?.functions.map((f) => f.source)).toEqual([expect.stringMatching(/^more fns\.ts:\d+$/)])
    // A symlinked folder that loops back (codegen must not follow it, in generated/ or elsewhere).
    await symlink(dir, path.join(dir, 'generated', 'linked-folder'))
    await symlink(dir, path.join(dir, 'loop'))
    await symlink(path.join(dir, 'no-such-file'), path.join(dir, 'generated', 'dangling.ts'))
    const checked = await codegen({ dir, check: true })
    expect(checked.files.every((f) => f.state === 'unchanged')).toBe(true)
    expect((await codegen({ dir })).files.map((f) => f.state)).not.toContain('removed')
  })

  it('refuses a layered manifest whose text would reach generated code, and escapes what it accepts', async () => {
    const dir = await service('layer-bad', { 'functions.ts': PING_FUNCTIONS })
    const manifest = JSON.parse(await readFile('examples/video-encoding/generated/manifest.json', 'utf8'))
    for (const [field, value] of [['pool', 'p */ globalThis.pwned = 1; /*'], ['source', 'x.ts:1 */ evil() /*']] as const) {
      const bad = structuredClone(manifest)
      bad.functions[0][field] = value
      const error = await codegen({ dir, layer: { manifest: bad, origin: 'a test' } }).then(() => null, (e: unknown) => e as { code?: string; message: string })
      expect(error?.code, field).toBe('PRX_CODEGEN_MANIFEST_INVALID')
      expect(error?.message, field).toContain(`functions.0.${field}`)
    }
    expect(existsSync(path.join(dir, 'generated', 'services'))).toBe(false)
  })

  it('refuses a rules side that imports the function implementations', async () => {
    const dir = await service('leak', { 'functions.ts': PING_FUNCTIONS, 'workflows.ts': pingWorkflow('./functions.js') })
    const error = await buildBundle(dir).then(() => null, (e: unknown) => e as { code?: string; message: string })
    expect(error).not.toBeNull()
    expect(error!.code).toBe('PRX_BUNDLE_BUILD_FAILED')
    expect(error!.message).toContain('generated stubs')
    expect(error!.message).toContain('functions.ts')
  })

  it('bundles the rules of examples/video-encoding with function names but no handler code', async () => {
    const implementations = await readFile(path.join(ROOT, 'examples', 'video-encoding', 'functions.ts'), 'utf8')
    const handlerOnly = ['padStart(4', 'unknown recipe', 'chunkUris.length * 1_048_576']
    for (const text of handlerOnly) expect(implementations).toContain(text)

    const { code } = await buildBundle(path.join(ROOT, 'examples', 'video-encoding'))
    for (const text of handlerOnly) expect(code).not.toContain(text)
    expect(code).not.toContain('1048576')
    for (const name of ['splitVideo', 'encodeChunk', 'assembleVideo', 'indexVideo']) expect(code).toContain(`"${name}"`)
  })
})
