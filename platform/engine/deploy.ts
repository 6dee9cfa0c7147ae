/** Deploying a bundle: load it to prove it works, store it as the next version, reach old work. */
import type pg from 'pg'
import { PraxisError } from '../errors.js'
import { insertBundle, queueRedeploy, type BundleRow } from '../store/index.js'
import { loadBundle, type Manifest } from './bundle.js'

export interface Deployment { bundle: BundleRow; created: boolean; manifest: Manifest; reevaluating: number }

/**
 * Validates and activates `code` as the next bundle of `service`. Running instances of the service
 * get an evaluation under the new rules (changed or added rules whose match holds fire).
 */
export async function deployBundle(pool: pg.Pool, tenantId: string, service: string, code: string, codeHash: string): Promise<Deployment> {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,99}$/.test(service)) throw new PraxisError('PRX_BAD_REQUEST', `service name ${JSON.stringify(service)} is invalid: letters, digits, "_" and "-", starting with a letter`)
  const manifest = loadBundle(service, code).manifest
  const client = await pool.connect()
  try {
    await client.query('begin')
    const { bundle, created } = await insertBundle(client, { tenantId, service, code, codeHash, manifest })
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
