/**
 * Functions of the thumbnails example: a renderer that fails for sources it cannot read, and a
 * placeholder renderer the workflow falls back to.
 */
import { z } from 'zod'
import { defineFunction, NonRetryableError } from '../../sdk/index.js'

/** Renders a thumbnail of the image. Unreadable sources fail: `broken://` transiently (retried), `.corrupt` for good. */
export const renderThumbnail = defineFunction({
  name: 'renderThumbnail',
  timeoutMs: 5_000,
  retry: { attempts: 3, backoff: 'exponential', initialDelayMs: 20, maxDelayMs: 200 },
  input: z.object({ image: z.string(), width: z.number().int().positive() }),
  output: z.object({ uri: z.string() }),
  handler: async ({ image, width }) => {
    if (image.endsWith('.corrupt')) throw new NonRetryableError(`${image} is not a decodable image`)
    if (image.startsWith('broken://')) throw new Error(`storage did not answer for ${image}`)
    return { uri: `${image}.w${width}.jpg` }
  },
})

/** A generic placeholder thumbnail of the requested width. */
export const placeholderThumbnail = defineFunction({
  name: 'placeholderThumbnail',
  timeoutMs: 5_000,
  input: z.object({ width: z.number().int().positive() }),
  output: z.object({ uri: z.string() }),
  handler: async ({ width }) => ({ uri: `placeholder://thumbnail.w${width}.jpg` }),
})
