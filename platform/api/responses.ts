/**
 * Response schemas of the REST API (zod), for its OpenAPI document (`GET /docs/json`). They
 * describe the JSON each route sends (timestamps as ISO 8601 strings, as `JSON.stringify` writes a
 * date). Production replies are not checked against them (the serializer is `JSON.stringify`);
 * `buildApi({ checkResponses: true })` checks every reply against its route's schema, and the
 * tests run with it. Objects are strict: a field a route sends and this file does not name is a
 * failed check, so the document cannot fall behind the routes unnoticed. Where a route sends a
 * type of another layer (`InstanceView`, `RunProgress`, …), `ResponseFieldChecks` at the end
 * makes a field added to that type a compile error here until it is documented.
 *
 * `named` schemas are shown once under `components/schemas` and referred to (`$ref`) wherever a
 * route uses them; `described` ones carry their description into the document (registry.ts).
 */
import { z } from 'zod'
import { ServiceManifest } from '../../sdk/manifest.js'
import type { DeployPreview as DeployPreviewOf, MigrationReach as MigrationReachOf, RuleReach as RuleReachOf, WorkflowChanges as WorkflowChangesOf } from '../engine/index.js'
import { ERRORS, type ErrorCode } from '../errors.js'
import type { RunProgress } from '../queue/index.js'
import type { InstanceView, TimelineEntry as TimelineEntryOf, Waiting as WaitingOf } from '../store/index.js'
import { described, named } from './registry.js'
import { InstanceStatus } from './schemas.js'

const timestamp = z.iso.datetime()
const json = z.unknown()
const count = z.number().int().min(0)
const version = z.number().int().positive()
const digits = z.string().regex(/^\d+$/)

/** `{ error: { code, message, details } }`: every error the API answers. */
export const ErrorEnvelope = named(z.strictObject({
  error: z.strictObject({
    code: described(z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]), 'stable error code (docs/errors.md)'),
    message: described(z.string(), 'what was wrong, where, and what to do next'),
    details: described(json, 'null, or what the code documents: the invalid fields with their paths, the limit exceeded, …'),
  }),
}), 'Error', 'every error answer: a stable code, a message for people, and details for programs')


/** An instance as the API shows it (store/instances.ts `InstanceView`). */
export const Instance = named(z.strictObject({
  id: z.uuid(),
  workflow: z.string(),
  service: z.string(),
  status: InstanceStatus,
  revision: described(count, 'increases with every step that changed the instance'),
  facts: described(z.record(z.string(), json), "the workflow's facts, as its facts schema describes them (see the service's manifest)"),
  factsVersion: described(z.number().int().min(1), "the version of the workflow's facts schema the facts are in (its `factsVersion`)"),
  result: described(json, 'what the completing rule returned; null until the instance completes'),
  error: described(z.strictObject({ message: z.string(), details: json }).nullable(), 'why the instance failed; null unless it failed'),
  bundleVersion: described(version, "the version of its service whose rules ran its last step (its next step runs under the service's active version)"),
  createdAt: timestamp,
  updatedAt: timestamp,
}), 'Instance', 'an instance of a workflow: its status and facts')

/** A pool a running instance waits on with no live worker to serve it (store/capacity.ts `Waiting`). */
export const Waiting = named(z.strictObject({
  pool: described(z.string(), 'service:pool, or @child for child workflow starts'),
  function: described(z.string(), 'the function of its oldest call waiting there'),
  invocations: described(count, "the instance's calls waiting on the pool"),
  since: described(timestamp, 'when the oldest of them was made'),
  reason: z.string(),
  fix: described(z.string(), 'the command that starts a worker for the pool'),
}), 'Waiting', 'a pool a running instance has calls waiting on, with no live worker to serve them')

export const InstanceDetail = named(Instance.extend({
  waiting: described(z.array(Waiting), 'empty unless the instance is running or paused and waits on a pool no live worker serves'),
}), 'InstanceDetail', 'an instance, and the pools it waits on with no worker to serve them')

export const StartedInstance = z.strictObject({
  id: z.uuid(),
  status: InstanceStatus,
  revision: count,
  created: described(z.boolean(), 'false when the idempotency key had started this instance already (the answer is then 200)'),
})

export const InstanceList = z.strictObject({
  instances: described(z.array(Instance), 'newest first'),
  nextCursor: described(z.string().nullable(), 'pass as `cursor` for the next page; null on the last page'),
})

export const TimelineEntry = named(z.strictObject({
  id: described(digits, 'increasing; pass the last one as `after` to read on'),
  revision: count,
  kind: described(z.string(), 'rule.fired, invocation.scheduled, invocation.succeeded, signal.received, pool.unserved, …'),
  rule: z.string().nullable(),
  data: json,
  at: timestamp,
}), 'TimelineEntry', 'one thing that happened to an instance')

export const Timeline = z.strictObject({
  entries: described(z.array(TimelineEntry), 'oldest first'),
  nextCursor: described(z.string().nullable(), 'pass as `after` for the next page; null when this page is not full'),
})

export const SignalAccepted = z.strictObject({
  delivered: described(z.boolean(), 'false for a duplicate: a signal with this signalId was delivered before'),
  duplicate: z.boolean(),
})

/** Per workflow, the rules a deploy adds, changes and removes (engine/reprocess.ts `WorkflowChanges`). */
export const WorkflowChanges = named(z.strictObject({
  workflow: z.string(),
  added: z.array(z.string()),
  changed: z.array(z.string()),
  removed: z.array(z.string()),
}), 'WorkflowChanges', 'the rules of a workflow a deploy adds, changes (by fingerprint) and removes')

/** An added or changed rule's reach now (engine/reprocess.ts `RuleReach`). */
export const RuleReach = named(z.strictObject({
  workflow: z.string(),
  rule: z.string(),
  change: z.enum(['added', 'changed']),
  running: described(count, 'running instances it would fire on now'),
  finished: described(count, 'completed instances its match holds on now: reopened and fired on when the workflow opts in (`reopens`)'),
  reopens: z.boolean(),
  how: described(z.enum(['sql', 'host']), 'counted in SQL (the match compiles) or by the condition evaluator over the facts'),
}), 'RuleReach', 'the instances an added or changed rule would fire on now')

/** A workflow whose facts version a deploy raises (engine/reprocess.ts `MigrationReach`). */
export const MigrationReach = named(z.strictObject({
  workflow: z.string(),
  to: described(z.number().int(), 'the facts version the deploy brings'),
  running: described(count, 'running instances with older facts: each is migrated (or fails, if `migrate` cannot)'),
  finished: described(count, 'completed instances with older facts: migrated only where the workflow reopens them and a rule fires'),
}), 'MigrationReach', "the instances whose facts a deploy's `migrate` would bring to the workflow's new facts version")

const ReprocessingStarted = described(z.strictObject({
  id: described(digits, 'GET /v1/services/{service}/reprocessing/{id} shows its progress'),
  total: described(count, 'instances it walks'),
}).nullable(), 'the background run that reaches old work with the added and changed rules; null when nothing was created')

/** What a deploy would do (engine/deploy.ts `DeployPreview`): `?dryRun=true`. */
export const DeployPreview = named(z.strictObject({
  service: z.string(),
  version: described(version.nullable(), 'the active version now; null before the first deploy'),
  changes: z.array(WorkflowChanges),
  fires: z.array(RuleReach),
  reopens: described(z.boolean(), 'whether completed instances would be reopened'),
  migrations: z.array(MigrationReach),
}), 'DeployPreview', 'what a deploy would change and whom its added or changed rules would reach now; nothing is stored')

export const Deployed = named(z.strictObject({
  service: z.string(),
  version: described(version, 'the active version after the deploy'),
  created: described(z.boolean(), 'false when the code and rules are those of the active version (nothing deployed; the answer is then 200)'),
  reevaluating: described(count, 'running instances the reprocessing run walks'),
  changes: z.array(WorkflowChanges),
  reprocessing: ReprocessingStarted,
  workflows: z.array(z.strictObject({ name: z.string(), rules: z.array(z.strictObject({ name: z.string(), fingerprint: z.string() })) })),
  unservedPools: described(z.array(z.string()), "the service's function pools (from the manifest) no live worker serves yet"),
}), 'Deployment', 'a deploy: the version now active, what changed, and the run that reaches old work')

export const RolledBack = named(z.strictObject({
  service: z.string(),
  version: described(version, 'the new version, holding the code and manifest of version `from`'),
  from: described(version, 'the version whose rules are active again'),
  created: z.boolean(),
  reevaluating: count,
  changes: z.array(WorkflowChanges),
  reprocessing: ReprocessingStarted,
}), 'Rollback', 'a rollback: a deploy of an older version')

export const RollbackPreview = named(DeployPreview.extend({
  from: described(version, 'the version whose rules would be active again'),
}), 'RollbackPreview', 'what a rollback would change; nothing is stored')

export const DeploymentList = z.strictObject({
  deployments: described(z.array(z.strictObject({
    version,
    active: z.boolean(),
    codeHash: described(z.string(), 'hex SHA-256 of the bundle'),
    createdAt: timestamp,
  })), 'newest first; empty for a service your tenant never deployed'),
})

/** A reprocessing run's progress (queue/reprocess.ts `RunProgress`). */
export const ReprocessingRun = named(z.strictObject({
  id: digits,
  service: z.string(),
  version: described(version, 'the version whose rules it reaches old work with'),
  status: z.enum(['running', 'done', 'superseded']),
  total: count,
  walked: count,
  queued: described(count, 'instances given an evaluation under the new version'),
  evaluated: count,
  fired: count,
  failed: count,
  createdAt: timestamp,
  updatedAt: timestamp,
  finishedAt: timestamp.nullable(),
}), 'ReprocessingRun', "a deploy's background walk over old work, and how far it got")

export const ReprocessingRuns = z.strictObject({ runs: described(z.array(ReprocessingRun), 'newest first, at most 20') })

export const DeployedManifest = named(ServiceManifest.extend({
  version: described(version, 'the active version this manifest belongs to'),
}), 'DeployedManifest', "the active version's service manifest: what `praxis codegen --from` reads")

export const Health = z.strictObject({ status: z.literal('ok') })

/** Prometheus' text exposition format (version 0.0.4). */
export const MetricsText = described(z.string(), "Prometheus' text exposition format, version 0.0.4")

/** `true`, or the fields only one of the schema and the type has (a compile error names them). */
type SameFields<S extends z.ZodType, T> = [Exclude<keyof z.output<S>, keyof T> | Exclude<keyof T, keyof z.output<S>>] extends [never]
  ? true
  : { fieldsInOnlyOneOf: Exclude<keyof z.output<S>, keyof T> | Exclude<keyof T, keyof z.output<S>>; schema: S }
type Expect<T extends true> = T
/** `true` when a schema's values are exactly a type's (an enum restated here must stay the other layer's). */
type SameValues<S extends z.ZodType, T> = [z.output<S>] extends [T] ? ([T] extends [z.output<S>] ? true : { schema: S; values: z.output<S>; type: T }) : { schema: S; values: z.output<S>; type: T }

/**
 * The response schemas whose routes send a type of another layer have its fields, no more, no
 * fewer: a field added to one of those types fails to compile here until it is documented.
 */
export type ResponseFieldChecks = [
  Expect<SameFields<typeof Instance, InstanceView>>,
  Expect<SameFields<typeof Waiting, WaitingOf>>,
  Expect<SameFields<typeof TimelineEntry, TimelineEntryOf>>,
  Expect<SameFields<typeof DeployPreview, DeployPreviewOf>>,
  Expect<SameFields<typeof RuleReach, RuleReachOf>>,
  Expect<SameFields<typeof WorkflowChanges, WorkflowChangesOf>>,
  Expect<SameFields<typeof MigrationReach, MigrationReachOf>>,
  Expect<SameFields<typeof ReprocessingRun, RunProgress>>,
  Expect<SameValues<typeof InstanceStatus, InstanceView['status']>>,
  Expect<SameValues<typeof ReprocessingRun.shape.status, RunProgress['status']>>,
  Expect<SameValues<typeof RuleReach.shape.change, RuleReachOf['change']>>,
  Expect<SameValues<typeof RuleReach.shape.how, RuleReachOf['how']>>,
]
