/**
 * A bundle run in this process, for tests of chaining semantics and for the benchmark's
 * unsandboxed baseline. Only for the project's own fixtures: `node:vm` is no security boundary;
 * the platform itself runs every bundle in a tenant isolate (platform/engine/isolate-sandbox.ts).
 */
import vm from 'node:vm'
import type { BundleRuntime, RunResult } from '../../sdk/runtime.js'
import { describeBundle, type LoadedWorkflow, type Manifest, type SectionRunner } from '../../platform/engine/index.js'

export interface TrustedBundle {
  service: string
  run: SectionRunner
  init(workflow: string, input: unknown): RunResult
  workflows: Map<string, LoadedWorkflow>
  manifest: Manifest
}

export function loadTrusted(service: string, code: string): TrustedBundle {
  const context = vm.createContext({})
  vm.runInContext(code, context, { filename: `${service}.bundle.js` })
  const runtime = (context as { __praxis: BundleRuntime }).__praxis
  const { workflows, manifest } = describeBundle(service, runtime.describe())
  return {
    service,
    run: (request) => JSON.parse(runtime.run(JSON.stringify(request))) as RunResult,
    init: (workflow, input) => JSON.parse(runtime.init(workflow, JSON.stringify(input ?? null))) as RunResult,
    workflows,
    manifest,
  }
}
