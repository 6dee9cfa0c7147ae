/**
 * The Plato side of the Cosmos encode example: facts plus rules. Each action records the change of
 * state, then calls a function; each reaction records the result; the next rule's match turns true.
 *
 *   new ─split─▶ encoding ─encode×N─▶ (encoded = chunkCount) ─assemble─▶ indexing ─index─▶ done
 */
import { z } from 'zod'
import { defineWorkflow } from '../../sdk/index.js'
import { assembleVideo, encodeChunk, indexVideo, splitVideo } from './generated/functions.js'

const Facts = z.object({
  source: z.string(),
  recipe: z.string(),
  durationSeconds: z.number().positive(),
  stage: z.enum(['new', 'splitting', 'encoding', 'assembling', 'indexing', 'done']).default('new'),
  chunkCount: z.number().int().nonnegative().default(0),
  encoded: z.number().int().nonnegative().default(0),
  /** Encoded chunk URIs by chunk number. */
  chunks: z.record(z.string(), z.string()).default({}),
  video: z.object({ uri: z.string(), bytes: z.number().int() }).optional(),
  indexUri: z.string().optional(),
})

/** One Cosmos encode request: a video source and a recipe. */
export const encodeVideo = defineWorkflow({
  name: 'encodeVideo',
  input: z.object({
    source: z.string().min(1),
    recipe: z.string().min(1),
    durationSeconds: z.number().positive().max(86_400).default(120),
  }),
  facts: Facts,
  /** What a caller gets back (a parent workflow's reaction, or the API's `result`). */
  result: z.object({ video: z.string(), bytes: z.number().int(), index: z.string(), chunks: z.number().int() }),
  init: (input) => input,
  rules: (rule) => [
    rule('split')
      .match((f) => f.stage.eq('new'))
      .action((facts, ctx) => {
        ctx.set({ stage: 'splitting' })
        return ctx.call(splitVideo, { source: facts.source, recipe: facts.recipe, durationSeconds: facts.durationSeconds, chunkSeconds: 30 })
      })
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'encoding', chunkCount: out.chunks })),

    rule('encode')
      .match((f) => f.all(f.stage.eq('encoding'), f.chunkCount.gt(0)))
      .action((facts, ctx) => {
        const chunks = Array.from({ length: facts.chunkCount }, (_, chunk) => ({ source: facts.source, chunk, recipe: facts.recipe }))
        return ctx.callEach(encodeChunk, chunks, { keys: chunks.map((c) => `chunk-${c.chunk}`) })
      })
      .reaction((facts, out, ctx, call) => {
        ctx.setPath(`chunks.${call.input.chunk}`, out.uri)
        ctx.set({ encoded: facts.encoded + 1 })
      }),

    // Higher priority than encode: with zero chunks both match at once, and assembling first
    // disables encode.
    rule('assemble')
      .priority(10)
      .match((f) => f.all(f.stage.eq('encoding'), f.encoded.eq(f.chunkCount)))
      .action((facts, ctx) => {
        ctx.set({ stage: 'assembling' })
        const chunkUris = Object.keys(facts.chunks).map(Number).sort((a, b) => a - b).map((n) => facts.chunks[String(n)]!)
        if (chunkUris.length === 0) return ctx.fail('the source produced no chunks to assemble', { source: facts.source })
        return ctx.call(assembleVideo, { source: facts.source, recipe: facts.recipe, chunkUris })
      })
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'indexing', video: out })),

    rule('index')
      .match((f) => f.all(f.stage.eq('indexing'), f.video.uri.exists()))
      .action((facts, ctx) => ctx.call(indexVideo, { uri: facts.video!.uri }))
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'done', indexUri: out.indexUri })),

    rule('finish')
      .match((f) => f.all(f.stage.eq('done'), f.video.uri.exists(), f.indexUri.exists()))
      .action((facts, ctx) => ctx.complete({ video: facts.video!.uri, bytes: facts.video!.bytes, index: facts.indexUri!, chunks: facts.chunkCount })),
  ],
})
