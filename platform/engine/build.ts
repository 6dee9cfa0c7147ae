/** Building a bundle: the rules side of a service, bundled by esbuild into one script. */
import { existsSync, realpathSync } from 'node:fs'
import { builtinModules } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type BuildOptions, type Plugin } from 'esbuild'
import { PraxisError } from '../errors.js'
import { readFile } from 'node:fs/promises'
import { ServiceManifest } from '../../sdk/manifest.js'
import { formatIssues } from '../../sdk/context.js'
import { sha256 } from './bundle.js'

const RUNTIME_ENTRY = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../sdk/runtime.ts' : '../../sdk/runtime.js', import.meta.url))

/** How every script that runs in a tenant isolate is built: one self-contained script, no Node APIs. */
export const SANDBOX_SCRIPT = {
  bundle: true,
  write: false,
  format: 'iife',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  target: 'es2022',
  legalComments: 'none',
  logLevel: 'silent',
} as const satisfies BuildOptions

/**
 * Builds the rules side of the service in `serviceDir` (its `workflows.ts`) into one script.
 * `files` stands in for files by absolute path (codegen builds with the stubs it is about to write).
 * A bundle that would contain the service's `functions.ts` (function implementations) is refused:
 * rules import the generated stubs instead.
 */
export async function buildBundle(serviceDir: string, options: { files?: ReadonlyMap<string, string> } = {}): Promise<{ code: string; hash: string }> {
  const entry = ['workflows.ts', 'workflows.js'].map((f) => path.resolve(serviceDir, f)).find((f) => existsSync(f))
  if (!entry) throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `no workflows.ts in ${serviceDir}: a service keeps its rules side in workflows.ts and its functions in functions.ts`)
  const result = await build({
    stdin: {
      contents: `import * as workflows from ${JSON.stringify(entry)}\nimport { createRuntime } from ${JSON.stringify(RUNTIME_ENTRY)}\nglobalThis.__praxis = createRuntime([workflows])\n`,
      resolveDir: path.dirname(entry),
      loader: 'ts',
      sourcefile: 'praxis-bundle-entry.ts',
    },
    ...SANDBOX_SCRIPT,
    metafile: true,
    plugins: [nodeBuiltinsUnavailable, ...(options.files ? [inMemoryFiles(options.files)] : [])],
  }).catch((error: { errors?: { text: string; location?: { file: string; line: number } | null }[] }) => {
    const lines = (error.errors ?? []).map((e) => `  ${e.location ? `${e.location.file}:${e.location.line}: ` : ''}${e.text}`)
    throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `cannot bundle ${entry}:\n${lines.join('\n')}\nthe rules side runs in a sandbox without Node APIs: keep I/O in function handlers`, { cause: error })
  })
  // Real paths on both sides: esbuild reports them, and the service folder may be a symlink.
  const real = (file: string): string => (existsSync(file) ? realpathSync(file) : file)
  const implementations = ['functions.ts', 'functions.js'].map((f) => real(path.resolve(serviceDir, f)))
  const bundled = Object.keys(result.metafile.inputs).map((input) => real(path.resolve(input.replace(/^[\w-]+:/, ''))))
  const leaked = bundled.find((input) => implementations.includes(input))
  if (leaked) {
    throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `the rules side of ${path.relative(process.cwd(), serviceDir) || '.'} imports ${path.relative(process.cwd(), leaked)}, the function implementations: rules must import the generated stubs instead (\`import { ... } from './generated/functions.js'\`; run \`praxis codegen ${path.relative(process.cwd(), serviceDir) || '.'}\` to write them), so the rule server never receives function code`)
  }
  await refuseModuleState(serviceDir, bundled, options.files)
  const code = result.outputFiles[0]!.text
  return { code, hash: sha256(code) }
}

/**
 * Rule code keeps no state between evaluations: the isolate's built-ins and global are frozen, but
 * a module-level `let` or `var` of the service's own files is a binding no freeze reaches, and
 * would carry values from one evaluation (and instance) to the next. Refuse it, naming each place.
 * (Re-running the module code per evaluation would clear it, but costs 8-15 ms per evaluation
 * measured here, against ~0.1 ms for the whole sandboxed evaluation.)
 */
async function refuseModuleState(serviceDir: string, files: readonly string[], inMemory?: ReadonlyMap<string, string>): Promise<void> {
  const root = realpathSync(serviceDir) + path.sep
  const own = files.filter((f) => f.startsWith(root) && !f.includes(`${path.sep}node_modules${path.sep}`) && /\.[cm]?[jt]s$/.test(f))
  if (own.length === 0) return
  const { default: ts } = await import('typescript')
  const found: string[] = []
  for (const file of own) {
    const text = inMemory?.get(file) ?? await readFile(file, 'utf8').catch(() => null)
    if (text === null) continue
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false)
    for (const statement of source.statements) {
      if (!ts.isVariableStatement(statement) || (statement.declarationList.flags & (ts.NodeFlags.Const | ts.NodeFlags.Using)) !== 0) continue
      for (const declaration of statement.declarationList.declarations) {
        const line = source.getLineAndCharacterOfPosition(declaration.getStart(source)).line + 1
        found.push(`  ${path.relative(process.cwd(), file)}:${line}: module-level \`${statement.declarationList.flags & ts.NodeFlags.Let ? 'let' : 'var'} ${declaration.name.getText(source)}\``)
      }
    }
  }
  if (found.length > 0) {
    throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `the rules side of ${path.relative(process.cwd(), serviceDir) || '.'} keeps state in module variables:\n${found.join('\n')}\nrule code must give the same commands each time it runs over the same facts: keep state in facts (ctx.set), or make it a const`)
  }
}

/** Serves files from memory (by absolute path) in place of the disk. */
function inMemoryFiles(files: ReadonlyMap<string, string>): Plugin {
  return {
    name: 'praxis-in-memory-files',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.path.startsWith('.')) {
          const base = path.resolve(args.resolveDir, args.path)
          const candidate = [base, base.replace(/\.js$/, '.ts'), `${base}.ts`].find((p) => files.has(p))
          if (candidate) return { path: candidate }
        }
        if (!files.has(args.importer) || existsSync(args.resolveDir)) return undefined
        // An in-memory file in a folder not yet on disk: resolve from the nearest folder that is.
        let dir = args.resolveDir
        while (!existsSync(dir)) dir = path.dirname(dir)
        const request = args.path.startsWith('.') ? `./${path.relative(dir, path.resolve(args.resolveDir, args.path)).split(path.sep).join('/')}` : args.path
        const resolved = await b.resolve(request, { resolveDir: dir, kind: args.kind, importer: args.importer })
        return resolved.errors.length > 0 ? { errors: resolved.errors } : { path: resolved.path, namespace: resolved.namespace, external: resolved.external }
      })
      b.onLoad({ filter: /.*/ }, (args) => (files.has(args.path) ? { contents: files.get(args.path)!, loader: 'ts', resolveDir: path.dirname(args.path) } : undefined))
    },
  }
}

/**
 * Rules import their functions' definitions for names and schemas, and so, transitively, the
 * Node modules the handlers use. Handlers never run in the sandbox: such imports resolve to a
 * module whose every use throws a message saying why. (Generated stubs remove them altogether.)
 */
const nodeBuiltinsUnavailable: Plugin = {
  name: 'praxis-node-builtins-unavailable',
  setup(b) {
    const builtins = new Set(builtinModules)
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      args.path.startsWith('node:') || builtins.has(args.path) ? { path: args.path, namespace: 'praxis-unavailable' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'praxis-unavailable' }, (args) => ({
      contents: `const fail = () => { throw new Error(${JSON.stringify(`${args.path} is not available to rule code: do I/O in a function handler`)}) }
module.exports = new Proxy(fail, { get: (_, key) => key === '__esModule' ? false : fail, apply: fail, construct: fail })`,
      loader: 'js',
    }))
  },
}

/** The manifest `praxis codegen` wrote for the service in `serviceDir`, or null when there is none. */
export async function readGeneratedManifest(serviceDir: string): Promise<ServiceManifest | null> {
  const file = path.resolve(serviceDir, 'generated', 'manifest.json')
  if (!existsSync(file)) return null
  let json: unknown
  try {
    json = JSON.parse(await readFile(file, 'utf8'))
  } catch (error) {
    throw new PraxisError('PRX_BUNDLE_INVALID', `${path.relative(process.cwd(), file)} is not JSON (${(error as Error).message}): run \`praxis codegen ${path.relative(process.cwd(), serviceDir) || '.'}\``)
  }
  const parsed = ServiceManifest.safeParse(json)
  if (!parsed.success) throw new PraxisError('PRX_BUNDLE_INVALID', `${path.relative(process.cwd(), file)} is not a service manifest (${formatIssues(parsed.error.issues)}): run \`praxis codegen ${path.relative(process.cwd(), serviceDir) || '.'}\``)
  return parsed.data
}
