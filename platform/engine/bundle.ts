/**
 * Bundles: the rules side of a service, built once into one script (build.ts), stored in the
 * database, and loaded into a tenant isolate by any server or worker process (isolate-sandbox.ts).
 *
 * This is the host's side: a bundle describes itself from inside its isolate, and that description
 * is hostile input. `describeBundle` checks it, gives each rule its fingerprint and computes the
 * fact paths its match reads, and returns what the engine needs.
 *
 * Fingerprints: a bundle deployed with its generated manifest uses the manifest's, computed by
 * codegen from each rule's source (`s1:…`, codegen/fingerprint.ts) and stored with the bundle;
 * every process that loads the bundle applies them (`RuleFingerprints`). A bundle deployed without
 * one gets the older kind, derived here from the code the bundler emitted for the rule.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { conditionPaths, type Condition } from '../../sdk/index.js'
import type { WorkflowDescription } from '../../sdk/runtime.js'
import { byCodePoint, MANIFEST_FORMAT, type ManifestFunction, type ServiceManifest } from '../../sdk/manifest.js'
import { PraxisError } from '../errors.js'
import { formatIssues } from '../../sdk/context.js'
import { indexWorkflow, workflowSpec, type LoadedRule, type LoadedWorkflow } from './workflow.js'
import type { SandboxCode } from './sandbox.js'

export { indexWorkflow, type LoadedRule, type LoadedWorkflow, type WorkflowSpec } from './workflow.js'

/** What a built bundle carries besides its code (stored with it, fingerprints as the engine uses them). */
export interface Manifest {
  service: string
  workflows: (Omit<WorkflowDescription, 'rules'> & { rules: (Omit<WorkflowDescription['rules'][number], 'source'> & { fingerprint: string; aliases?: string[]; paths: string[] })[] })[]
}

/** The fingerprint (and former fingerprints) of each rule, by workflow and rule name: what a stored bundle's rules use. */
export type RuleFingerprints = ReadonlyMap<string, ReadonlyMap<string, { fingerprint: string; aliases?: readonly string[] }>>

/** A bundle as the host knows it once loaded: its isolate's key and code, its workflows and manifest. */
export interface LoadedBundle {
  tenantId: string
  service: string
  codeHash: string
  /** What the sandbox loads (the isolate is keyed by tenant and code hash). */
  sandbox: SandboxCode
  workflows: Map<string, LoadedWorkflow>
  manifest: Manifest
}

const Name = z.string().regex(/^[A-Za-z][\w.-]{0,99}$/)
const Condition: z.ZodType<unknown> = z.lazy(() => z.union([
  z.object({ all: z.array(Condition).max(1000) }),
  z.object({ any: z.array(Condition).max(1000) }),
  z.object({ not: Condition }),
  z.object({ fact: z.literal('facts'), path: z.string().max(500).optional(), operator: z.string().max(100), value: z.unknown() }),
]))
/** A bundle's self-description, as the host accepts it. */
const Description = z.array(z.object({
  name: z.string().regex(/^[A-Za-z][\w-]{0,99}$/, 'must be a workflow name'),
  maxFirings: z.number().int().min(1).max(10_000),
  reopen: z.boolean().optional(),
  factsVersion: z.number().int().min(1).max(1_000_000).optional(),
  signals: z.array(Name).max(1000),
  inputSchema: z.unknown(),
  factsSchema: z.unknown(),
  resultSchema: z.unknown(),
  signalSchemas: z.record(z.string(), z.unknown()),
  rules: z.array(z.object({
    name: z.string().min(1).max(200),
    priority: z.number().int().min(-1_000_000).max(1_000_000),
    condition: Condition,
    source: z.string().max(5_000_000),
    hasReaction: z.boolean(),
    hasError: z.boolean(),
  })).max(10_000),
})).max(1000)

/** Largest self-description accepted (schemas and rule sources as JSON). */
const MAX_DESCRIPTION_BYTES = 32 * 1024 * 1024

/**
 * Checks a bundle's self-description (JSON text from its isolate) and builds the manifest and the
 * workflows the engine runs. Throws PRX_BUNDLE_INVALID naming what is wrong. With `fingerprints`
 * (a stored bundle's), each rule takes its fingerprint from there, and they must name exactly the
 * bundle's rules; without, each rule's is derived from its bundled code.
 */
export function describeBundle(service: string, description: string, fingerprints: RuleFingerprints | null = null): { workflows: Map<string, LoadedWorkflow>; manifest: Manifest } {
  const invalid = (why: string): never => {
    throw new PraxisError('PRX_BUNDLE_INVALID', `the bundle of ${service} is not a Praxis bundle (${why}): build it with \`praxis deploy <service-dir>\``)
  }
  if (description.length > MAX_DESCRIPTION_BYTES) invalid(`its self-description is larger than ${MAX_DESCRIPTION_BYTES} bytes`)
  let json: unknown
  try {
    json = JSON.parse(description)
  } catch (error) {
    invalid(`its self-description is not JSON: ${(error as Error).message}`)
  }
  const failed = (json as { ok?: unknown; error?: { message?: unknown } } | null)
  if (failed && !Array.isArray(failed) && failed.ok === false) invalid(String(failed.error?.message ?? 'it did not describe itself'))
  const parsed = Description.safeParse(json)
  if (!parsed.success) invalid(`its self-description is malformed: ${formatIssues(parsed.error.issues.slice(0, 5))}`)
  const manifest: Manifest = { service, workflows: [] }
  const workflows = new Map<string, LoadedWorkflow>()
  for (const wf of parsed.data!) {
    if (workflows.has(wf.name)) invalid(`two workflows are named ${wf.name}`)
    const names = new Set<string>()
    const rules = wf.rules.map((r, order): LoadedRule => {
      if (names.has(r.name)) invalid(`workflow ${wf.name} has two rules named ${r.name}`)
      names.add(r.name)
      let paths: string[] = []
      try {
        paths = conditionPaths(r.condition as Condition)
      } catch (error) {
        invalid(`the match of rule ${r.name} is malformed: ${(error as Error).message}`)
      }
      const given = fingerprints?.get(wf.name)?.get(r.name)
      if (fingerprints && !given) invalid(`its stored fingerprints have none for rule ${r.name} of workflow ${wf.name}`)
      return {
        name: r.name,
        priority: r.priority,
        order,
        condition: r.condition as Condition,
        fingerprint: given ? given.fingerprint : bundleFingerprint(r),
        ...(given?.aliases?.length ? { aliases: [...given.aliases] } : {}),
        paths,
        hasReaction: r.hasReaction,
        hasError: r.hasError,
      }
    })
    workflows.set(wf.name, indexWorkflow({ name: wf.name, maxFirings: wf.maxFirings, signals: wf.signals, rules, reopen: wf.reopen === true, factsVersion: wf.factsVersion ?? 1 }))
    manifest.workflows.push({
      ...(wf as WorkflowDescription),
      rules: rules.map(({ name, priority, condition, fingerprint, aliases, paths, hasReaction, hasError }) => ({ name, priority, condition, fingerprint, ...(aliases ? { aliases } : {}), paths, hasReaction, hasError })),
    })
  }
  if (workflows.size === 0) throw new PraxisError('PRX_BUNDLE_INVALID', `the bundle of service ${service} exports no workflow: export each defineWorkflow(...) from workflows.ts`)
  for (const [workflow, rules] of fingerprints ?? []) {
    for (const rule of rules.keys()) {
      if (!workflows.get(workflow)?.byName.has(rule)) invalid(`its stored fingerprints name rule ${rule} of workflow ${workflow}, which it does not have`)
    }
  }
  return { workflows, manifest }
}

/**
 * The older kind of fingerprint, for a bundle deployed without a manifest: a hash of the rule's
 * name, priority, match and the code the bundler emitted for its sections (so it moves when the
 * bundler renames an identifier, and not when a helper the sections call changes).
 */
function bundleFingerprint(rule: { name: string; priority: number; condition: unknown; source: string }): string {
  return sha256(JSON.stringify([rule.name, rule.priority, rule.condition, rule.source])).slice(0, 24)
}

/**
 * The fingerprints a stored bundle's rules use, from its stored manifest; null when they are all
 * the bundle-derived kind with no former ones (the bundle then describes its own, the same).
 */
export function storedFingerprints(manifest: unknown): RuleFingerprints | null {
  const workflows = (manifest as Partial<Manifest> | null)?.workflows
  if (!Array.isArray(workflows)) return null
  const out = new Map<string, Map<string, { fingerprint: string; aliases?: string[] }>>()
  let own = false
  for (const workflow of workflows) {
    const rules = new Map<string, { fingerprint: string; aliases?: string[] }>()
    for (const rule of Array.isArray(workflow?.rules) ? workflow.rules : []) {
      if (typeof rule?.name !== 'string' || typeof rule.fingerprint !== 'string') continue
      const aliases = Array.isArray(rule.aliases) ? rule.aliases.filter((a): a is string => typeof a === 'string') : []
      if (rule.fingerprint.includes(':') || aliases.length > 0) own = true
      rules.set(rule.name, { fingerprint: rule.fingerprint, ...(aliases.length ? { aliases } : {}) })
    }
    if (typeof workflow?.name === 'string') out.set(workflow.name, rules)
  }
  return own ? out : null
}

/** True when any rule of a stored manifest has a fingerprint computed from the source. */
export function usesSourceFingerprints(manifest: unknown): boolean {
  return ((manifest as Partial<Manifest> | null)?.workflows ?? []).some((w) => (w?.rules ?? []).some((r) => typeof r?.fingerprint === 'string' && r.fingerprint.includes(':')))
}

/**
 * A bundle ready for the sandbox: `onLoad` receives the checked description each time the bundle
 * is loaded into an isolate (the first load, and again after an eviction or an overrun). Facts
 * past `maxFactsBytes` fail inside the isolate already, and no answer longer than `maxAnswer` leaves it.
 */
export function sandboxCode(tenantId: string, service: string, code: string, codeHash: string, limits: { maxFactsBytes: number; maxInputBytes: number; maxAnswer: number }, onLoad: (described: ReturnType<typeof describeBundle>) => void, fingerprints: RuleFingerprints | null = null): SandboxCode {
  // The rules' fingerprints are set up inside the isolate: the same code with other ones is another isolate.
  const variant = fingerprints ? `:${sha256(JSON.stringify([...fingerprints].map(([w, rules]) => [w, [...rules]]))).slice(0, 16)}` : ''
  return {
    key: `${tenantId}:${codeHash}${variant}`,
    service,
    code,
    setup(description) {
      const described = describeBundle(service, description, fingerprints)
      onLoad(described)
      return JSON.stringify({ workflows: [...described.workflows.values()].map(workflowSpec), maxFactsBytes: limits.maxFactsBytes, maxInputBytes: limits.maxInputBytes, maxAnswer: limits.maxAnswer })
    },
  }
}

/**
 * The service manifest of a bundle (the format codegen writes and layering reads): its workflows
 * as the bundle describes them, and the functions codegen read from the service's source.
 */
export function serviceManifest(manifest: Manifest, functions: readonly ManifestFunction[], sources: Record<string, string> = {}): ServiceManifest {
  const strip = (schema: unknown): Record<string, unknown> => {
    const { $schema: _, ...rest } = (schema ?? {}) as Record<string, unknown>
    return rest
  }
  return {
    format: MANIFEST_FORMAT,
    service: manifest.service,
    functions: [...functions].sort((a, b) => byCodePoint(a.name, b.name)),
    workflows: [...manifest.workflows].sort((a, b) => byCodePoint(a.name, b.name)).map((w) => ({
      name: w.name,
      input: strip(w.inputSchema),
      facts: strip(w.factsSchema),
      result: w.resultSchema ? strip(w.resultSchema) : null,
      signals: Object.fromEntries(Object.entries(w.signalSchemas ?? {}).sort(([a], [b]) => byCodePoint(a, b)).map(([name, schema]) => [name, strip(schema)])),
      maxFirings: w.maxFirings,
      rules: w.rules.map(({ name, priority, fingerprint, condition, paths, hasReaction, hasError }) => ({ name, priority, fingerprint, condition, paths, hasReaction, hasError })),
      ...(sources[w.name] ? { source: sources[w.name] } : {}),
    })),
  }
}

/** Hex SHA-256 of a text (bundle code, rule fingerprints). */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
