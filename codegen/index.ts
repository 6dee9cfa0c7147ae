/**
 * `praxis codegen`: from a service's source, writes `generated/` — function stubs, workflow
 * references, a typed API client and the manifest — and, for every service it layers on (fetched
 * with `--from` or `--manifest`, kept in `generated/services/<name>/manifest.json`), the same files
 * of that service. `--check` compares instead of writing and names every stale file.
 *
 * Function schemas are read statically (ts-morph; function modules are never run). The rules side
 * is built and described with the rule server's own bundler and loader (its schemas, and each
 * rule's name, priority and match); each rule's fingerprint is computed from its source
 * (fingerprint.ts), so bundler renames, comments and formatting never change it. The server uses
 * the manifest's fingerprints after checking the manifest against the bundle.
 */
import { existsSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { BundleCache, buildBundle, serviceManifest, type Manifest } from '../platform/engine/index.js'
import { byCodePoint, ServiceManifest } from '../sdk/manifest.js'
import { formatIssues } from '../sdk/context.js'
import { emitClient, emitFunctions, emitWorkflows, type EmitContext } from './emit.js'
import { CodegenError, FactPathError } from './errors.js'
import { checkFactPaths } from './fact-paths.js'
import { ruleFingerprint } from './fingerprint.js'
import { readService, type Located, type StaticWorkflow } from './static.js'

export { CodegenError, FactPathError, formatFactPathIssue, type FactPathIssue } from './errors.js'

export interface CodegenOptions {
  /** The service folder (its `workflows.ts` and `functions.ts`). */
  dir: string
  /** Compare with the files on disk instead of writing. */
  check?: boolean
  /** Add (or refresh) a layered service from its manifest before generating. */
  layer?: { manifest: unknown; origin: string }
  /** Progress lines (counts), for the CLI. */
  onProgress?: (line: string) => void
}

export interface CodegenResult {
  service: string
  functions: number
  workflows: number
  layers: string[]
  /** Files relative to the service folder, with what became of each. */
  files: { path: string; state: 'written' | 'unchanged' | 'stale' | 'removed' }[]
}

const GENERATED = 'generated'
const LAYERS = path.join(GENERATED, 'services')

export async function codegen(options: CodegenOptions): Promise<CodegenResult> {
  const dir = path.resolve(options.dir)
  const progress = options.onProgress ?? (() => undefined)
  if (!existsSync(path.join(dir, 'workflows.ts')) && !existsSync(path.join(dir, 'functions.ts'))) {
    throw new CodegenError('PRX_CODEGEN_NO_SERVICE', `${options.dir} holds no workflows.ts or functions.ts: point codegen at a service folder`)
  }
  const service = path.basename(dir)
  const root = projectRoot(dir)
  const command = (extra = ''): string => `praxis codegen ${path.relative(root, dir).split(path.sep).join('/') || '.'}${extra}`

  progress(`reading ${options.dir} …`)
  const source = readService(dir)
  progress(`  ${source.functions.length} function${source.functions.length === 1 ? '' : 's'}, ${source.workflows.length} workflow${source.workflows.length === 1 ? '' : 's'} found`)
  const sdkFrom = (generatedDir: string): string => {
    const spec = source.sdkImport
    if (!spec) return 'praxis/sdk'
    if (spec.startsWith('.')) {
      const relative = path.relative(path.join(dir, generatedDir), path.join(dir, spec)).split(path.sep).join('/')
      return relative.startsWith('.') ? relative : `./${relative}`
    }
    return spec
  }

  const files = new Map<string, string>()
  // Layers first (a new or refreshed one from the options, then every one kept in
  // generated/services): the rules side may import them, like the stubs.
  const layers = new Map<string, string>()
  const layersDir = path.join(dir, LAYERS)
  if (existsSync(layersDir)) {
    for (const entry of (await readdir(layersDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort()) {
      const file = path.join(layersDir, entry, 'manifest.json')
      if (existsSync(file)) layers.set(entry, await readFile(file, 'utf8'))
    }
  }
  if (options.layer) {
    const parsed = parseManifest(options.layer.manifest, options.layer.origin)
    if (parsed.service === service) throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `${options.layer.origin} is the manifest of ${service} itself; layer another service`)
    layers.set(parsed.service, `${JSON.stringify(parsed, null, 2)}\n`)
  }
  for (const [name, text] of layers) {
    const where = path.join(LAYERS, name)
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (error) {
      throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `${path.join(options.dir, where, 'manifest.json')} is not JSON (${(error as Error).message}): fetch it again with --from or --manifest`)
    }
    const layer = parseManifest(json, path.join(options.dir, where, 'manifest.json'))
    if (layer.service !== name) throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `${path.join(options.dir, where, 'manifest.json')} is the manifest of ${layer.service}, not ${name}`)
    const layerCtx: EmitContext = { sdk: sdkFrom(where), command: command(), origin: `the manifest of service ${name} (${where.split(path.sep).join('/')}/manifest.json)` }
    files.set(path.join(where, 'manifest.json'), `${JSON.stringify(layer, null, 2)}\n`)
    files.set(path.join(where, 'functions.ts'), emitFunctions(layer, layerCtx))
    files.set(path.join(where, 'workflows.ts'), emitWorkflows(layer, layerCtx))
    files.set(path.join(where, 'client.ts'), emitClient(layer, layerCtx))
    progress(`  layered service ${name}: ${layer.functions.length} functions, ${layer.workflows.length} workflows`)
  }

  // Stubs next: the rules side imports them too, so the bundle is built with the new ones in memory.
  const ctx: EmitContext = { sdk: sdkFrom(GENERATED), command: command(), origin: `the source of service ${service}` }
  const functions = source.functions.map(({ location: _, ...fn }) => fn)
  const functionsOnly = { format: 'praxis.manifest/1' as const, service, functions, workflows: [] }
  const locations = new Map(source.functions.map((fn) => [fn.name, fn.location]))
  files.set(path.join(GENERATED, 'functions.ts'), emitFunctions(functionsOnly, ctx, (fn) => locations.get(fn.name)))
  let manifest: ServiceManifest = functionsOnly
  if (existsSync(path.join(dir, 'workflows.ts'))) {
    progress('  building the rules side …')
    const inMemory = new Map([...files].map(([file, text]) => [path.join(dir, file), text]))
    const built = await buildBundle(dir, { files: inMemory })
    // The bundle describes itself from inside a sandbox isolate, as it will on the server.
    const bundles = new BundleCache()
    const loaded = await bundles.load('codegen', service, built.code).finally(() => bundles.close())
    const sources = Object.fromEntries(source.workflows.map((w) => [w.name, w.source]))
    manifest = withSourceFingerprints(serviceManifest(loaded.manifest, functions, sources), loaded.manifest, source.workflows)
    const rules = manifest.workflows.reduce((n, w) => n + w.rules.length, 0)
    progress(`  ${manifest.workflows.length} workflow${manifest.workflows.length === 1 ? '' : 's'}, ${rules} rule${rules === 1 ? '' : 's'} fingerprinted`)
    // A match on a path the facts cannot hold never fires: refuse it here, where deploy and dev run too.
    const issues = checkFactPaths(manifest, source.workflows)
    if (issues.length > 0) throw new FactPathError(issues)
    progress(`  fact paths of ${rules} rule${rules === 1 ? '' : 's'} checked against the facts schemas`)
  }
  files.set(path.join(GENERATED, 'workflows.ts'), emitWorkflows(manifest, ctx))
  files.set(path.join(GENERATED, 'client.ts'), emitClient(manifest, ctx))
  files.set(path.join(GENERATED, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`)

  // Compare or write; generated files no longer produced are stale (check) or removed (write).
  const result: CodegenResult = { service, functions: manifest.functions.length, workflows: manifest.workflows.length, layers: [...layers.keys()], files: [] }
  const existing = await listFiles(path.join(dir, GENERATED))
  for (const [file, text] of [...files].sort(([a], [b]) => byCodePoint(a, b))) {
    const absolute = path.join(dir, file)
    const current = existsSync(absolute) ? await readFile(absolute, 'utf8') : null
    const state = current === text ? 'unchanged' : options.check ? 'stale' : 'written'
    if (state === 'written') {
      await mkdir(path.dirname(absolute), { recursive: true })
      await writeFile(absolute, text)
    }
    result.files.push({ path: file.split(path.sep).join('/'), state })
  }
  // Only files codegen wrote: a user's own file in generated/ (a .gitignore) is left alone.
  for (const file of await generatedOnly(dir, existing.filter((f) => !files.has(f)))) {
    if (!options.check) await rm(path.join(dir, file))
    result.files.push({ path: file.split(path.sep).join('/'), state: options.check ? 'stale' : 'removed' })
  }
  return result
}

/**
 * The manifest with each rule's fingerprint computed from its source: its name, priority and
 * match as the bundle describes them, and the digest of the rule chain codegen found under that
 * name in the workflow's source. A rule codegen cannot place in the source is an error, never a
 * fingerprint of something else.
 */
function withSourceFingerprints(manifest: ServiceManifest, described: Manifest, workflows: readonly Located<StaticWorkflow>[]): ServiceManifest {
  const byName = new Map(workflows.map((w) => [w.name, w]))
  return {
    ...manifest,
    workflows: manifest.workflows.map((workflow) => {
      const found = byName.get(workflow.name)
      const rules = described.workflows.find((w) => w.name === workflow.name)?.rules ?? []
      if (!found) throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `the bundle has a workflow ${workflow.name} that codegen did not find in the source: define it with defineWorkflow({...}) in a file of the service`)
      return {
        ...workflow,
        rules: workflow.rules.map((rule) => {
          const chains = found.rules.filter((r) => r.name === rule.name)
          const how = `write each rule as one chain, rule('${rule.name}').match(...).action(...) with .reaction(...) and .error(...) after it, its name a string literal (or a const holding one), so codegen can fingerprint it from its source`
          if (chains.length === 0) {
            const dynamic = found.rules.filter((r) => r.name === null).map((r) => r.location)
            throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `rule ${rule.name} of workflow ${workflow.name} is not in its source as codegen reads it${dynamic.length ? ` (rules whose name is not static: ${dynamic.join(', ')})` : ''}: ${how}`, found.location)
          }
          if (chains.length > 1) {
            throw new CodegenError('PRX_CODEGEN_DUPLICATE', `rule ${rule.name} of workflow ${workflow.name} is defined by more than one chain (${chains.map((c) => c.location).join(', ')}): codegen fingerprints each rule from one definition`, found.location)
          }
          const chain = chains[0]!
          if (chain.hasReaction !== rule.hasReaction || chain.hasError !== rule.hasError) {
            throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `rule ${rule.name} of workflow ${workflow.name} has ${rule.hasReaction ? 'a' : 'no'} reaction and ${rule.hasError ? 'an' : 'no'} error section, but its chain in the source has ${chain.hasReaction ? 'a' : 'no'} reaction and ${chain.hasError ? 'an' : 'no'} error section: ${how}`, chain.location)
          }
          const bundled = rules.find((r) => r.name === rule.name)!
          return { ...rule, fingerprint: ruleFingerprint(bundled, chain.digest) }
        }),
      }
    }),
  }
}

/** Validates a manifest (from a server or a file); the error lists what is wrong and where. */
export function parseManifest(value: unknown, origin: string): ServiceManifest {
  const parsed = ServiceManifest.safeParse(value)
  if (!parsed.success) throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `${origin} is not a Praxis service manifest: ${formatIssues(parsed.error.issues)}`)
  return parsed.data
}

/** The manifest of `service` as deployed on a rule server (GET /v1/services/:service/manifest). */
export async function fetchManifest(url: string, service: string, apiKey: string): Promise<unknown> {
  const target = new URL(`/v1/services/${encodeURIComponent(service)}/manifest`, url)
  let response: Response
  try {
    response = await fetch(target, { headers: { authorization: `Bearer ${apiKey}` } })
  } catch (error) {
    throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `cannot reach ${target.origin} (${(error as Error).message}): is the rule server running? (praxis dev prints its address)`)
  }
  const body = await response.json().catch(() => null) as { error?: { message?: string } } | null
  if (!response.ok) throw new CodegenError('PRX_CODEGEN_MANIFEST_INVALID', `${target}: ${response.status} ${body?.error?.message ?? response.statusText}`)
  return body
}

/** The nearest folder above `dir` (or `dir`) with a package.json: generated headers name paths from it. */
function projectRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json'))) return d
    if (path.dirname(d) === d) return dir
  }
}

/** The files among `files` that codegen wrote: its header, or a manifest's format line. */
async function generatedOnly(dir: string, files: string[]): Promise<string[]> {
  const out: string[] = []
  for (const file of files) {
    const handle = await open(path.join(dir, file), 'r')
    const buffer = Buffer.alloc(200)
    const { bytesRead } = await handle.read(buffer, 0, 200, 0).finally(() => handle.close())
    const head = buffer.subarray(0, bytesRead).toString('utf8')
    if (head.startsWith('// Generated by `praxis codegen') || (file.endsWith('manifest.json') && head.includes('"format": "praxis.manifest/'))) out.push(file)
  }
  return out
}

async function listFiles(root: string, prefix = ''): Promise<string[]> {
  if (!existsSync(root)) return []
  const out: string[] = []
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const relative = path.join(prefix, entry.name)
    // Real folders and files only: a symlink or socket in generated/ is not codegen's.
    if (entry.isDirectory()) out.push(...await listFiles(path.join(root, entry.name), relative))
    else if (entry.isFile()) out.push(path.join(GENERATED, relative))
  }
  return out
}
