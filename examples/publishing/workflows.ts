/**
 * Service layering, the Cosmos way: a top-level service orchestrates a lower one. `publishTitle`
 * starts video-encoding's `encodeVideo` as a child workflow, through the typed reference codegen
 * generated from video-encoding's manifest (`praxis codegen examples/publishing --from <server>
 * --service video-encoding`, kept in generated/services/video-encoding/). The reaction receives the
 * child's result, typed by encodeVideo's `result` schema; the error section runs if it fails.
 *
 *   new ─encode (child: video-encoding.encodeVideo)─▶ publishing ─publish─▶ done
 */
import { z } from 'zod'
import { defineWorkflow } from '../../sdk/index.js'
import { publishPage } from './generated/functions.js'
import { encodeVideo } from './generated/services/video-encoding/workflows.js'

export const publishTitle = defineWorkflow({
  name: 'publishTitle',
  input: z.object({ title: z.string().min(1), source: z.string().min(1), recipe: z.string().min(1).default('h264-1080p') }),
  facts: z.object({
    title: z.string(),
    source: z.string(),
    recipe: z.string(),
    stage: z.enum(['new', 'encoding', 'publishing', 'done', 'failed']).default('new'),
    encoded: z.object({ video: z.string(), index: z.string(), chunks: z.number().int() }).optional(),
    page: z.string().optional(),
    problem: z.string().optional(),
  }),
  result: z.object({ page: z.string(), video: z.string() }),
  init: (input) => input,
  rules: (rule) => [
    rule('encode')
      .match((f) => f.stage.eq('new'))
      .action((facts, ctx) => {
        ctx.set({ stage: 'encoding' })
        return ctx.start(encodeVideo, { source: facts.source, recipe: facts.recipe })
      })
      .reaction((_facts, result, ctx) => ctx.set({ stage: 'publishing', encoded: { video: result.video, index: result.index, chunks: result.chunks } }))
      .error((_facts, failure, ctx) => {
        ctx.set({ stage: 'failed', problem: failure.message })
        ctx.fail(`encoding failed: ${failure.message}`)
      }),

    rule('publish')
      .match((f) => f.all(f.stage.eq('publishing'), f.encoded.video.exists()))
      .action((facts, ctx) => ctx.call(publishPage, { title: facts.title, video: facts.encoded!.video, index: facts.encoded!.index }))
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'done', page: out.url })),

    rule('finish')
      .match((f) => f.all(f.stage.eq('done'), f.page.exists()))
      .action((facts, ctx) => ctx.complete({ page: facts.page!, video: facts.encoded!.video })),
  ],
})
