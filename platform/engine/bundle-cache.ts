/** Loaded bundles by (tenant, bundle id): built once per process, kept in a small LRU. */
import type pg from 'pg'
import { PraxisError } from '../errors.js'
import { getBundleCode } from '../store/index.js'
import { loadBundle, type LoadedBundle } from './bundle.js'

export class BundleCache {
  readonly #entries = new Map<string, LoadedBundle>()
  constructor(private readonly capacity = 64, private readonly callTimeoutMs = 1000) {}

  /** The loaded bundle, from memory or from the database (an immutable row, so caching is exact). */
  async get(client: Pick<pg.PoolClient, 'query'>, tenantId: string, bundleId: string): Promise<LoadedBundle> {
    const key = `${tenantId}:${bundleId}`
    const hit = this.#entries.get(key)
    if (hit) {
      this.#entries.delete(key)
      this.#entries.set(key, hit)
      return hit
    }
    const row = await getBundleCode(client, tenantId, bundleId)
    if (!row) throw new PraxisError('PRX_BUNDLE_INVALID', `bundle ${bundleId} of tenant ${tenantId} does not exist`)
    const loaded = loadBundle(row.service, row.code, { callTimeoutMs: this.callTimeoutMs })
    this.#entries.set(key, loaded)
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!)
    return loaded
  }
}
