/**
 * Functions of the publishing example: the work this service does itself. Encoding is not here:
 * it belongs to the video-encoding service, which this service layers on (see workflows.ts).
 */
import { z } from 'zod'
import { defineFunction } from '../../sdk/index.js'

/** Publishes a catalogue page for an encoded video; returns its address. */
export const publishPage = defineFunction({
  name: 'publishPage',
  pool: 'default',
  timeoutMs: 10_000,
  input: z.object({ title: z.string().min(1), video: z.string(), index: z.string() }),
  output: z.object({ url: z.url() }),
  handler: async ({ title }) => {
    await new Promise((resolve) => setTimeout(resolve, 5))
    const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')
    return { url: `https://catalogue.example/titles/${slug}` }
  },
})
