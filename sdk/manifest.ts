/**
 * A service manifest: what `praxis codegen` writes to `generated/manifest.json`, what a deploy
 * stores, and what `GET /v1/services/:service/manifest` returns, so another service can generate a
 * typed client of it (service layering). Schemas are JSON Schemas (zod's, `io: 'input'`).
 */
import { z } from 'zod'

export const MANIFEST_FORMAT = 'praxis.manifest/1'

/**
 * How codegen computes rule fingerprints from the source (codegen/fingerprint.ts): `s1:` and 32
 * hex digits. A new normalisation is a new scheme, so fingerprints of different schemes are never
 * compared as if alike. A fingerprint without a scheme is the older kind, a hash of the code the
 * bundler emitted, which the rule server derives itself for a bundle deployed without a manifest.
 */
export const FINGERPRINT_SCHEME = 's1'
export const SOURCE_FINGERPRINT = /^s1:[0-9a-f]{32}$/

/** Locale-free order (by code point): manifests and generated files must not depend on the machine's locale. */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

const JsonSchema = z.record(z.string(), z.unknown())
/** `file:line`: text that ends up in generated comments, so one line and no comment end. */
const Source = z.string().regex(/^(?!.*\*\/)[^\r\n]{1,300}:\d{1,7}$/, 'must be file:line on one line, without */')

export const ManifestFunction = z.object({
  name: z.string().regex(/^[A-Za-z][\w.-]{0,99}$/),
  pool: z.string().regex(/^[A-Za-z][\w.-]{0,99}$/, 'must be a pool name'),
  timeoutMs: z.number().int().positive(),
  retry: z.object({ attempts: z.number().int().min(1), backoff: z.enum(['exponential', 'fixed']), initialDelayMs: z.number().min(0), maxDelayMs: z.number().min(0) }),
  input: JsonSchema,
  output: JsonSchema,
  /** `file:line` in the service, relative to its folder. */
  source: Source.optional(),
})

export const ManifestRule = z.object({
  name: z.string(),
  priority: z.number().int(),
  /** Computed from the rule's source by codegen (`s1:…`); the server uses it for the rule. */
  fingerprint: z.string(),
  /** The match as condition data; the server checks it against the bundle's (absent in manifests of older codegen). */
  condition: z.unknown().optional(),
  /** Fact paths the match reads. */
  paths: z.array(z.string()),
  hasReaction: z.boolean(),
  hasError: z.boolean(),
})

export const ManifestWorkflow = z.object({
  name: z.string().regex(/^[A-Za-z][\w-]{0,99}$/),
  input: JsonSchema,
  facts: JsonSchema,
  /** null when the workflow declares no result schema. */
  result: JsonSchema.nullable(),
  signals: z.record(z.string().regex(/^[A-Za-z][\w.-]{0,99}$/, 'must be a signal name'), JsonSchema),
  maxFirings: z.number().int().positive(),
  rules: z.array(ManifestRule),
  source: Source.optional(),
})

export const ServiceManifest = z.object({
  format: z.literal(MANIFEST_FORMAT),
  service: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,99}$/),
  functions: z.array(ManifestFunction),
  workflows: z.array(ManifestWorkflow),
})

export type ManifestFunction = z.infer<typeof ManifestFunction>
export type ManifestRule = z.infer<typeof ManifestRule>
export type ManifestWorkflow = z.infer<typeof ManifestWorkflow>
export type ServiceManifest = z.infer<typeof ServiceManifest>
