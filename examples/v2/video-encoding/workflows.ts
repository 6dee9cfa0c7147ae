/**
 * Version 2 of the encode workflow (version 1: examples/video-encoding/workflows.ts), deployed over
 * it as the same service: `praxis deploy examples/v2/video-encoding`. It adds one rule, `upgrade`:
 * a video encoded with the old `h264` recipe is encoded again with `h265`. The workflow reopens
 * completed instances (`reopen: true`), so the deploy reaches the videos that were already done:
 * each is reopened, re-encoded and completed again, and no workflow is started.
 *
 *   done (h264) ─upgrade─▶ encoding (h265) ─encode×N─▶ … ─index─▶ done (h265)
 */
import { z } from 'zod'
import { defineWorkflow } from '../../../sdk/index.js'
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
  // A deploy's new or changed rules reach completed videos too (here: `upgrade`).
  reopen: true,
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
        // Keyed by recipe too: a call key is an instance's for good, and an upgraded video encodes
        // its chunks again.
        return ctx.callEach(encodeChunk, chunks, { keys: chunks.map((c) => `${facts.recipe}-chunk-${c.chunk}`) })
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

    // The better encoding: a video done with h264 is encoded again with h265. Resetting the stage
    // makes encode, assemble, index and finish match again, so they fire again, and finish
    // completes the reopened instance with the new video.
    rule('upgrade')
      .match((f) => f.all(f.stage.eq('done'), f.recipe.eq('h264')))
      .action((_facts, ctx) => ctx.set({ stage: 'encoding', recipe: 'h265', encoded: 0, chunks: {} })),

    rule('finish')
      .match((f) => f.all(f.stage.eq('done'), f.video.uri.exists(), f.indexUri.exists()))
      .action((facts, ctx) => ctx.complete({ video: facts.video!.uri, bytes: facts.video!.bytes, index: facts.indexUri!, chunks: facts.chunkCount })),
  ],
})
