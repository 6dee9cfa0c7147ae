/**
 * Checks before deploy. `praxis codegen` (what `praxis deploy` and the dev loop run) refuses a
 * rule whose match reads, or whose `ctx.set` / `ctx.setPath` writes, a fact path that is not in
 * its facts schema, at the file, line and column of the path; `praxis check` type-checks a service
 * under its own tsconfig (or the nearest above, or strict defaults) and runs the same fact-path
 * check. On test/fixtures/fact-paths (every kind of nesting, all valid) and on copies of it under
 * test/.tmp-checks-*, broken one way at a time.
 */
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'
import { afterAll, describe, expect, it } from 'vitest'
import { codegen, CodegenError, FactPathError } from '../codegen/index.js'
import { runCheck, type CheckDiagnostic } from '../platform/cli/check.js'
import type { ServiceManifest } from '../sdk/index.js'

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)))
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'fact-paths')
const run = promisify(execFile)
const made: string[] = []

afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true })
})

/**
 * A copy of the fixture at the fixture's depth (so its imports and generated files stay valid),
 * under `parent` (test/ by default), with `edits` applied to workflows.ts and `append` added at
 * its end; `regenerate` runs codegen on it first (the generated headers name the folder; code
 * appended after the workflow moves no line the manifest records).
 */
async function copy(edits: [string, string][] = [], options: { regenerate?: boolean; parent?: string; append?: string } = {}): Promise<{ dir: string; relative: string; text: string }> {
  const root = await mkdtemp(path.join(options.parent ?? path.join(ROOT, 'test'), '.tmp-checks-'))
  made.push(root)
  const dir = path.join(root, 'fact-paths')
  await cp(FIXTURE, dir, { recursive: true })
  if (options.regenerate) await codegen({ dir })
  let text = await readFile(path.join(dir, 'workflows.ts'), 'utf8')
  for (const [from, to] of edits) {
    if (!text.includes(from)) throw new Error(`the fixture has no ${JSON.stringify(from)}`)
    text = text.replace(from, to)
  }
  if (options.append) text += options.append
  await writeFile(path.join(dir, 'workflows.ts'), text)
  return { dir, relative: path.relative(process.cwd(), dir), text }
}

/** 1-based line and column of `needle` in `text` (plus `offset` characters). */
function at(text: string, needle: string, offset = 0): { line: number; column: number } {
  const index = text.indexOf(needle)
  if (index < 0) throw new Error(`no ${JSON.stringify(needle)} in the text`)
  const before = text.slice(0, index + offset).split('\n')
  return { line: before.length, column: before[before.length - 1]!.length + 1 }
}

async function checked(dirs: string[], json = false): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = []
  const code = await runCheck(dirs, { json }, (line) => lines.push(line))
  return { code, lines }
}

/** Six broken paths: match and set, top level and nested, through an array, a record and a template. */
const BROKEN: [string, string][] = [
  ["f.all(f.stage.eq('new'), f.langs[0]!.exists())", "f.all(f.stagee.eq('new'), f.langs.first.exists())"],
  ['ctx.setPath(`translated.${call', 'ctx.setPath(`translatd.${call'],
  ['ctx.set({ pending: facts.pending - 1 })', 'ctx.set({ pendng: facts.pending - 1 })'],
  ["ctx.setPath('reviews.fi.0.ok', true)", "ctx.setPath('reviews.fi.0.okay', true)"],
  ['f.owner.email.exists()', 'f.owner.emial.exists()'],
]

describe('praxis codegen: fact paths against the facts schema', () => {
  it('accepts valid paths through records, arrays, tuples, optional, nullable and defaulted fields, and unions', async () => {
    const result = await codegen({ dir: FIXTURE, check: true })
    expect(result.files.filter((f) => f.state !== 'unchanged')).toEqual([])
    const manifest = JSON.parse(await readFile(path.join(FIXTURE, 'generated', 'manifest.json'), 'utf8')) as ServiceManifest
    const paths = manifest.workflows[0]!.rules.flatMap((r) => r.paths)
    expect(paths).toEqual(expect.arrayContaining(['langs.0', 'reviews.fi.0.ok', 'translated.fi.0', 'layout.kind', 'owner.email', 'target', 'version.1']))
  })

  it('refuses every match and static set path not in the facts schema, each at its file, line and column', async () => {
    const { dir, relative, text } = await copy(BROKEN)
    const before = await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8')
    const error = await codegen({ dir }).then(() => null, (e: unknown) => e)
    expect(error).toBeInstanceOf(FactPathError)
    expect(error).toBeInstanceOf(CodegenError)
    const failure = error as FactPathError
    expect(failure.code).toBe('PRX_CODEGEN_FACT_PATH')
    const file = path.join(relative, 'workflows.ts')
    const place = (needle: string, offset = 0): string => {
      const { line, column } = at(text, needle, offset)
      return `${file}:${line}:${column}`
    }
    expect(failure.message.split('\n')).toEqual([
      `${place('f.stagee', 2)}: rule "translate" of workflow translateDoc matches on fact path "stagee", which is not in the facts schema (did you mean "stage"?)`,
      `${place('f.langs.first', 8)}: rule "translate" of workflow translateDoc matches on fact path "langs.first", which is not in the facts schema: langs is an array: its elements are reached by index (langs.0), and it has no field "first"; fix the path, or add it to the facts schema of translateDoc`,
      `${place('`translatd.')}: rule "translate" of workflow translateDoc sets fact path "translatd.…" in its reaction (ctx.setPath), which is not in the facts schema (did you mean "translated"?)`,
      `${place('pendng')}: rule "translate" of workflow translateDoc sets fact path "pendng" in its reaction (ctx.set), which is not in the facts schema (did you mean "pending"?)`,
      `${place("'reviews.fi.0.okay'")}: rule "review" of workflow translateDoc sets fact path "reviews.fi.0.okay" in its action (ctx.setPath), which is not in the facts schema: reviews.fi.0 has no field "okay" (it has "by", "ok"); fix the path, or add it to the facts schema of translateDoc`,
      `${place('f.owner.emial', 8)}: rule "finish" of workflow translateDoc matches on fact path "owner.emial", which is not in the facts schema: owner has no field "emial" (did you mean "owner.email"?)`,
    ])
    expect(failure.issues.map((i) => [i.rule, i.path])).toEqual([
      ['translate', 'stagee'], ['translate', 'langs.first'], ['translate', 'translatd'], ['translate', 'pendng'], ['review', 'reviews.fi.0.okay'], ['finish', 'owner.emial'],
    ])
    // Nothing was written.
    expect(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8')).toBe(before)
  })

  it('finds a match given as a helper function, and a path computed in it, at the helper', async () => {
    const { dir, relative, text } = await copy([
      ["export const translateDoc = defineWorkflow({", "const isDone = (f: any) => f.all(f.stage.eq('done'), f['pend' + 'ing'].eq(0), f.layout.colour.eq('red'))\n\nexport const translateDoc = defineWorkflow({"],
      ["rule('finish')\n      .match((f) => f.any(f.target.exists(), f.owner.email.exists(), f.version[1]!.eq(1)))", "rule('finish')\n      .match(isDone)"],
    ])
    const error = await codegen({ dir }).then(() => null, (e: unknown) => e) as FactPathError
    expect(error).toBeInstanceOf(FactPathError)
    const { line, column } = at(text, 'colour')
    expect(error.message).toBe(`${path.join(relative, 'workflows.ts')}:${line}:${column}: rule "finish" of workflow translateDoc matches on fact path "layout.colour", which is not in the facts schema: layout has no field "colour" (it has "count", "kind", "width"); fix the path, or add it to the facts schema of translateDoc`)
  })

  it('`praxis codegen` exits non-zero and prints each bad path with its place', async () => {
    const { relative, text } = await copy([BROKEN[0]!])
    const failure = await run(process.execPath, ['bin/praxis.js', 'codegen', path.relative(ROOT, path.resolve(relative))], { cwd: ROOT }).then(
      () => null,
      (error: { code?: number; stderr?: string }) => error,
    )
    expect(failure?.code).toBe(1)
    const { line, column } = at(text, 'f.stagee', 2)
    expect(failure?.stderr).toContain(`workflows.ts:${line}:${column}: rule "translate" of workflow translateDoc matches on fact path "stagee", which is not in the facts schema (did you mean "stage"?)`)
  })
})

describe('praxis check', { timeout: 120_000 }, () => {
  it('passes a valid example and the fixture, type-checked under the repository tsconfig', async () => {
    const { code, lines } = await checked(['examples/video-encoding', path.relative(process.cwd(), FIXTURE)])
    expect(lines).toEqual([
      'examples/video-encoding: 0 errors (type-checked 5 files with tsconfig.json; fact paths and generated files checked)',
      `${path.relative(process.cwd(), FIXTURE)}: 0 errors (type-checked 5 files with tsconfig.json; fact paths and generated files checked)`,
      'no errors in 2 services',
    ])
    expect(code).toBe(0)
  })

  it('reports a type error as file:line:col with a count, and exits 1', async () => {
    const { relative, text } = await copy([], { regenerate: true, append: "\nexport const answer: number = 'forty-two'\n" })
    const { code, lines } = await checked([relative])
    const { line, column } = at(text, 'answer')
    expect(lines).toEqual([
      `${path.join(relative, 'workflows.ts')}:${line}:${column}: Type 'string' is not assignable to type 'number'. [TS2322]`,
      `${relative}: 1 error (type-checked 5 files with tsconfig.json; fact paths and generated files checked)`,
      '1 error in 1 service: fix them before deploying',
    ])
    expect(code).toBe(1)
  })

  it('--json gives the type errors and the fact-path errors as data', async () => {
    const { relative, text } = await copy([BROKEN[0]!])
    const { code, lines } = await checked([relative], true)
    expect(code).toBe(1)
    expect(lines).toHaveLength(1)
    const report = JSON.parse(lines[0]!) as { ok: boolean; errors: number; services: { service: string; tsconfig: string | null; errors: number }[]; diagnostics: CheckDiagnostic[] }
    const file = path.join(relative, 'workflows.ts')
    const stagee = at(text, 'f.stagee', 2)
    const first = at(text, 'f.langs.first', 8)
    expect(report.ok).toBe(false)
    expect(report.services).toEqual([{ service: relative, tsconfig: 'tsconfig.json', files: 5, errors: 4, warnings: 0 }])
    const brief = report.diagnostics.map((d) => [d.source, d.code, d.file, d.line, d.column])
    expect(brief).toEqual([
      ['fact-path', 'PRX_CODEGEN_FACT_PATH', file, stagee.line, stagee.column],
      ['fact-path', 'PRX_CODEGEN_FACT_PATH', file, first.line, first.column],
      ['typescript', 'TS2551', file, stagee.line, stagee.column],
      ['typescript', 'TS2339', file, first.line, first.column],
    ])
    expect(report.diagnostics[0]!.message).toBe('rule "translate" of workflow translateDoc matches on fact path "stagee", which is not in the facts schema (did you mean "stage"?)')
    expect(report.diagnostics[2]!.message).toMatch(/^Property 'stagee' does not exist on type 'MatchRoot<.*Did you mean 'stage'\?$/s)
    expect(report.errors).toBe(4)
  })

  it("uses the service folder's own tsconfig.json, else the nearest one above it", async () => {
    const { dir, relative, text } = await copy([], { regenerate: true, append: '\nexport const echo = (x) => x\n' })
    // Above it: the repository's tsconfig.json (strict), which does not list test/.tmp-* folders.
    const strict = await checked([relative])
    const { line, column } = at(text, 'x) => x')
    expect(strict.lines[0]).toBe(`${path.join(relative, 'workflows.ts')}:${line}:${column}: Parameter 'x' implicitly has an 'any' type. [TS7006]`)
    expect(strict.code).toBe(1)
    // Its own: not strict about implicit any.
    await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../../tsconfig.json', compilerOptions: { noImplicitAny: false }, include: ['**/*.ts'], exclude: [] }))
    const own = await checked([relative])
    expect(own.lines).toEqual([
      `${relative}: 0 errors (type-checked 5 files with ${path.join(relative, 'tsconfig.json')}; fact paths and generated files checked)`,
      'no errors in 1 service',
    ])
    expect(own.code).toBe(0)
  })

  it('with no tsconfig.json anywhere above, checks the service with strict defaults', async () => {
    // A folder outside the repository, with the SDK and node_modules linked in at the fixture's depth.
    const outside = await mkdtemp(path.join(os.tmpdir(), 'praxis-check-'))
    made.push(outside)
    expect(ts.findConfigFile(outside, ts.sys.fileExists)).toBeUndefined()
    await symlink(path.join(ROOT, 'node_modules'), path.join(outside, 'node_modules'), 'dir')
    await symlink(path.join(ROOT, 'sdk'), path.join(outside, 'sdk'), 'dir')
    await mkdir(path.join(outside, 'services'))
    const { relative, text } = await copy([], { regenerate: true, append: '\nexport const echo = (x) => x\n', parent: path.join(outside, 'services') })
    const { code, lines } = await checked([relative])
    const { line, column } = at(text, 'x) => x')
    expect(lines).toEqual([
      `${path.join(relative, 'workflows.ts')}:${line}:${column}: Parameter 'x' implicitly has an 'any' type. [TS7006]`,
      `${relative}: 1 error (type-checked 5 files with strict defaults (no tsconfig.json found); fact paths and generated files checked)`,
      '1 error in 1 service: fix them before deploying',
    ])
    expect(code).toBe(1)
  })

  it('names a stale generated file, and a folder that is not a service', async () => {
    const { relative } = await copy()
    const stale = await checked([relative])
    // The headers name the folder they were generated in; the manifest does not.
    expect(stale.lines.slice(0, 3)).toEqual(['client.ts', 'functions.ts', 'workflows.ts'].map((f) =>
      `${path.join(relative, 'generated', f)}: generated file is stale (the source generates something else): run \`praxis codegen ${relative}\`; a deploy refuses stale generated files [PRX_CODEGEN_STALE]`))
    expect(stale.code).toBe(1)
    const none = await checked(['docs'])
    expect(none.lines[0]).toBe('docs: docs holds no workflows.ts or functions.ts: point codegen at a service folder [PRX_CODEGEN_NO_SERVICE]')
    expect(none.code).toBe(1)
  })
})

describe('the server at deploy', () => {
  it('refuses a bundle whose match reads a fact path not in the facts schema, even one that skipped codegen, and keeps nothing of it', async () => {
    const { startTestPlatform } = await import('./support/platform.js')
    const { buildBundle } = await import('../platform/engine/index.js')
    const p = await startTestPlatform()
    try {
      // esbuild strips types: the bundle builds, as one made by hand or by a tool other than praxis would.
      const { dir } = await copy([['f.owner.email.exists()', 'f.owner.emial.exists()']])
      const { code } = await buildBundle(dir)
      for (const dryRun of [true, false]) {
        const r = await p.request('POST', `/v1/services/fact-paths/deployments${dryRun ? '?dryRun=true' : ''}`, { code })
        expect(r.status).toBe(400)
        expect(r.body.error.code).toBe('PRX_BUNDLE_INVALID')
        expect(r.body.error.message).toMatch(/^rule "finish" of workflow translateDoc \(service fact-paths\) matches on fact path "owner\.emial", which is not in the facts schema \(owner has no field "emial".*did you mean "(owner\.)?email"\?\): such a match never turns true/)
        expect(r.body.error.details).toMatchObject({ workflow: 'translateDoc', rule: 'finish', path: 'owner.emial' })
      }
      expect((await p.request('GET', '/v1/services/fact-paths/deployments')).body.deployments).toEqual([])
    } finally {
      await p.close()
    }
  }, 60_000)
})
