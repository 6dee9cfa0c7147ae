/**
 * The thumbnails example shows an `error` section recovering from a failing function: when the
 * renderer fails for good (retries spent, or a fatal error), the rule records why and falls back
 * to a placeholder instead of failing the whole workflow.
 */
import { z } from 'zod'
import { defineWorkflow } from '../../sdk/index.js'
import { placeholderThumbnail, renderThumbnail } from './generated/functions.js'

export const makeThumbnail = defineWorkflow({
  name: 'makeThumbnail',
  input: z.object({ image: z.string().min(1), width: z.number().int().positive().max(4096).default(320) }),
  facts: z.object({
    image: z.string(),
    width: z.number().int(),
    stage: z.enum(['new', 'rendering', 'fallback', 'done']).default('new'),
    thumbnail: z.string().optional(),
    problem: z.object({ kind: z.string(), message: z.string(), attempts: z.number() }).optional(),
  }),
  init: (input) => input,
  rules: (rule) => [
    rule('render')
      .match((f) => f.stage.eq('new'))
      .action((facts, ctx) => {
        ctx.set({ stage: 'rendering' })
        return ctx.call(renderThumbnail, { image: facts.image, width: facts.width })
      })
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'done', thumbnail: out.uri }))
      .error((_facts, failure, ctx) => ctx.set({ stage: 'fallback', problem: { kind: failure.kind, message: failure.message, attempts: failure.attempts } })),

    rule('fallback')
      .match((f) => f.stage.eq('fallback'))
      .action((facts, ctx) => ctx.call(placeholderThumbnail, { width: facts.width }))
      .reaction((_facts, out, ctx) => ctx.set({ stage: 'done', thumbnail: out.uri })),

    rule('finish')
      .match((f) => f.all(f.stage.eq('done'), f.thumbnail.exists()))
      .action((facts, ctx) => ctx.complete({ thumbnail: facts.thumbnail ?? null, recovered: facts.problem !== undefined })),
  ],
})
