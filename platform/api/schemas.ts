/**
 * Request schemas of the REST API (zod): the single source of validation (routes declare them as
 * `schema.params`, `querystring` and `body`; validation.ts), of error details, and of the request
 * side of the OpenAPI document (`described` fields carry their description into it).
 */
import { z } from 'zod'
import { ServiceManifest } from '../../sdk/manifest.js'
import { described } from './registry.js'

const json: z.ZodType<unknown> = z.unknown()

export const StartBody = z.object({
  input: described(json.default({}), "the workflow's input, as its input schema describes it (see the service's manifest)"),
  idempotencyKey: described(z.string().min(1).max(200).optional(), 'a retried start with the same key answers the instance it started (200, `created: false`)'),
}).strict()

export const InstanceParams = z.object({ id: described(z.uuid({ message: 'must be an instance id (a UUID)' }), 'the instance id') })

export const GetInstanceQuery = z.object({
  wait: described(z.literal('completed').optional(), '`completed`: wait until a running instance ends, or `timeoutMs` passes (long poll)'),
  timeoutMs: described(z.coerce.number().int().min(0).max(300_000).default(30_000), 'how long `wait` waits, in milliseconds'),
})

/** An instance's status (the store's; platform/api/responses.ts checks they stay one). */
export const InstanceStatus = z.enum(['running', 'completed', 'failed', 'cancelled', 'paused'])

export const ListQuery = z.object({
  workflow: described(z.string().min(1).optional(), 'only instances of this workflow: `name` or `service.name`'),
  status: described(InstanceStatus.optional(), 'only instances with this status'),
  limit: described(z.coerce.number().int().min(1).max(500).default(50), 'instances per page'),
  cursor: described(z.string().optional(), "the previous page's `nextCursor`, unchanged"),
})

export const TimelineQuery = z.object({
  after: described(z.string().regex(/^\d{1,18}$/, 'must be a timeline entry id').optional(), 'read the entries after this one (the last `id` read, or `nextCursor`)'),
  limit: described(z.coerce.number().int().min(1).max(1000).default(200), 'entries per page'),
})

export const SignalParams = InstanceParams.extend({ name: described(z.string().regex(/^[A-Za-z][\w.-]{0,99}$/, 'must be a signal name'), 'a signal the workflow declares') })
export const SignalBody = z.object({
  payload: described(json.default(null), "the signal's payload, as the workflow's schema for the signal describes it"),
  signalId: described(z.string().min(1).max(200).optional(), 'a retried signal with the same id is answered as a duplicate'),
}).strict()

export const ServiceParams = z.object({ service: described(z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,99}$/, 'must be a service name'), 'the service name') })
export const DryRunQuery = z.object({ dryRun: described(z.enum(['true', 'false']).optional().transform((v) => v === 'true'), '`true`: answer what would change, and store nothing') })
export const RollbackBody = z.object({ version: described(z.number().int().positive().optional(), 'the version to make active again; default: the one before the active version') }).strict()
export const RunParams = ServiceParams.extend({ run: described(z.string().regex(/^\d{1,18}$/, 'must be a reprocessing run id (digits)'), 'the reprocessing run id (a deploy answers it as `reprocessing.id`)') })
export const DeployBody = z.object({
  code: described(z.string().min(1).max(20_000_000), "the bundled rules: the service's workflows.ts as `praxis deploy` bundles it"),
  codeHash: described(z.string().optional(), 'hex SHA-256 of `code`: a corrupted upload is refused'),
  /**
   * `generated/manifest.json` as codegen wrote it: checked against the bundle, it gives the rules
   * their fingerprints (computed from the source) and adds the service's functions to the stored
   * manifest. Without it, fingerprints are derived from the bundle (refused for a service whose
   * rules already have fingerprints from the source) and the service's functions are unknown.
   */
  manifest: described(ServiceManifest.optional(), '`generated/manifest.json` as `praxis codegen` wrote it: rule fingerprints from the source, and the functions'),
}).strict()

export const WorkflowParams = z.object({ workflow: described(z.string().regex(/^([A-Za-z][A-Za-z0-9_-]{0,99}\.)?[A-Za-z][\w-]{0,99}$/, 'must be a workflow name, or service.workflow'), 'the workflow: `name` when unique in your tenant, else `service.name`') })
