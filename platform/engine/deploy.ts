/** Deploying a bundle: load it to prove it works, store it as the next version, reach old work. */
import type pg from 'pg'
import { PraxisError } from '../errors.js'
import { startReprocessing } from '../queue/index.js'
import { getActiveBundle, getBundleByVersion, insertBundle, invokeTask, lockService, rollback, type BundleRow } from '../store/index.js'
import { jsonEqual } from '../../sdk/facts.js'
import { factPathProblem } from '../../sdk/paths.js'
import type { Json } from '../../sdk/match.js'
import { FINGERPRINT_SCHEME, SOURCE_FINGERPRINT, type ManifestFunction, type ServiceManifest } from '../../sdk/manifest.js'
import type { Limits } from '../config.js'
import { serviceManifest, storedFingerprints, usesSourceFingerprints, type Manifest } from './bundle.js'
import type { BundleCache } from './bundle-cache.js'
import { retryOutOfLimits } from './checks.js'
import { checkFactsVersions, countMigrations, countReach, ruleChanges, type MigrationReach, type RuleReach, type WorkflowChanges } from './reprocess.js'

/** graphile-worker's limit on a task identifier's length. */
const MAX_TASK_NAME = 128

export interface Deployment {
  bundle: BundleRow
  created: boolean
  manifest: Manifest
  /** Per workflow, the rules this deploy added, changed and removed. */
  changes: WorkflowChanges[]
  /** The background run that reaches old work with the added and changed rules (null: nothing created). */
  reprocessing: { id: string; total: number } | null
  /** Running instances that run walks (0 when no rule was added or changed). */
  reevaluating: number
}

/**
 * Validates and activates `code` as the next bundle of `service`: it is loaded in the tenant's own
 * isolate (its top-level code runs there, under the load limits, never on this thread) and its
 * self-description checked. Running instances of the service get an evaluation under the new
 * rules (changed or added rules whose match holds fire).
 *
 * Fingerprints decide which rules changed. With the manifest codegen wrote (`generated`), checked
 * against the bundle, each rule uses the manifest's, computed from its source. Without one, each
 * rule gets one derived from the bundled code (the older kind); that is refused for a service
 * whose active version has fingerprints from the source (unless it is the same code: a no-op),
 * since every rule would change fingerprint and fire again.
 */
export async function deployBundle(pool: pg.Pool, bundles: BundleCache, tenantId: string, service: string, code: string, codeHash: string, generated: ServiceManifest | null = null): Promise<Deployment> {
  const { validated, described } = await validate(bundles, tenantId, service, code, codeHash, generated)
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('begin')
    // The active version, read under the service's lock: concurrent deploys apply one after the other.
    const active = await lockService(client, tenantId, service)
    const { manifest, changes, rules, reopen, migrate } = plan(service, described, generated, active, codeHash)
    const { bundle, created } = await insertBundle(client, {
      tenantId, service, code, codeHash, manifest,
      ...(generated ? { generated: JSON.stringify(generated) } : {}),
      sameRules: (current) => fingerprintList(current.manifest) === fingerprintList(manifest),
    })
    // Always on, in the background: a run over the running instances of the workflows whose rules
    // were added or changed (their matches filter them in SQL where they compile).
    const reprocessing = created ? await startReprocessing(client, { tenantId, service, bundleId: bundle.id, version: bundle.version, rules, reopen, migrate }) : null
    await client.query('commit')
    bundles.forgetService(tenantId, service)
    // Its evaluations load it with its stored fingerprints, in an isolate of their own (another
    // key): the one that validated it would only take up room.
    if (storedFingerprints(manifest)) void bundles.sandbox.forget(validated.sandbox.key).catch(() => undefined)
    return { bundle, created, manifest, changes, reprocessing, reevaluating: reprocessing?.total ?? 0 }
  } catch (error) {
    broken = await rollback(client)
    throw error
  } finally {
    client.release(broken)
  }
}

/** Checks a bundle before it is stored or previewed: it loads in the tenant's isolate, and the manifest describes it. */
async function validate(bundles: BundleCache, tenantId: string, service: string, code: string, codeHash: string, generated: ServiceManifest | null): Promise<{ validated: Awaited<ReturnType<BundleCache['load']>>; described: Manifest }> {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,99}$/.test(service)) throw new PraxisError('PRX_BAD_REQUEST', `service name ${JSON.stringify(service)} is invalid: letters, digits, "_" and "-", starting with a letter`)
  // As the bundle describes itself: names, priorities, matches, and fingerprints from its code.
  const validated = await bundles.load(tenantId, service, code, codeHash)
  const described: Manifest = validated.manifest
  checkMatchPaths(service, described)
  if (generated) {
    checkGenerated(described, generated)
    for (const fn of generated.functions) checkFunction(tenantId, service, fn, bundles.limits)
  }
  return { validated, described }
}

/**
 * Every path a rule's match reads must exist in its workflow's facts schema: a match on another
 * path never turns true, and the instance would wait for ever. Codegen refuses such a path at its
 * line; this catches bundles that did not go through it (no manifest, or built by hand).
 */
function checkMatchPaths(service: string, described: Manifest): void {
  for (const workflow of described.workflows) {
    for (const rule of workflow.rules) {
      for (const path of rule.paths) {
        const problem = factPathProblem(workflow.factsSchema, path)
        if (!problem) continue
        throw new PraxisError('PRX_BUNDLE_INVALID', `rule ${JSON.stringify(rule.name)} of workflow ${workflow.name} (service ${service}) matches on fact path ${JSON.stringify(path)}, which is not in the facts schema (${problem.reason}${problem.suggestion ? `; did you mean ${JSON.stringify(problem.suggestion)}?` : ''}): such a match never turns true. Fix the path or add the field to the facts schema; \`praxis codegen <service-dir>\` names the line`, { details: { workflow: workflow.name, rule: rule.name, ...problem, known: problem.known.slice(0, 50) } })
      }
    }
  }
}

/**
 * What a checked bundle becomes against the active version, for a deploy and its preview alike:
 * its manifest with the fingerprints it keeps, and the rules it adds, changes and removes (refused
 * when it would lower a facts version).
 */
function plan(service: string, described: Manifest, generated: ServiceManifest | null, active: BundleRow | null, codeHash: string): ReturnType<typeof ruleChanges> & { manifest: Manifest } {
  const manifest = generated ? withManifestFingerprints(described, generated, active?.manifest) : withoutManifest(service, described, active, codeHash)
  const before = active ? active.manifest as Manifest : null
  checkFactsVersions(service, before, manifest)
  return { manifest, ...ruleChanges(before, manifest) }
}

/** What a deploy would do, without doing it (`praxis deploy --dry-run`). */
export interface DeployPreview {
  service: string
  /** The active version now (null: this would be the service's first deploy). */
  version: number | null
  changes: WorkflowChanges[]
  /** Per added or changed rule: the instances whose facts match it now, running and finished. */
  fires: RuleReach[]
  /** Whether completed instances would be reopened (a workflow with an added or changed rule opts in: `reopen`). */
  reopens: boolean
  /** Per workflow whose facts version the deploy raises: the instances whose facts `migrate` would bring to it. */
  migrations: MigrationReach[]
}

/**
 * Previews a deploy: the bundle is validated as `deployBundle` would (loaded in the tenant's
 * isolate, its manifest checked), and nothing is stored. For each added or changed rule, the
 * instances of its workflow whose facts match it now are counted: in SQL where the match compiles,
 * else by the same condition evaluator the engine uses, over the facts in batches.
 */
export async function previewDeploy(pool: pg.Pool, bundles: BundleCache, tenantId: string, service: string, code: string, codeHash: string, generated: ServiceManifest | null = null): Promise<DeployPreview> {
  const { described } = await validate(bundles, tenantId, service, code, codeHash, generated)
  const active = await getActiveBundle(pool, tenantId, service)
  const { changes, rules, reopen, migrate } = plan(service, described, generated, active, codeHash)
  return {
    service, version: active?.version ?? null, changes, fires: await countReach(pool, tenantId, service, changes, rules, reopen), reopens: reopen.length > 0,
    migrations: await countMigrations(pool, tenantId, service, migrate),
  }
}

/**
 * Makes an older version's rules active again: itself a deploy (a new version with that version's
 * code and manifest), previewed and reached with the same background run. `version` defaults to
 * the one before the active version.
 */
export async function rollbackService(pool: pg.Pool, bundles: BundleCache, tenantId: string, service: string, version: number | undefined, options: { dryRun: boolean }): Promise<{ from: number; preview: DeployPreview } | { from: number; deployment: Deployment }> {
  const active = await getActiveBundle(pool, tenantId, service)
  if (!active) throw new PraxisError('PRX_SERVICE_NOT_FOUND', `no deployed service ${service} in your tenant: nothing to roll back`)
  const target = version ?? active.version - 1
  const old = target >= 1 ? await getBundleByVersion(pool, tenantId, service, target) : null
  if (!old) throw new PraxisError('PRX_RUN_NOT_FOUND', `service ${service} has no version ${target} to roll back to: list its versions with GET /v1/services/${service}/deployments`)
  if (old.id === active.id) throw new PraxisError('PRX_BAD_REQUEST', `version ${target} of ${service} is the active one already`)
  const generated = old.generated_manifest ? JSON.parse(old.generated_manifest) as ServiceManifest : null
  if (options.dryRun) return { from: target, preview: await previewDeploy(pool, bundles, tenantId, service, old.code, old.code_hash, generated) }
  return { from: target, deployment: await deployBundle(pool, bundles, tenantId, service, old.code, old.code_hash, generated) }
}

/**
 * A function's retry policy and timeout must be within the platform's limits (the host enforces
 * them on every call too), and its queue's name within graphile-worker's 128 characters.
 */
function checkFunction(tenantId: string, service: string, fn: ManifestFunction, limits: Limits): void {
  const task = invokeTask(tenantId, `${service}:${fn.pool}`)
  if (task.length > MAX_TASK_NAME) {
    throw new PraxisError('PRX_BUNDLE_INVALID', `function ${service}.${fn.name}'s queue would be named ${task} (${task.length} characters), longer than the queue's limit of ${MAX_TASK_NAME}: shorten the service or pool name`, { details: { function: fn.name, pool: fn.pool } })
  }
  const { retry } = fn
  if (retryOutOfLimits(retry, limits)) {
    throw new PraxisError('PRX_LIMIT_RETRY', `function ${service}.${fn.name} retries ${retry.attempts} times with delays from ${retry.initialDelayMs} to ${retry.maxDelayMs} ms: this server allows at most ${limits.maxRetryAttempts} attempts and delays from ${limits.minRetryDelayMs} to ${limits.maxRetryDelayMs} ms; change its retry policy and deploy again`, { details: { function: fn.name, retry } })
  }
  if (fn.timeoutMs > limits.maxFunctionTimeoutMs) {
    throw new PraxisError('PRX_LIMIT_TIMEOUT', `function ${service}.${fn.name} has a timeout of ${fn.timeoutMs} ms; this server allows at most ${limits.maxFunctionTimeoutMs} ms: lower timeoutMs and deploy again`, { details: { function: fn.name, timeoutMs: fn.timeoutMs } })
  }
}

/**
 * A deploy without a manifest: fingerprints derived from the bundle, unless the service already
 * runs fingerprints from the source. Then only the same code passes (a no-op, its fingerprints
 * kept); other code is refused, since every rule would get a new fingerprint and fire again.
 */
function withoutManifest(service: string, described: Manifest, active: BundleRow | null, codeHash: string): Manifest {
  if (!active || !usesSourceFingerprints(active.manifest)) return described
  if (active.code_hash === codeHash) return active.manifest as Manifest
  throw new PraxisError('PRX_BUNDLE_INVALID', `this deploy of ${service} sends no manifest, but the active version of ${service} has rule fingerprints computed from the source by \`praxis codegen\`: without the manifest every rule would get a fingerprint derived from the bundle instead, and fire again on every running instance where its match holds. Run \`praxis codegen <service-dir>\`, then \`praxis deploy <service-dir>\` (it sends generated/manifest.json with the bundle)`)
}

/**
 * The bundle's rules with the manifest's fingerprints (checked against the bundle already). A rule
 * whose fingerprint in the active version is the bundle-derived kind, equal to this bundle's for
 * it, is unchanged: it keeps that one as an alias, so instances do not fire it again (the first
 * deploy with a manifest after deploys without one). Aliases carry over while a rule is unchanged.
 */
function withManifestFingerprints(described: Manifest, generated: ServiceManifest, previous: unknown): Manifest {
  const key = (workflow: string, rule: string) => `${workflow}\u0000${rule}`
  const before = new Map<string, { fingerprint: string; aliases: string[] }>()
  for (const w of (previous as Partial<Manifest> | null)?.workflows ?? []) {
    for (const r of w?.rules ?? []) {
      if (typeof r?.fingerprint === 'string') before.set(key(w.name, r.name), { fingerprint: r.fingerprint, aliases: Array.isArray(r.aliases) ? r.aliases : [] })
    }
  }
  const given = new Map(generated.workflows.flatMap((w) => w.rules.map((r) => [key(w.name, r.name), r.fingerprint] as const)))
  return {
    ...described,
    workflows: described.workflows.map((w) => ({
      ...w,
      rules: w.rules.map(({ aliases: _, ...rule }) => {
        const fingerprint = given.get(key(w.name, rule.name))!
        const prior = before.get(key(w.name, rule.name))
        const aliases = !prior ? []
          : prior.fingerprint === fingerprint ? prior.aliases
          : !prior.fingerprint.includes(':') && prior.fingerprint === rule.fingerprint ? [prior.fingerprint]
          : []
        return { ...rule, fingerprint, ...(aliases.length > 0 ? { aliases } : {}) }
      }),
    })),
  }
}

/** Each rule's fingerprint and aliases, in a comparable form. */
function fingerprintList(manifest: unknown): string {
  const rules = ((manifest as Partial<Manifest> | null)?.workflows ?? []).flatMap((w) => (w?.rules ?? []).map((r) => JSON.stringify([w.name, r.name, r.fingerprint, r.aliases ?? []])))
  return JSON.stringify(rules.sort())
}

/**
 * The manifest codegen wrote must describe this bundle: the same workflows, each with the same
 * rules (names in order, priorities, matches, sections) fingerprinted from the source, and the
 * same schemas. Otherwise its fingerprints (and the functions it lists, and the clients
 * generated from it) may be stale. The code of the sections is not comparable here (the bundle
 * holds what esbuild emitted, the fingerprint hashes the source): \`praxis deploy\` runs
 * \`codegen --check\` before it sends them.
 */
function checkGenerated(bundle: Manifest, generated: ServiceManifest): void {
  const manifest = serviceManifest(bundle, generated.functions)
  const stale = (why: string): never => {
    throw new PraxisError('PRX_BUNDLE_INVALID', `the generated manifest does not match the bundle (${why}): run \`praxis codegen <service-dir>\`, then deploy again`)
  }
  if (generated.service !== manifest.service) stale(`it is the manifest of ${generated.service}, not ${manifest.service}`)
  const mine = new Map(generated.workflows.map((w) => [w.name, w]))
  for (const workflow of manifest.workflows) {
    const other = mine.get(workflow.name)
    if (!other) stale(`it has no workflow ${workflow.name}`)
    const names = (rules: { name: string }[]) => rules.map((r) => r.name).join(', ') || 'none'
    if (names(workflow.rules) !== names(other!.rules)) stale(`the rules of ${workflow.name} differ: the bundle has ${names(workflow.rules)}, the manifest lists ${names(other!.rules)}`)
    workflow.rules.forEach((rule, i) => {
      const listed = other!.rules[i]!
      const differs = (what: string) => stale(`the rules of ${workflow.name} differ: rule ${rule.name} ${what}`)
      if (listed.priority !== rule.priority) differs(`has priority ${rule.priority} in the bundle, ${listed.priority} in the manifest`)
      if (listed.condition === undefined) differs('has no match in the manifest (written by an older praxis codegen)')
      if (!jsonEqual(listed.condition as Json, rule.condition as Json)) differs('has another match in the manifest')
      if (listed.hasReaction !== rule.hasReaction || listed.hasError !== rule.hasError) differs('has other sections (reaction, error) in the manifest')
      if (!SOURCE_FINGERPRINT.test(listed.fingerprint)) differs(`has the fingerprint ${JSON.stringify(listed.fingerprint.slice(0, 80))} in the manifest, which is not one computed from its source in the scheme this server knows (${FINGERPRINT_SCHEME}:…)`)
    })
    for (const key of ['input', 'facts', 'result', 'signals'] as const) {
      // Schemas compare as data, key order aside: the uploaded text is what layering reads.
      if (!jsonEqual(workflow[key], other![key])) stale(`the ${key} schema of ${workflow.name} differs`)
    }
  }
  if (generated.workflows.length !== manifest.workflows.length) stale('it lists other workflows')
}
