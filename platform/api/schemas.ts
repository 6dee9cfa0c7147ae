/** Request schemas of the REST API (zod): the single source of validation and of error details. */
import { z } from 'zod'
import { ServiceManifest } from '../../sdk/manifest.js'

const json: z.ZodType<unknown> = z.unknown()

export const StartBody = z.object({
  input: json.default({}),
  idempotencyKey: z.string().min(1).max(200).optional(),
}).strict()

export const InstanceParams = z.object({ id: z.uuid({ message: 'must be an instance id (a UUID)' }) })

export const GetInstanceQuery = z.object({
  wait: z.literal('completed').optional(),
  timeoutMs: z.coerce.number().int().min(0).max(300_000).default(30_000),
})

export const ListQuery = z.object({
  workflow: z.string().min(1).optional(),
  status: z.enum(['running', 'completed', 'failed', 'cancelled', 'paused']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().optional(),
})

export const TimelineQuery = z.object({
  after: z.string().regex(/^\d{1,18}$/, 'must be a timeline entry id').optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
})

export const SignalParams = InstanceParams.extend({ name: z.string().regex(/^[A-Za-z][\w.-]{0,99}$/, 'must be a signal name') })
export const SignalBody = z.object({ payload: json.default(null), signalId: z.string().min(1).max(200).optional() }).strict()

export const ServiceParams = z.object({ service: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,99}$/, 'must be a service name') })
export const DryRunQuery = z.object({ dryRun: z.enum(['true', 'false']).optional().transform((v) => v === 'true') })
export const RollbackBody = z.object({ version: z.number().int().positive().optional() }).strict()
export const RunParams = ServiceParams.extend({ run: z.string().regex(/^\d{1,18}$/, 'must be a reprocessing run id (digits)') })
export const DeployBody = z.object({
  code: z.string().min(1).max(20_000_000),
  codeHash: z.string().optional(),
  /**
   * `generated/manifest.json` as codegen wrote it: checked against the bundle, it gives the rules
   * their fingerprints (computed from the source) and adds the service's functions to the stored
   * manifest. Without it, fingerprints are derived from the bundle (refused for a service whose
   * rules already have fingerprints from the source) and the service's functions are unknown.
   */
  manifest: ServiceManifest.optional(),
}).strict()

export const WorkflowParams = z.object({ workflow: z.string().regex(/^([A-Za-z][A-Za-z0-9_-]{0,99}\.)?[A-Za-z][\w-]{0,99}$/, 'must be a workflow name, or service.workflow') })
