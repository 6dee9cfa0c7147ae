/**
 * Loaded bundles by (tenant, bundle id), and the rule sandbox they run in: one per process, shared
 * by the API's and the worker's evaluations. A bundle row is immutable, so caching it is exact;
 * its isolate is keyed by (tenant, code hash) and kept warm by the sandbox's own LRU.
 */
import type pg from 'pg'
import { ManifestFunction } from '../../sdk/manifest.js'
import { DEFAULT_LIMITS, type Limits } from '../config.js'
import { PraxisError } from '../errors.js'
import { getBundleCode, getServiceCatalog } from '../store/index.js'
import { describeBundle, sandboxCode, sha256, storedFingerprints, type LoadedBundle, type RuleFingerprints } from './bundle.js'
import { answerLimit, type CatalogLookup, type ServiceCatalog } from './checks.js'
import { IsolateSandbox } from './isolate-sandbox.js'
import type { RuleSandbox } from './sandbox.js'

type Queryable = Pick<pg.PoolClient, 'query'>
type Described = ReturnType<typeof describeBundle>

/** How long a service's catalog (its functions and workflows) is reused before it is read again. */
const CATALOG_TTL_MS = 2000

export class BundleCache {
  readonly limits: Limits
  readonly sandbox: RuleSandbox
  readonly #entries = new Map<string, LoadedBundle>()
  /** Each sandbox key's description, from the last time its bundle was loaded into an isolate. */
  readonly #described = new Map<string, Described>()
  readonly #catalogs = new Map<string, { until: number; value: Promise<ServiceCatalog | null> }>()

  constructor(options: { limits?: Partial<Limits>; sandbox?: RuleSandbox } = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits }
    this.sandbox = options.sandbox ?? new IsolateSandbox({ memoryMb: this.limits.ruleMemoryMb, evaluationMs: this.limits.ruleTimeoutMs, loadMs: this.limits.bundleLoadMs, capacity: this.limits.sandboxCapacity })
  }

  /** The loaded bundle, from memory or from the database. */
  async get(client: Queryable, tenantId: string, bundleId: string): Promise<LoadedBundle> {
    const key = `${tenantId}:${bundleId}`
    const hit = this.#entries.get(key)
    if (hit) {
      this.#entries.delete(key)
      this.#entries.set(key, hit)
      return hit
    }
    const row = await getBundleCode(client, tenantId, bundleId)
    if (!row) throw new PraxisError('PRX_BUNDLE_INVALID', `bundle ${bundleId} of tenant ${tenantId} does not exist`)
    // With the fingerprints it was deployed with (its manifest's, computed from the source).
    const loaded = await this.load(tenantId, row.service, row.code, row.code_hash, storedFingerprints(row.manifest))
    this.#entries.set(key, loaded)
    if (this.#entries.size > this.limits.sandboxCapacity * 4) this.#entries.delete(this.#entries.keys().next().value!)
    return loaded
  }

  /**
   * Loads `code` into the tenant's isolate for it (deploy-time validation does this too), its rules
   * fingerprinted by `fingerprints` (a stored bundle's), else from the bundled code.
   */
  async load(tenantId: string, service: string, code: string, codeHash = sha256(code), fingerprints: RuleFingerprints | null = null): Promise<LoadedBundle> {
    const sandbox = sandboxCode(tenantId, service, code, codeHash, { maxFactsBytes: this.limits.maxFactsBytes, maxInputBytes: this.limits.maxInputBytes, maxAnswer: answerLimit(this.limits) }, (described) => {
      this.#described.delete(sandbox.key)
      this.#described.set(sandbox.key, described)
      if (this.#described.size > this.limits.sandboxCapacity * 4) this.#described.delete(this.#described.keys().next().value!)
    }, fingerprints)
    await this.sandbox.load(sandbox)
    let described = this.#described.get(sandbox.key)
    if (!described) {
      // Loaded long ago and its description since forgotten: load it afresh to describe it.
      await this.sandbox.forget(sandbox.key)
      await this.sandbox.load(sandbox)
      described = this.#described.get(sandbox.key)
      if (!described) throw new Error(`the rule sandbox did not describe bundle ${sandbox.key}`)
    }
    return { tenantId, service, codeHash, sandbox, workflows: described.workflows, manifest: described.manifest }
  }

  /** Finds the tenant's deployed services for the host's call checks (briefly cached). */
  catalog(client: Queryable, tenantId: string): CatalogLookup {
    return (service) => {
      const key = `${tenantId}\u0000${service}`
      const hit = this.#catalogs.get(key)
      if (hit && hit.until > Date.now()) return hit.value
      const value = getServiceCatalog(client, tenantId, service).then((row): ServiceCatalog | null => row && {
        functions: row.functions ? new Map(row.functions.flatMap((f) => {
          const parsed = ManifestFunction.safeParse(f)
          return parsed.success ? [[parsed.data.name, parsed.data] as const] : []
        })) : null,
        workflows: new Set(row.workflows),
      })
      // Only a service found is kept: one deployed a moment ago must be callable at once.
      void value.then((found) => {
        if (!found) this.#catalogs.delete(key)
      }, () => this.#catalogs.delete(key))
      this.#catalogs.set(key, { until: Date.now() + CATALOG_TTL_MS, value })
      if (this.#catalogs.size > 10_000) this.#catalogs.delete(this.#catalogs.keys().next().value!)
      return value
    }
  }

  /** Forgets a service's catalog (after a deploy in this process: its functions may have changed). */
  forgetService(tenantId: string, service: string): void {
    this.#catalogs.delete(`${tenantId}\u0000${service}`)
  }

  /** Disposes of the sandbox's isolates. */
  async close(): Promise<void> {
    await this.sandbox.close()
  }
}
