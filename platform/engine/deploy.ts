/** Deploying a bundle: load it to prove it works, store it as the next version, reach old work. */
import type pg from 'pg'
import { PraxisError } from '../errors.js'
import { insertBundle, queueRedeploy, type BundleRow } from '../store/index.js'
import { jsonEqual } from '../../sdk/facts.js'
import type { ServiceManifest } from '../../sdk/manifest.js'
import { loadBundle, serviceManifest, type Manifest } from './bundle.js'

export interface Deployment { bundle: BundleRow; created: boolean; manifest: Manifest; reevaluating: number }

/**
 * Validates and activates `code` as the next bundle of `service`. Running instances of the service
 * get an evaluation under the new rules (changed or added rules whose match holds fire).
 */
export async function deployBundle(pool: pg.Pool, tenantId: string, service: string, code: string, codeHash: string, generated: ServiceManifest | null = null): Promise<Deployment> {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,99}$/.test(service)) throw new PraxisError('PRX_BAD_REQUEST', `service name ${JSON.stringify(service)} is invalid: letters, digits, "_" and "-", starting with a letter`)
  const manifest: Manifest = loadBundle(service, code).manifest
  if (generated) checkGenerated(manifest, generated)
  const client = await pool.connect()
  try {
    await client.query('begin')
    const { bundle, created } = await insertBundle(client, { tenantId, service, code, codeHash, manifest, ...(generated ? { generated: JSON.stringify(generated) } : {}) })
    const reevaluating = created ? await queueRedeploy(client, tenantId, service, bundle.version) : 0
    await client.query('commit')
    return { bundle, created, manifest, reevaluating }
  } catch (error) {
    await client.query('rollback').catch(() => undefined)
    throw error
  } finally {
    client.release()
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
