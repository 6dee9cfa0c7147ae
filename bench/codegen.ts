/**
 * Codegen benchmark: `praxis codegen` on a generated service of 200 functions (in 4 files) and 50
 * workflows (3 rules each, calling the stubs), and on the examples. The baseline is measured in the
 * same run: type-checking the same service with the TypeScript compiler (strict, noEmit), what a
 * developer pays after codegen anyway. Target: the large service under 5 s on this machine.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import ts from 'typescript'
import { codegen } from '../codegen/index.js'
import type { RecordRow } from './sandbox.js'

const FUNCTIONS = 200
const FILES = 4
const WORKFLOWS = 50

/** Writes the synthetic service; returns its folder. */
async function writeService(root: string): Promise<string> {
  const dir = path.join(root, 'big-service')
  await mkdir(dir, { recursive: true })
  const sdk = path.relative(dir, path.resolve('sdk/index.js')).split(path.sep).join('/')
  const perFile = FUNCTIONS / FILES
  const modules: string[] = []
  for (let f = 0; f < FILES; f++) {
    const lines = [`import { z } from 'zod'`, `import { defineFunction } from '${sdk}'`, `import { Item } from './schemas.js'`, '']
    for (let i = f * perFile; i < (f + 1) * perFile; i++) {
      lines.push(`export const fn${i} = defineFunction({
  name: 'fn${i}',
  pool: 'pool${i % 5}',
  timeoutMs: ${1_000 + i},
  retry: { attempts: ${1 + (i % 4)}, initialDelayMs: 100 },
  input: z.object({ id: z.string().min(1), n: z.number().int().nonnegative(), items: z.array(Item).max(50), mode: z.enum(['a', 'b', 'c']).default('a'), note: z.string().optional() }),
  output: z.object({ ok: z.boolean(), total: z.number(), tags: z.record(z.string(), z.string()) }),
  handler: async ({ n }) => ({ ok: true, total: n * 2, tags: {} }),
})
`)
    }
    const file = f === 0 ? 'functions.ts' : `functions-${f}.ts`
    if (f > 0) modules.push(file)
    await writeFile(path.join(dir, file), lines.join('\n'))
  }
  await writeFile(path.join(dir, 'schemas.ts'), `import { z } from 'zod'\nexport const Item = z.object({ sku: z.string(), qty: z.number().int().positive(), price: z.number().nonnegative().nullable() })\n`)
  await writeFile(path.join(dir, 'functions.ts'), `${modules.map((m) => `export * from './${m.replace(/\.ts$/, '.js')}'`).join('\n')}\n`, { flag: 'a' })
  const stubs = Array.from({ length: FUNCTIONS }, (_, i) => `fn${i}`)
  const workflows = [`import { z } from 'zod'`, `import { defineWorkflow } from '${sdk}'`, `import { ${stubs.join(', ')} } from './generated/functions.js'`, '']
  for (let w = 0; w < WORKFLOWS; w++) {
    const [a, b, c] = [(w * 3) % FUNCTIONS, (w * 3 + 1) % FUNCTIONS, (w * 3 + 2) % FUNCTIONS]
    workflows.push(`export const flow${w} = defineWorkflow({
  name: 'flow${w}',
  input: z.object({ id: z.string() }),
  facts: z.object({ id: z.string(), stage: z.enum(['new', 'one', 'two', 'done']).default('new'), total: z.number().default(0) }),
  result: z.object({ total: z.number() }),
  init: (input) => input,
  rules: (rule) => [
    rule('one').match((f) => f.stage.eq('new'))
      .action((facts, ctx) => { ctx.set({ stage: 'one' }); return ctx.call(fn${a}, { id: facts.id, n: 1, items: [] }) })
      .reaction((facts, out, ctx) => ctx.set({ total: facts.total + out.total })),
    rule('two').match((f) => f.stage.eq('one'))
      .action((facts, ctx) => { ctx.set({ stage: 'two' }); return ctx.call(fn${b}, { id: facts.id, n: 2, items: [] }) })
      .reaction((facts, out, ctx) => ctx.set({ stage: 'done', total: facts.total + out.total })),
    rule('three').match((f) => f.all(f.stage.eq('done'), f.total.gt(100)))
      .action((facts, ctx) => ctx.call(fn${c}, { id: facts.id, n: 3, items: [] })),
  ],
})
`)
  }
  await writeFile(path.join(dir, 'workflows.ts'), workflows.join('\n'))
  return dir
}

/** Type-checks a service's files (strict, noEmit) with the TypeScript compiler; returns diagnostics count. */
function typecheck(dir: string): number {
  const files = ts.sys.readDirectory(dir, ['.ts'])
  const program = ts.createProgram(files, { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true })
  return ts.getPreEmitDiagnostics(program).length
}

const time = async <T>(body: () => Promise<T> | T): Promise<[T, number]> => {
  const t0 = performance.now()
  const value = await body()
  return [value, performance.now() - t0]
}

export async function benchCodegen(record: RecordRow, progress: (line: string) => void): Promise<void> {
  const root = path.resolve('bench', `.tmp-codegen-${process.pid}`)
  try {
    progress(`[codegen] writing a service of ${FUNCTIONS} functions and ${WORKFLOWS} workflows…`)
    const dir = await writeService(root)
    progress('[codegen] praxis codegen (first run, writes) …')
    const [first, firstMs] = await time(() => codegen({ dir }))
    if (first.functions !== FUNCTIONS || first.workflows !== WORKFLOWS) throw new Error(`codegen found ${first.functions} functions and ${first.workflows} workflows`)
    progress(`[codegen]   ${Math.round(firstMs)} ms; --check …`)
    const [checked, checkMs] = await time(() => codegen({ dir, check: true }))
    if (checked.files.some((f) => f.state !== 'unchanged')) throw new Error('codegen --check right after codegen found stale files')
    progress('[codegen] type-checking the same service (baseline) …')
    const [diagnostics, tscMs] = await time(() => typecheck(dir))
    if (diagnostics > 0) throw new Error(`the generated service has ${diagnostics} type errors`)
    record('codegen', `${FUNCTIONS} functions + ${WORKFLOWS} workflows`, firstMs, 'ms', tscMs, { text: '< 5 s', met: firstMs < 5000 })
    record('codegen', `${FUNCTIONS} functions + ${WORKFLOWS} workflows, --check`, checkMs, 'ms', tscMs)
    progress('[codegen] the examples …')
    const examples = ['examples/video-encoding', 'examples/thumbnails', 'examples/publishing']
    for (const example of examples) {
      const [, ms] = await time(() => codegen({ dir: example, check: true }))
      const [, base] = await time(() => typecheck(example))
      record('codegen', `${path.basename(example)} --check`, ms, 'ms', base)
    }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
