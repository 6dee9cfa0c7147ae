/** Services and their bundles: deploy a new version, read the active one. */
import type pg from 'pg'

type Queryable = Pick<pg.PoolClient, 'query'>

export interface BundleRow { id: string; service: string; version: number; code_hash: string; manifest: unknown; created_at: string }

/**
 * Locks the service's row (creating it) for a deploy, in the caller's transaction, and returns its
 * active bundle (null when it has none yet).
 */
export async function lockService(client: Queryable, tenantId: string, service: string): Promise<BundleRow | null> {
  await client.query('insert into praxis.services (tenant_id, name) values ($1, $2) on conflict do nothing', [tenantId, service])
  const { rows: [row] } = await client.query<{ active_bundle_id: string | null }>('select active_bundle_id::text from praxis.services where tenant_id = $1 and name = $2 for update', [tenantId, service])
  return row?.active_bundle_id ? getBundle(client, tenantId, row.active_bundle_id) : null
}

/**
 * Stores a bundle as the next version of its service and makes it active. Deploying the code the
 * active bundle already has, with the same rules (`sameRules`, by default always), is a no-op
 * that returns the active bundle: a bundle row never changes what its rules are.
 */
export async function insertBundle(client: Queryable, b: { tenantId: string; service: string; code: string; codeHash: string; manifest: unknown; generated?: string | null; sameRules?: (active: BundleRow) => boolean }): Promise<{ bundle: BundleRow; created: boolean }> {
  const active = await lockService(client, b.tenantId, b.service)
  if (active && active.code_hash === b.codeHash && (b.sameRules?.(active) ?? true)) {
    // Same rules; the functions codegen read may still have changed (ones no rule calls yet).
    if (b.generated !== undefined) {
      await client.query('update praxis.bundles set manifest = $3, generated_manifest = $4 where tenant_id = $1 and id = $2 and generated_manifest is distinct from $4',
        [b.tenantId, active.id, JSON.stringify(b.manifest), b.generated])
      active.manifest = b.manifest
    }
    return { bundle: active, created: false }
  }
  const { rows: [bundle] } = await client.query<BundleRow>(
    `insert into praxis.bundles (tenant_id, service, version, code, code_hash, manifest, generated_manifest)
     values ($1, $2, coalesce((select max(version) from praxis.bundles where tenant_id = $1 and service = $2), 0) + 1, $3, $4, $5, $6)
     returning id::text, service, version, code_hash, manifest, created_at`,
    [b.tenantId, b.service, b.code, b.codeHash, JSON.stringify(b.manifest), b.generated ?? null],
  )
  await client.query('update praxis.services set active_bundle_id = $3 where tenant_id = $1 and name = $2', [b.tenantId, b.service, bundle!.id])
  return { bundle: bundle!, created: true }
}

export async function getBundle(client: Queryable, tenantId: string, id: string): Promise<BundleRow | null> {
  const { rows } = await client.query<BundleRow>('select id::text, service, version, code_hash, manifest, created_at from praxis.bundles where tenant_id = $1 and id = $2', [tenantId, id])
  return rows[0] ?? null
}

export async function getBundleCode(client: Queryable, tenantId: string, id: string): Promise<{ service: string; code: string; code_hash: string; manifest: unknown } | null> {
  const { rows } = await client.query<{ service: string; code: string; code_hash: string; manifest: unknown }>('select service, code, code_hash, manifest from praxis.bundles where tenant_id = $1 and id = $2', [tenantId, id])
  return rows[0] ?? null
}

/**
 * What the active bundle of a tenant's service offers to calls: the functions of the manifest
 * codegen wrote (null when it was deployed without one) and its workflow names.
 */
export async function getServiceCatalog(client: Queryable, tenantId: string, service: string): Promise<{ bundleId: string; functions: unknown[] | null; workflows: string[] } | null> {
  const { rows } = await client.query<{ bundle_id: string; functions: unknown[] | null; workflows: string[] }>({
    name: 'praxis_service_catalog',
    text: `select b.id::text as bundle_id, (b.generated_manifest::jsonb)->'functions' as functions,
        (select coalesce(jsonb_agg(w->>'name'), '[]'::jsonb) from jsonb_array_elements(b.manifest->'workflows') w) as workflows
      from praxis.services s join praxis.bundles b on b.tenant_id = s.tenant_id and b.id = s.active_bundle_id
      where s.tenant_id = $1 and s.name = $2`,
    values: [tenantId, service],
  })
  const row = rows[0]
  return row ? { bundleId: row.bundle_id, functions: Array.isArray(row.functions) ? row.functions : null, workflows: row.workflows } : null
}

/** The active bundle of a service, or null when the service was never deployed. */
export async function getActiveBundle(client: Queryable, tenantId: string, service: string): Promise<(BundleRow & { generated_manifest: string | null }) | null> {
  const { rows } = await client.query<BundleRow & { generated_manifest: string | null }>(
    `select b.id::text, b.service, b.version, b.code_hash, b.manifest, b.generated_manifest, b.created_at
     from praxis.services s join praxis.bundles b on b.tenant_id = s.tenant_id and b.id = s.active_bundle_id
     where s.tenant_id = $1 and s.name = $2`, [tenantId, service])
  return rows[0] ?? null
}

/** One version of a service's bundle, with its code and the manifest codegen wrote (a rollback's source). */
export async function getBundleByVersion(client: Queryable, tenantId: string, service: string, version: number): Promise<(BundleRow & { code: string; generated_manifest: string | null }) | null> {
  const { rows } = await client.query<BundleRow & { code: string; generated_manifest: string | null }>(
    `select id::text, service, version, code, code_hash, manifest, generated_manifest, created_at from praxis.bundles where tenant_id = $1 and service = $2 and version = $3`,
    [tenantId, service, version])
  return rows[0] ?? null
}

export async function listBundles(client: Queryable, tenantId: string, service: string): Promise<(BundleRow & { active: boolean })[]> {
  const { rows } = await client.query<BundleRow & { active: boolean }>(
    `select b.id::text, b.service, b.version, b.code_hash, b.manifest, b.created_at, (s.active_bundle_id = b.id) as active
     from praxis.bundles b join praxis.services s on s.tenant_id = b.tenant_id and s.name = b.service
     where b.tenant_id = $1 and b.service = $2 order by b.version desc`, [tenantId, service])
  return rows
}

/** Where a workflow name resolves in a tenant: `service.workflow`, or a bare name unique in the tenant. */
export async function resolveWorkflow(client: Queryable, tenantId: string, name: string): Promise<{ service: string; workflow: string; bundleId: string }[]> {
  const dot = name.indexOf('.')
  const service = dot > 0 ? name.slice(0, dot) : null
  const workflow = dot > 0 ? name.slice(dot + 1) : name
  const { rows } = await client.query<{ service: string; bundle_id: string }>(
    `select s.name as service, b.id::text as bundle_id from praxis.services s join praxis.bundles b on b.tenant_id = s.tenant_id and b.id = s.active_bundle_id
     where s.tenant_id = $1 and ($2::text is null or s.name = $2)
     and exists (select 1 from jsonb_array_elements(b.manifest->'workflows') w where w->>'name' = $3)`, [tenantId, service, workflow])
  return rows.map((r) => ({ service: r.service, workflow, bundleId: r.bundle_id }))
}
