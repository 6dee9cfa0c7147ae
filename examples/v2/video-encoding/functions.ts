/**
 * Version 2 of the video-encoding service deploys the same functions as version 1
 * (examples/video-encoding/functions.ts, copied: a service folder is one version of the service,
 * and codegen reads its functions from its own functions.ts). Workers load this file; the rules
 * bundle only needs each function's name, schemas and policy.
 */
import { z } from 'zod'
import { defineFunction, NonRetryableError } from '../../../sdk/index.js'

const work = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason as Error) }, { once: true })
  })

const RECIPE = /^(h264|h265|vp9|av1)(-\d{3,4}p)?$/

/** Cuts the source into chunks of about `chunkSeconds`; the simulated source is `durationSeconds` long. */
export const splitVideo = defineFunction({
  name: 'splitVideo',
  pool: 'default',
  timeoutMs: 10_000,
  input: z.object({ source: z.string(), recipe: z.string(), durationSeconds: z.number().positive(), chunkSeconds: z.number().positive() }),
  output: z.object({ chunks: z.number().int().nonnegative() }),
  handler: async ({ recipe, durationSeconds, chunkSeconds }, { signal }) => {
    // An unknown recipe cannot succeed on a retry: fail at once, and the workflow fails.
    if (!RECIPE.test(recipe)) throw new NonRetryableError(`unknown recipe ${recipe}: use h264, h265, vp9 or av1, optionally with a height (h264-1080p)`)
    await work(5, signal)
    return { chunks: Math.ceil(durationSeconds / chunkSeconds) }
  },
})

/** Encodes one chunk with the recipe; returns where the encoded chunk lives. */
export const encodeChunk = defineFunction({
  name: 'encodeChunk',
  pool: 'encoders',
  timeoutMs: 60_000,
  retry: { attempts: 3, backoff: 'exponential', initialDelayMs: 200 },
  input: z.object({ source: z.string(), chunk: z.number().int().nonnegative(), recipe: z.string() }),
  output: z.object({ uri: z.string() }),
  handler: async ({ source, chunk, recipe }, { signal }) => {
    await work(10 + (chunk % 3) * 5, signal)
    return { uri: `${source}.${recipe}.chunk-${String(chunk).padStart(4, '0')}.mp4` }
  },
})

/** Joins the encoded chunks, in order, into one stream. */
export const assembleVideo = defineFunction({
  name: 'assembleVideo',
  timeoutMs: 30_000,
  input: z.object({ source: z.string(), recipe: z.string(), chunkUris: z.array(z.string()).min(1) }),
  output: z.object({ uri: z.string(), bytes: z.number().int() }),
  handler: async ({ source, recipe, chunkUris }, { signal }) => {
    await work(10, signal)
    return { uri: `${source}.${recipe}.mp4`, bytes: chunkUris.length * 1_048_576 }
  },
})

/** Builds the seek index of the assembled stream. */
export const indexVideo = defineFunction({
  name: 'indexVideo',
  timeoutMs: 30_000,
  input: z.object({ uri: z.string() }),
  output: z.object({ indexUri: z.string() }),
  handler: async ({ uri }, { signal }) => {
    await work(5, signal)
    return { indexUri: `${uri}.idx` }
  },
})
