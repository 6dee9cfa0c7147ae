/** Building a bundle: the rules side of a service, bundled by esbuild into one script. */
import { existsSync } from 'node:fs'
import { builtinModules } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'
import { PraxisError } from '../errors.js'
import { sha256 } from './bundle.js'

const RUNTIME_ENTRY = fileURLToPath(new URL('../../sdk/runtime.ts', import.meta.url))

/** Builds the rules side of the service in `serviceDir` (its `workflows.ts`) into one script. */
export async function buildBundle(serviceDir: string): Promise<{ code: string; hash: string }> {
  const entry = ['workflows.ts', 'workflows.js'].map((f) => path.resolve(serviceDir, f)).find((f) => existsSync(f))
  if (!entry) throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `no workflows.ts in ${serviceDir}: a service keeps its rules side in workflows.ts and its functions in functions.ts`)
  const result = await build({
    stdin: {
      contents: `import * as workflows from ${JSON.stringify(entry)}\nimport { createRuntime } from ${JSON.stringify(RUNTIME_ENTRY)}\nglobalThis.__praxis = createRuntime([workflows])\n`,
      resolveDir: path.dirname(entry),
      loader: 'ts',
      sourcefile: 'praxis-bundle-entry.ts',
    },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    target: 'es2022',
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [nodeBuiltinsUnavailable],
  }).catch((error: { errors?: { text: string; location?: { file: string; line: number } | null }[] }) => {
    const lines = (error.errors ?? []).map((e) => `  ${e.location ? `${e.location.file}:${e.location.line}: ` : ''}${e.text}`)
    throw new PraxisError('PRX_BUNDLE_BUILD_FAILED', `cannot bundle ${entry}:\n${lines.join('\n')}\nthe rules side runs in a sandbox without Node APIs: keep I/O in function handlers`, { cause: error })
  })
  const code = result.outputFiles[0]!.text
  return { code, hash: sha256(code) }
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
