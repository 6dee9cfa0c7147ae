/**
 * The typed match builder and rule definitions: the condition JSON `buildCondition` produces, the
 * paths `conditionPaths` reports, definition-time errors, and (checked by `tsc --noEmit`) what the
 * types accept and refuse.
 */
import { describe, expect, expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import { recordingContext, type Command } from './context.js'
import {
  buildCondition, conditionPaths, defineFunction, defineWorkflow, DefinitionError, rule,
  type CallInfo, type Condition, type Failure, type PathValue, type Paths, type SdkErrorCode,
} from './index.js'
import { factPathProblem } from './paths.js'

/** Facts as `z.output` of a facts schema gives them to the builder. */
type Facts = {
  stage: 'new' | 'encoding' | 'done'
  chunkCount: number
  encoded: number
  name: string
  ready: boolean
  tags: string[]
  chunks: Record<string, string>
  video?: { uri: string; bytes: number; meta: { codec: string } } | undefined
  note: string | null
}

const build = (fn: Parameters<typeof buildCondition<Facts>>[0]): Condition => buildCondition<Facts>(fn)
const leaf = (path: string, operator: string, value: unknown) => ({ fact: 'facts', path, operator, value })

/** The code of the DefinitionError `fn` throws; fails the test when it throws anything else. */
function definitionErrorOf(fn: () => unknown): { code: SdkErrorCode; message: string } {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(DefinitionError)
    const e = error as DefinitionError
    expect(e.name).toBe('DefinitionError')
    return { code: e.code, message: e.message }
  }
  throw new Error('expected a DefinitionError, nothing was thrown')
}

describe('buildCondition: the condition JSON', () => {
  it('eq on a top-level fact', () => {
    expect(build((f) => f.stage.eq('encoding'))).toEqual({ fact: 'facts', path: 'stage', operator: 'equal', value: 'encoding' })
  })

  it('maps every comparison to its json-rules-engine operator', () => {
    expect(build((f) => f.stage.ne('done'))).toEqual(leaf('stage', 'notEqual', 'done'))
    expect(build((f) => f.chunkCount.gt(3))).toEqual(leaf('chunkCount', 'greaterThan', 3))
    expect(build((f) => f.chunkCount.gte(3))).toEqual(leaf('chunkCount', 'greaterThanInclusive', 3))
    expect(build((f) => f.chunkCount.lt(-1.5))).toEqual(leaf('chunkCount', 'lessThan', -1.5))
    expect(build((f) => f.chunkCount.lte(0))).toEqual(leaf('chunkCount', 'lessThanInclusive', 0))
    expect(build((f) => f.stage.in(['new', 'done']))).toEqual(leaf('stage', 'in', ['new', 'done']))
    expect(build((f) => f.stage.notIn(['encoding']))).toEqual(leaf('stage', 'notIn', ['encoding']))
    expect(build((f) => f.tags.contains('hd'))).toEqual(leaf('tags', 'contains', 'hd'))
    expect(build((f) => f.tags.notContains('sd'))).toEqual(leaf('tags', 'doesNotContain', 'sd'))
    expect(build((f) => f.ready.eq(false))).toEqual(leaf('ready', 'equal', false))
    expect(build((f) => f.note.ne('x'))).toEqual(leaf('note', 'notEqual', 'x'))
  })

  it('exists and missing are the exists operator with true and false', () => {
    expect(build((f) => f.note.exists())).toEqual(leaf('note', 'exists', true))
    expect(build((f) => f.note.missing())).toEqual(leaf('note', 'exists', false))
  })

  it('nested paths are dotted, optional objects included', () => {
    expect(build((f) => f.video.uri.exists())).toEqual(leaf('video.uri', 'exists', true))
    expect(build((f) => f.video.meta.codec.eq('h264'))).toEqual(leaf('video.meta.codec', 'equal', 'h264'))
    expect(build((f) => f.chunks['3']!.eq('s3://c3'))).toEqual(leaf('chunks.3', 'equal', 's3://c3'))
    expect(build((f) => f.video.missing())).toEqual(leaf('video', 'exists', false))
  })

  it('fact-to-fact comparisons reference the other path', () => {
    expect(build((f) => f.encoded.eq(f.chunkCount))).toEqual({ fact: 'facts', path: 'encoded', operator: 'equal', value: { fact: 'facts', path: 'chunkCount' } })
    expect(build((f) => f.video.bytes.gt(f.chunkCount))).toEqual(leaf('video.bytes', 'greaterThan', { fact: 'facts', path: 'chunkCount' }))
    expect(build((f) => f.tags.contains(f.video.meta.codec))).toEqual(leaf('tags', 'contains', { fact: 'facts', path: 'video.meta.codec' }))
  })

  it('all, any and not nest', () => {
    const c = build((f) => f.all(
      f.stage.eq('encoding'),
      f.any(f.encoded.eq(f.chunkCount), f.not(f.ready.eq(true))),
      f.not(f.all(f.tags.contains('x'), f.video.uri.missing())),
    ))
    expect(c).toEqual({
      all: [
        leaf('stage', 'equal', 'encoding'),
        { any: [leaf('encoded', 'equal', { fact: 'facts', path: 'chunkCount' }), { not: leaf('ready', 'equal', true) }] },
        { not: { all: [leaf('tags', 'contains', 'x'), leaf('video.uri', 'exists', false)] } },
      ],
    })
    expect(build((f) => f.any())).toEqual({ any: [] })
  })

  it('builds plain JSON: no proxies or functions survive', () => {
    const c = build((f) => f.all(f.encoded.eq(f.chunkCount), f.stage.in(['new']), f.video.uri.exists()))
    expect(JSON.parse(JSON.stringify(c))).toEqual(c)
    expect(Object.getPrototypeOf(c)).toBe(Object.prototype)
    const ref = (c as { all: { value: unknown }[] }).all[0]!.value
    expect(Object.getPrototypeOf(ref)).toBe(Object.prototype)
    expect(Object.keys(ref as object)).toEqual(['fact', 'path'])
  })

  it('JSON compare values are copied as given (arrays and objects)', () => {
    expect(build((f) => f.tags.in([['a'], ['b', 'c']]))).toEqual(leaf('tags', 'in', [['a'], ['b', 'c']]))
    expect(build((f) => f.video.meta.eq({ codec: 'h264' }))).toEqual(leaf('video.meta', 'equal', { codec: 'h264' }))
  })
})

describe('conditionPaths', () => {
  it('lists every path read, sorted and unique, fact-to-fact operands included', () => {
    const c = build((f) => f.all(
      f.stage.eq('encoding'),
      f.any(f.encoded.eq(f.chunkCount), f.not(f.video.uri.exists())),
      f.stage.ne('done'),
      f.video.bytes.gt(0),
    ))
    expect(conditionPaths(c)).toEqual(['chunkCount', 'encoded', 'stage', 'video.bytes', 'video.uri'])
  })

  it('a single leaf reads one path; a fact-to-fact leaf reads two', () => {
    expect(conditionPaths(build((f) => f.ready.eq(true)))).toEqual(['ready'])
    expect(conditionPaths(build((f) => f.video.bytes.lte(f.chunkCount)))).toEqual(['chunkCount', 'video.bytes'])
  })

  it('array and object compare values are not mistaken for paths', () => {
    expect(conditionPaths(build((f) => f.all(f.stage.in(['new', 'done']), f.video.meta.eq({ codec: 'x' }))))).toEqual(['stage', 'video.meta'])
  })
})

describe('buildCondition: invalid matches throw PRX_MATCH_INVALID', () => {
  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a function', () => 1],
    ['undefined', undefined],
    ['a Date', new Date(0)],
    ['a Map', new Map()],
    ['a class instance', new (class Point { x = 1 })()],
    ['a symbol', Symbol('s')],
    ['a bigint', BigInt(1)],
  ])('comparing with %s', (_label, value) => {
    const error = definitionErrorOf(() => build((f) => f.chunkCount.eq(value as never)))
    expect(error.code).toBe('PRX_MATCH_INVALID')
    expect(error.message).toContain('"chunkCount"')
  })

  it('a non-JSON value nested in an array or object', () => {
    expect(definitionErrorOf(() => build((f) => f.chunkCount.in([1, Number.NaN])))).toMatchObject({ code: 'PRX_MATCH_INVALID' })
    expect(definitionErrorOf(() => build((f) => f.video.meta.eq({ codec: (() => 'x') as never })))).toMatchObject({ code: 'PRX_MATCH_INVALID' })
    expect(definitionErrorOf(() => build((f) => f.tags.in([['a', undefined as never]])))).toMatchObject({ code: 'PRX_MATCH_INVALID' })
  })

  it('every operator checks its operand', () => {
    const ops = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'notIn'] as const
    for (const op of ops) {
      const error = definitionErrorOf(() => build((f) => (f.chunkCount[op] as (v: unknown) => Condition)(Number.NaN)))
      expect(error.code, op).toBe('PRX_MATCH_INVALID')
    }
    expect(definitionErrorOf(() => build((f) => f.tags.contains(Number.NaN as never))).code).toBe('PRX_MATCH_INVALID')
    expect(definitionErrorOf(() => build((f) => f.tags.notContains((() => 1) as never))).code).toBe('PRX_MATCH_INVALID')
  })

  it('an operator on the root, with no path', () => {
    const error = definitionErrorOf(() => build((f) => (f as unknown as { eq(v: unknown): Condition }).eq(1)))
    expect(error.code).toBe('PRX_MATCH_INVALID')
    expect(error.message).toContain('needs a fact path')
  })

  it('a callback or combinator argument that is not a condition', () => {
    expect(definitionErrorOf(() => build(() => true as never)).code).toBe('PRX_MATCH_INVALID')
    expect(definitionErrorOf(() => build((f) => f.stage as never)).code).toBe('PRX_MATCH_INVALID')
    expect(definitionErrorOf(() => build((f) => f.all(f.stage.eq('new'), 'yes' as never))).code).toBe('PRX_MATCH_INVALID')
    expect(definitionErrorOf(() => build((f) => f.not(null as never))).code).toBe('PRX_MATCH_INVALID')
  })
})

describe('match types', () => {
  it('returns a Condition', () => {
    expectTypeOf(build((f) => f.stage.eq('new'))).toEqualTypeOf<Condition>()
  })

  it('refuses paths that are not in the facts', () => {
    // @ts-expect-error `nope` is not a fact
    expect(build((f) => f.nope.eq(1))).toEqual(leaf('nope', 'equal', 1))
    // @ts-expect-error `video` has no field `nope`
    expect(build((f) => f.video.nope.exists())).toEqual(leaf('video.nope', 'exists', true))
  })

  it('refuses compare values of the wrong type', () => {
    // @ts-expect-error `stage` is a string enum: gt takes a string, not a number
    build((f) => f.stage.gt(5))
    // @ts-expect-error 'bogus' is not a stage
    build((f) => f.stage.eq('bogus'))
    // @ts-expect-error 'bogus' is not a stage
    build((f) => f.stage.in(['new', 'bogus']))
    // @ts-expect-error chunkCount is a number
    build((f) => f.chunkCount.eq('3'))
    // @ts-expect-error fact-to-fact: a number compared with a string path
    build((f) => f.encoded.eq(f.name))
    // @ts-expect-error booleans have no order
    build((f) => f.ready.gt(true))
    // @ts-expect-error arrays have no order
    build((f) => f.tags.gt(1))
    // @ts-expect-error strings have no contains (arrays do)
    build((f) => f.name.contains('x'))
    // @ts-expect-error tags hold strings
    build((f) => f.tags.contains(1))
    // the right types compile
    build((f) => f.all(f.stage.eq('new'), f.encoded.lte(f.chunkCount), f.tags.contains(f.name), f.video.bytes.gte(1)))
  })
})

/** Facts with every kind of nesting a path can go through. */
type Deep = {
  stage: 'new' | 'done'
  translated: Record<string, Record<string, string>>
  items: { sku: string; qty: number }[]
  byKey: Record<string, string[]>
  pair: [string, number]
  video?: { uri: string; meta?: { codec: string } | undefined } | undefined
  note: string | null
  shape: { kind: 'circle'; r: number } | { kind: 'square'; side: number }
}

describe('fact path types (PathValue, Paths, ctx.set / ctx.setPath)', () => {
  it('PathValue walks nested records, arrays by index, records of arrays, tuples, optional fields and unions', () => {
    expectTypeOf<PathValue<{ translated: Record<string, Record<string, string>> }, 'translated.fi.3'>>().toEqualTypeOf<string>()
    expectTypeOf<PathValue<Deep, 'translated.fi'>>().toEqualTypeOf<Record<string, string>>()
    expectTypeOf<PathValue<Deep, 'translated.fi.3'>>().toEqualTypeOf<string>()
    expectTypeOf<PathValue<Deep, 'items.0'>>().toEqualTypeOf<{ sku: string; qty: number }>()
    expectTypeOf<PathValue<Deep, 'items.12.qty'>>().toEqualTypeOf<number>()
    expectTypeOf<PathValue<Deep, 'byKey.fi'>>().toEqualTypeOf<string[]>()
    expectTypeOf<PathValue<Deep, 'byKey.fi.2'>>().toEqualTypeOf<string>()
    expectTypeOf<PathValue<Deep, 'pair.1'>>().toEqualTypeOf<number>()
    expectTypeOf<PathValue<Deep, 'video.uri'>>().toEqualTypeOf<string>()
    expectTypeOf<PathValue<Deep, 'video.meta.codec'>>().toEqualTypeOf<string>()
    expectTypeOf<PathValue<Deep, 'note'>>().toEqualTypeOf<string | null>()
    expectTypeOf<PathValue<Deep, 'shape.r'>>().toEqualTypeOf<number>()
    expectTypeOf<PathValue<Deep, 'shape.kind'>>().toEqualTypeOf<'circle' | 'square'>()
    expectTypeOf<PathValue<Deep, `translated.${string}.${number}`>>().toEqualTypeOf<string>()
    // not paths of Deep
    expectTypeOf<PathValue<Deep, 'stagee'>>().toBeNever()
    expectTypeOf<PathValue<Deep, 'items.first'>>().toBeNever()
    expectTypeOf<PathValue<Deep, 'stage.length'>>().toBeNever()
    expectTypeOf<PathValue<Deep, 'video.url'>>().toBeNever()
  })

  it('Paths lists fields, record keys, array indexes and the fields of union members', () => {
    expectTypeOf<'translated.fi.3'>().toExtend<Paths<Deep>>()
    expectTypeOf<'items.0.qty'>().toExtend<Paths<Deep>>()
    expectTypeOf<'byKey.fi.2'>().toExtend<Paths<Deep>>()
    expectTypeOf<'video.meta.codec'>().toExtend<Paths<Deep>>()
    expectTypeOf<'shape.side'>().toExtend<Paths<Deep>>()
    expectTypeOf<'stagee'>().not.toExtend<Paths<Deep>>()
    expectTypeOf<'items.first'>().not.toExtend<Paths<Deep>>()
    expectTypeOf<'stage.x'>().not.toExtend<Paths<Deep>>()
    expectTypeOf<'video.url'>().not.toExtend<Paths<Deep>>()
  })

  it('ctx.setPath and ctx.set take valid paths with values of their types, without casts, and refuse the rest', () => {
    const commands: Command[] = []
    const ctx = recordingContext<Deep>(commands, 'test')
    const lang: string = 'fi'
    const n: number = 3
    const key: string = 'k'
    ctx.setPath('translated.fi.3', 'kolme')
    ctx.setPath(`translated.${lang}.${n}`, 'kolme')
    ctx.setPath(`items.${n}.qty`, 2)
    ctx.setPath(`byKey.${key}.${n}`, 'x')
    ctx.setPath('video.meta.codec', 'h265')
    ctx.set({ 'translated.fi.3': 'kolme', 'video.uri': 's3://x', 'items.0': { sku: 'a', qty: 1 }, 'shape.r': 2 })
    // @ts-expect-error a nested record entry holds a string
    ctx.setPath('translated.fi.3', 3)
    // @ts-expect-error a nested record entry holds a string, not a record
    ctx.setPath(`translated.${lang}.${n}`, { x: 'y' })
    // @ts-expect-error `stagee` is not a fact
    ctx.setPath('stagee', 'new')
    // @ts-expect-error array elements are reached by index, not by name
    ctx.setPath('items.first', { sku: 'a', qty: 1 })
    // @ts-expect-error `qty` is a number
    ctx.setPath('items.0.qty', '2')
    // @ts-expect-error items have no `sku2`
    ctx.setPath('items.0.sku2', 'a')
    // @ts-expect-error strings have no fields
    ctx.setPath('stage.x', 'y')
    // @ts-expect-error video has no field `url`
    ctx.set({ 'video.url': 'x' })
    expect(commands[0]).toEqual({ op: 'set', patch: { 'translated.fi.3': 'kolme' } })
  })

  it('the match builder reaches array elements by index', () => {
    const items = buildCondition<Deep>((f) => f.items[0]!.sku.eq('a'))
    expect(items).toEqual(leaf('items.0.sku', 'equal', 'a'))
    // @ts-expect-error items hold objects: `sku` is a string
    buildCondition<Deep>((f) => f.items[0]!.sku.eq(1))
  })
})

describe('factPathProblem: a path against a facts schema in JSON Schema', () => {
  const schema = z.toJSONSchema(z.object({
    stage: z.enum(['new', 'done']).default('new'),
    translated: z.record(z.string(), z.record(z.string(), z.string())).default({}),
    items: z.array(z.object({ sku: z.string(), qty: z.number() })),
    byKey: z.record(z.string(), z.array(z.string())),
    sizes: z.partialRecord(z.enum(['small', 'large']), z.number()),
    pair: z.tuple([z.string(), z.number()]),
    video: z.object({ uri: z.string(), meta: z.object({ codec: z.string() }).nullish() }).optional(),
    note: z.string().nullable(),
    shape: z.discriminatedUnion('kind', [z.object({ kind: z.literal('circle'), r: z.number() }), z.object({ kind: z.literal('square'), side: z.number() })]),
    either: z.union([z.object({ a: z.string() }), z.object({ b: z.string() })]),
    extra: z.looseObject({ known: z.string() }),
    anything: z.unknown(),
  }), { io: 'input', unrepresentable: 'any' })

  it('accepts valid paths through records, arrays, tuples, wrappers and unions', () => {
    for (const path of ['stage', 'translated', 'translated.fi', 'translated.fi.3', 'items', 'items.0', 'items.12.qty', 'byKey.fi.2', 'sizes.small',
      'pair.1', 'video', 'video.uri', 'video.meta.codec', 'note', 'shape.kind', 'shape.r', 'shape.side', 'either.a', 'either.b', 'extra.known', 'extra.whatever.below',
      'anything.at.all']) {
      expect(factPathProblem(schema, path), path).toBeNull()
    }
  })

  it('names the first segment that is not in the schema, and the closest known name', () => {
    expect(factPathProblem(schema, 'stagee')).toEqual(expect.objectContaining({ valid: 0, reason: 'the facts schema has no field "stagee"', suggestion: 'stage' }))
    expect(factPathProblem(schema, 'video.urii')).toEqual(expect.objectContaining({ valid: 1, reason: 'video has no field "urii"', suggestion: 'uri', known: ['meta', 'uri'] }))
    expect(factPathProblem(schema, 'video.meta.codek')).toEqual(expect.objectContaining({ valid: 2, suggestion: 'codec' }))
    expect(factPathProblem(schema, 'items.first')?.reason).toMatch(/^items is an array: its elements are reached by index \(items\.0\)/)
    expect(factPathProblem(schema, 'items.0.skus')).toEqual(expect.objectContaining({ valid: 2, suggestion: 'sku' }))
    expect(factPathProblem(schema, 'stage.x')?.reason).toBe('stage holds a string, which has no fields')
    expect(factPathProblem(schema, 'translated.fi.3.x')?.reason).toBe('translated.fi.3 holds a string, which has no fields')
    expect(factPathProblem(schema, 'sizes.medium')).toEqual(expect.objectContaining({ valid: 1, reason: 'sizes has no key "medium" (its keys are "small", "large")' }))
    expect(factPathProblem(schema, 'pair.2')?.reason).toBe('pair holds 2 items, so it has no index 2')
    expect(factPathProblem(schema, 'shape.radius')).toEqual(expect.objectContaining({ valid: 1, known: ['kind', 'r', 'side'] }))
    expect(factPathProblem(schema, 'either.c')).toEqual(expect.objectContaining({ valid: 1, known: ['a', 'b'] }))
    expect(factPathProblem(schema, 'note.x')?.reason).toBe('note holds a string or null, which has no fields')
    expect(factPathProblem(schema, 'zzzzzz')?.suggestion).toBeUndefined()
  })

  it('a prefix with children (a template with a computed rest) must hold an object, record or array', () => {
    expect(factPathProblem(schema, 'translated', { children: true })).toBeNull()
    expect(factPathProblem(schema, 'items', { children: true })).toBeNull()
    expect(factPathProblem(schema, 'stage', { children: true })?.reason).toBe('stage holds a string, which has no fields')
    expect(factPathProblem(schema, 'stagee', { children: true })?.suggestion).toBe('stage')
  })

  it('follows local $refs (recursive schemas) and takes what it cannot read as valid', () => {
    const tree = { type: 'object', properties: { node: { $ref: '#/$defs/Node' } }, $defs: { Node: { type: 'object', properties: { name: { type: 'string' }, child: { $ref: '#/$defs/Node' } } } } }
    expect(factPathProblem(tree, 'node.child.child.name')).toBeNull()
    expect(factPathProblem(tree, 'node.child.nam')?.suggestion).toBe('name')
    expect(factPathProblem({ type: 'object', properties: { x: { $ref: 'https://elsewhere' } } }, 'x.y.z')).toBeNull()
    expect(factPathProblem({}, 'any.path')).toBeNull()
  })
})

const double = defineFunction({
  name: 'double',
  input: z.object({ n: z.number().int() }),
  output: z.object({ doubled: z.number(), label: z.string() }),
  handler: ({ n }) => ({ doubled: n * 2, label: `n=${n}` }),
})

const WfFacts = z.object({ stage: z.enum(['new', 'waiting', 'done', 'failed']), n: z.number().int(), label: z.string().optional() })
const wfBase = {
  input: z.object({ n: z.number().int() }),
  facts: WfFacts,
  init: (input: { n: number }) => ({ stage: 'new' as const, n: input.n }),
}

describe('rule types through defineWorkflow', () => {
  it('a reaction receives the output and call input of the function its action called', () => {
    const wf = defineWorkflow({
      ...wfBase,
      name: 'typed',
      rules: (rule) => [
        rule('double').match((f) => f.stage.eq('new'))
          .action((facts, ctx) => {
            ctx.set({ stage: 'waiting' })
            return ctx.call(double, { n: facts.n })
          })
          .reaction((_facts, out, ctx, call) => {
            expectTypeOf(out).toEqualTypeOf<{ doubled: number; label: string }>()
            expectTypeOf(call).toEqualTypeOf<CallInfo<{ n: number }>>()
            ctx.set({ stage: 'done', n: out.doubled, label: out.label })
          })
          .error((_facts, failure, ctx) => {
            expectTypeOf(failure).toEqualTypeOf<Failure>()
            ctx.set({ stage: 'failed' })
          }),
      ],
    })
    const [r] = wf.rules
    expect(r).toMatchObject({ kind: 'praxis.rule', name: 'double', priority: 0, condition: leaf('stage', 'equal', 'new') })

    // The sections really are the typed callbacks: run them on a recording context.
    const commands: Command[] = []
    const ctx = recordingContext<z.output<typeof WfFacts>>(commands, 'test')
    const handle = r!.sections.action({ stage: 'new', n: 21 }, ctx)
    expect(handle).toEqual({ function: 'double', count: 1 })
    r!.sections.reaction!({ stage: 'waiting', n: 21 }, { doubled: 42, label: 'n=21' } as never, ctx, { id: 'i1', input: { n: 21 }, key: null, attempts: 1 } as never)
    expect(commands.map((c) => (c.op === 'set' ? c.patch : c.op))).toEqual([{ stage: 'waiting' }, 'call', { stage: 'done', n: 42, label: 'n=21' }])
  })

  it('refuses a reaction that treats the output as the wrong type, and a call with the wrong input', () => {
    const wf = defineWorkflow({
      ...wfBase,
      name: 'mistyped',
      rules: (rule) => [
        rule('wrongOutput').match((f) => f.stage.eq('new'))
          .action((facts, ctx) => ctx.call(double, { n: facts.n }))
          .reaction((_facts, out, ctx) => {
            // @ts-expect-error `doubled` is a number, `label` a string
            ctx.set({ label: out.doubled })
            // @ts-expect-error numbers have no toUpperCase
            out.doubled.toUpperCase()
            // @ts-expect-error the output has no `uri`
            ctx.set({ label: out.uri })
          }),
        rule('wrongInput').match((f) => f.stage.eq('waiting'))
          .action((_facts, ctx) => {
            // @ts-expect-error `n` must be a number
            ctx.call(double, { n: 'two' })
            // @ts-expect-error `n` is required
            ctx.call(double, {})
            // @ts-expect-error no such stage
            ctx.set({ stage: 'bogus' })
            // @ts-expect-error no such fact
            ctx.set({ nope: 1 })
          }),
        rule('noCall').match((f) => f.stage.eq('done'))
          .action((_facts, ctx) => ctx.set({ stage: 'done' }))
          // @ts-expect-error an action that returns no call handle has no reaction
          .reaction(() => undefined),
      ],
    })
    expect(wf.rules.map((r) => r.name)).toEqual(['wrongOutput', 'wrongInput', 'noCall'])
  })
})

describe('definition-time errors', () => {
  it('two rules with one name: PRX_RULE_DUPLICATE', () => {
    const error = definitionErrorOf(() => defineWorkflow({
      ...wfBase,
      name: 'dup',
      rules: (rule) => [
        rule('same').match((f) => f.stage.eq('new')).action((_facts, ctx) => ctx.set({ stage: 'done' })),
        rule('other').match((f) => f.stage.eq('done')).action((_facts, ctx) => ctx.complete()),
        rule('same').match((f) => f.stage.eq('waiting')).action((_facts, ctx) => ctx.set({ stage: 'done' })),
      ],
    }))
    expect(error.code).toBe('PRX_RULE_DUPLICATE')
    expect(error.message).toContain('"same"')
  })

  it('.action before .match: PRX_RULE_INCOMPLETE', () => {
    // @ts-expect-error a rule builder has no action before its match
    const early = () => rule<z.output<typeof WfFacts>>('early').action(() => undefined)
    expect(definitionErrorOf(early).code).toBe('PRX_RULE_INCOMPLETE')
    expect(definitionErrorOf(early).message).toContain('early')

    // after priority, still no action
    // @ts-expect-error a rule builder has no action before its match
    const prioritised = () => rule<z.output<typeof WfFacts>>('prioritised').priority(3).action(() => undefined)
    expect(definitionErrorOf(prioritised).code).toBe('PRX_RULE_INCOMPLETE')
  })

  it('a rules entry that is not a finished rule: PRX_RULE_INCOMPLETE', () => {
    const matchedOnly = () => defineWorkflow({
      ...wfBase,
      name: 'halfDone',
      rules: (rule) => [
        rule('ok').match((f) => f.stage.eq('new')).action((_facts, ctx) => ctx.set({ stage: 'done' })),
        // @ts-expect-error a matched rule without an action is not a RuleDefinition
        rule('half').match((f) => f.stage.eq('done')),
      ],
    })
    const error = definitionErrorOf(matchedOnly)
    expect(error.code).toBe('PRX_RULE_INCOMPLETE')
    expect(error.message).toContain('rules[1]')

    const bare = () => defineWorkflow({
      ...wfBase,
      name: 'bare',
      // @ts-expect-error neither a builder nor null is a RuleDefinition
      rules: (rule) => [rule('bare'), null],
    })
    const bareError = definitionErrorOf(bare)
    expect(bareError.code).toBe('PRX_RULE_INCOMPLETE')
    expect(bareError.message).toContain('rules[0]')
  })

  it('a second match on one rule is refused', () => {
    const twice = () => rule<z.output<typeof WfFacts>>('twice').match((f) => f.stage.eq('new'))
      // @ts-expect-error a matched rule has no second match
      .match((f: never) => f)
    expect(definitionErrorOf(twice).code).toBe('PRX_DEFINITION_INVALID')
  })

  it('an invalid match inside a workflow fails its definition', () => {
    const error = definitionErrorOf(() => defineWorkflow({
      ...wfBase,
      name: 'badMatch',
      rules: (rule) => [rule('nan').match((f) => f.n.gt(Number.NaN)).action((_facts, ctx) => ctx.complete())],
    }))
    expect(error.code).toBe('PRX_MATCH_INVALID')
  })
})
