/** Deploying a bundle: load it to prove it works, store it as the next version, reach old work. */
import type pg from 'pg'
import { PraxisError } from '../errors.js'
import { queueRedeploy } from '../queue/index.js'
import { insertBundle, invokeTask, rollback, type BundleRow } from '../store/index.js'
import { jsonEqual } from '../../sdk/facts.js'
import type { ManifestFunction, ServiceManifest } from '../../sdk/manifest.js'
import type { Limits } from '../config.js'
import { serviceManifest, type Manifest } from './bundle.js'
import type { BundleCache } from './bundle-cache.js'
import { retryOutOfLimits } from './checks.js'

/** graphile-worker's limit on a task identifier's length. */
const MAX_TASK_NAME = 128

export interface Deployment { bundle: BundleRow; created: boolean; manifest: Manifest; reevaluating: number }

/**
 * Validates and activates `code` as the next bundle of `service`: it is loaded in the tenant's own
 * isolate (its top-level code runs there, under the load limits, never on this thread) and its
 * self-description checked. Running instances of the service get an evaluation under the new
 * rules (changed or added rules whose match holds fire).
 */
export async function deployBundle(pool: pg.Pool, bundles: BundleCache, tenantId: string, service: string, code: string, codeHash: string, generated: ServiceManifest | null = null): Promise<Deployment> {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,99}$/.test(service)) throw new PraxisError('PRX_BAD_REQUEST', `service name ${JSON.stringify(service)} is invalid: letters, digits, "_" and "-", starting with a letter`)
  const manifest: Manifest = (await bundles.load(tenantId, service, code, codeHash)).manifest
  if (generated) {
    checkGenerated(manifest, generated)
    for (const fn of generated.functions) checkFunction(tenantId, service, fn, bundles.limits)
  }
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('begin')
    const { bundle, created } = await insertBundle(client, { tenantId, service, code, codeHash, manifest, ...(generated ? { generated: JSON.stringify(generated) } : {}) })
    const reevaluating = created ? await queueRedeploy(client, tenantId, service, bundle.version) : 0
    await client.query('commit')
    bundles.forgetService(tenantId, service)
    return { bundle, created, manifest, reevaluating }
  } catch (error) {
    broken = await rollback(client)
    throw error
  } finally {
    client.release(broken)
  }
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
 * The manifest codegen wrote must describe this bundle: the same workflows with the same rule
 * fingerprints. Otherwise the functions it lists (and the clients generated from it) may be stale.
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
    const fingerprints = (rules: { name: string; fingerprint: string }[]) => rules.map((r) => `${r.name}@${r.fingerprint}`).join(',')
    if (fingerprints(workflow.rules) !== fingerprints(other!.rules)) stale(`the rules of ${workflow.name} differ`)
    for (const key of ['input', 'facts', 'result', 'signals'] as const) {
      // Schemas compare as data, key order aside: the uploaded text is what layering reads.
      if (!jsonEqual(workflow[key], other![key])) stale(`the ${key} schema of ${workflow.name} differs`)
    }
  }
  if (generated.workflows.length !== manifest.workflows.length) stale('it lists other workflows')
}
