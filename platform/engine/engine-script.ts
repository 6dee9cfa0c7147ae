/**
 * The script every tenant isolate runs before its bundle (isolate-engine.ts with the chaining code
 * and json-rules-engine), built once per process with esbuild, which the platform already uses to
 * build bundles. json-rules-engine's jsonpath-plus import is replaced by a module that throws: Praxis
 * resolves fact paths itself, and tenant code must never reach a JSONPath evaluator.
 */
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'
import { SANDBOX_SCRIPT } from './build.js'

const source = import.meta.url.endsWith('.ts') ? './isolate-engine.ts' : './isolate-engine.js'
const ENTRY = fileURLToPath(new URL(source, import.meta.url))

const noJsonPath: Plugin = {
  name: 'praxis-no-jsonpath',
  setup(b) {
    b.onResolve({ filter: /^jsonpath-plus$/ }, () => ({ path: 'jsonpath-plus', namespace: 'praxis-stub' }))
    b.onLoad({ filter: /.*/, namespace: 'praxis-stub' }, () => ({
      contents: `module.exports = { JSONPath() { throw new Error('JSONPath is not available in the rule sandbox') } }`,
      loader: 'js',
    }))
  },
}

let script: Promise<string> | undefined

/** The engine script's source (built on first use, then kept). */
export function engineScript(): Promise<string> {
  script ??= build({
    ...SANDBOX_SCRIPT,
    entryPoints: [ENTRY],
    plugins: [noJsonPath],
  }).then((result) => result.outputFiles[0]!.text)
  return script
}
