/**
 * Type-level tests of generated code, with the TypeScript checker (strict, the repo's tsconfig):
 * the examples' generated files have no diagnostics, and rules that misuse a stub or a workflow
 * reference fail to compile at the line that misuses it, for the reason it is wrong.
 */
import path from 'node:path'
import { Project, type Diagnostic } from 'ts-morph'
import { beforeAll, describe, expect, it } from 'vitest'

let project: Project
beforeAll(() => {
  project = new Project({ tsConfigFilePath: 'tsconfig.json', skipAddingFilesFromTsConfig: true })
})

/** Diagnostics of a probe file placed in examples/publishing (in memory, never written). */
function compile(body: string): { line: number; code: number; text: string }[] {
  const file = project.createSourceFile(path.resolve('examples/publishing/probe.ts'), `import { z } from 'zod'
import { defineWorkflow } from '../../sdk/index.js'
import { publishPage } from './generated/functions.js'
import { encodeVideo } from './generated/services/video-encoding/workflows.js'
import { createPublishingClient } from './generated/client.js'
${body}
`, { overwrite: true })
  const format = (d: Diagnostic) => ({ line: (d.getLineNumber() ?? 0) - 5, code: d.getCode(), text: project.formatDiagnosticsWithColorAndContext([d]) })
  return file.getPreEmitDiagnostics().map(format)
}

const workflow = (rules: string) => `export const probe = defineWorkflow({
  name: 'probe',
  input: z.object({ title: z.string() }),
  facts: z.object({ title: z.string(), stage: z.enum(['new', 'encoding', 'done']).default('new'), page: z.string().optional() }),
  init: (input) => input,
  rules: (rule) => [
${rules}
  ],
})`

describe('generated code, type-checked', () => {
  it('compiles under strict TypeScript with no diagnostics', () => {
    const files = project.addSourceFilesAtPaths(['examples/*/generated/**/*.ts'])
    expect(files.length).toBeGreaterThanOrEqual(12)
    const diagnostics = files.flatMap((f) => f.getPreEmitDiagnostics()).map((d) => project.formatDiagnosticsWithColorAndContext([d]))
    expect(diagnostics).toEqual([])
  })

  it('accepts well-typed calls, starts, reactions and client use', () => {
    const diagnostics = compile(`${workflow(`
    rule('encode').match((f) => f.stage.eq('new'))
      .action((facts, ctx) => { ctx.set({ stage: 'encoding' }); return ctx.start(encodeVideo, { source: facts.title, recipe: 'h264' }) })
      .reaction((_facts, result, ctx) => { const chunks: number = result.chunks; const video: string = result.video; ctx.set({ stage: 'done', page: video + chunks }) }),
    rule('publish').match((f) => f.stage.eq('done'))
      .action((facts, ctx) => ctx.call(publishPage, { title: facts.title, video: 'v', index: 'i' }))
      .reaction((_facts, out, ctx) => ctx.set({ page: out.url })),`)}
export async function app(): Promise<string> {
  const client = createPublishingClient({ url: 'http://localhost:3000', apiKey: 'k' })
  const instance = await client.startPublishTitle({ title: 't', source: 's' })
  const view = await instance.wait()
  return view.facts.stage + (view.result?.page ?? '')
}`)
    expect(diagnostics.map((d) => d.text)).toEqual([])
  })

  it('rejects a call whose input does not match the function stub', () => {
    const diagnostics = compile(workflow(`
    rule('publish').match((f) => f.stage.eq('done'))
      .action((facts, ctx) => ctx.call(publishPage, { title: facts.title, video: 42, index: 'i' })),`))
    expect(diagnostics).toHaveLength(1)
    expect(diagnostics[0]!.line).toBe(9)
    expect(diagnostics[0]!.text).toMatch(/Type 'number' is not assignable to type 'string'/)
  })

  it('rejects a missing field in the input of a child workflow start', () => {
    const diagnostics = compile(workflow(`
    rule('encode').match((f) => f.stage.eq('new'))
      .action((facts, ctx) => ctx.start(encodeVideo, { source: facts.title })),`))
    expect(diagnostics).toHaveLength(1)
    expect(diagnostics[0]!.line).toBe(9)
    expect(diagnostics[0]!.text).toMatch(/Property 'recipe' is missing/)
  })

  it('rejects a reaction that expects the wrong output type', () => {
    const diagnostics = compile(workflow(`
    rule('publish').match((f) => f.stage.eq('done'))
      .action((facts, ctx) => ctx.call(publishPage, { title: facts.title, video: 'v', index: 'i' }))
      .reaction((_facts, out: { url: number }, ctx) => ctx.set({ page: String(out.url) })),`))
    expect(diagnostics).toHaveLength(1)
    expect(diagnostics[0]!.line).toBe(10)
    expect(diagnostics[0]!.text).toMatch(/Type 'string' is not assignable to type 'number'/)
  })

  it("rejects a reaction that reads a field the child workflow's result does not have", () => {
    const diagnostics = compile(workflow(`
    rule('encode').match((f) => f.stage.eq('new'))
      .action((facts, ctx) => ctx.start(encodeVideo, { source: facts.title, recipe: 'h264' }))
      .reaction((_facts, result, ctx) => ctx.set({ page: result.uri })),`))
    expect(diagnostics).toHaveLength(1)
    expect(diagnostics[0]!.line).toBe(10)
    expect(diagnostics[0]!.text).toMatch(/Property 'uri' does not exist/)
  })

  it('types ctx.setPath and ctx.set into nested records, arrays and records of arrays without casts', () => {
    const nested = (body: string) => `export const nested = defineWorkflow({
  name: 'nested',
  input: z.object({}),
  facts: z.object({
    translated: z.record(z.string(), z.record(z.string(), z.string())).default({}),
    items: z.array(z.object({ sku: z.string(), qty: z.number() })).default([]),
    reviews: z.record(z.string(), z.array(z.object({ ok: z.boolean() }))).default({}),
    owner: z.object({ email: z.string().nullable() }).optional(),
  }),
  init: () => ({}),
  rules: (rule) => [
    rule('t').match((f) => f.items[0]!.sku.exists())
      .action((_facts, ctx) => {
${body}
      }),
  ],
})`
    const accepted = compile(nested(`        const lang: string = 'fi'
        const n: number = 3
        ctx.setPath('translated.fi.3', 'kolme')
        ctx.setPath(\`translated.\${lang}.\${n}\`, 'kolme')
        ctx.setPath(\`items.\${n}.qty\`, 2)
        ctx.setPath(\`reviews.\${lang}.0.ok\`, true)
        ctx.setPath('owner.email', null)
        ctx.set({ 'translated.fi.3': 'kolme', 'items.0': { sku: 'a', qty: 1 } })`))
    expect(accepted.map((d) => d.text)).toEqual([])
    const refused = compile(nested(`        ctx.setPath('translated.fi.3', 3)
        ctx.setPath('items.first', { sku: 'a', qty: 1 })
        ctx.setPath('items.0.qty', '2')`))
    expect(refused.map((d) => d.line)).toEqual([14, 15, 16])
    expect(refused[0]!.text).toMatch(/Argument of type 'number' is not assignable to parameter of type 'string'/)
  })

  it('rejects a client start with a wrong input, and a signal the workflow does not declare', () => {
    const diagnostics = compile(`export async function app(): Promise<void> {
  const client = createPublishingClient({ url: 'http://localhost:3000', apiKey: 'k' })
  await client.startPublishTitle({ title: 1, source: 's' })
  await client.signal('publishTitle', 'id', 'approve', {})
}`)
    expect(diagnostics.map((d) => d.line)).toEqual([3, 4])
    expect(diagnostics[0]!.text).toMatch(/Type 'number' is not assignable to type 'string'/)
    expect(diagnostics[1]!.text).toMatch(/"approve"/)
  })
})
