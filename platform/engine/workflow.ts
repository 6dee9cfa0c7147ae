/**
 * Rules and workflows as the engine uses them: plain data, no Node APIs, so the same code runs on
 * the host (which builds them from a bundle's self-description) and inside a tenant's isolate
 * (which receives them from the host as JSON).
 */
import type { Condition } from '../../sdk/index.js'

/** A rule as the engine uses it. */
export interface LoadedRule {
  name: string
  priority: number
  /** Declaration order, the tie-break among equal priorities. */
  order: number
  condition: Condition
  fingerprint: string
  /**
   * Fingerprints the same rule had before (a bundle-derived one, when its service moved to
   * fingerprints from the source with the rule unchanged): an instance's rule state recorded
   * under one of them still counts, so the rule does not fire again.
   */
  aliases?: string[]
  /** Fact paths the match reads. */
  paths: string[]
  hasReaction: boolean
  hasError: boolean
}

/** What the host sends into an isolate for each workflow (JSON). */
export interface WorkflowSpec {
  name: string
  maxFirings: number
  signals: string[]
  rules: LoadedRule[]
  /** A deploy's added or changed rules reopen completed instances (sdk/workflow.ts `reopen`). */
  reopen?: boolean
  /** The facts schema's version (sdk/workflow.ts `factsVersion`; absent: 1). */
  factsVersion?: number
}

export interface LoadedWorkflow {
  name: string
  maxFirings: number
  reopen: boolean
  /** Facts of an instance at an older version are migrated (the workflow's `migrate`) before its rules run. */
  factsVersion: number
  signals: Set<string>
  rules: LoadedRule[]
  byName: Map<string, LoadedRule>
  /** Rules by the first segment of each path they read. */
  index: Map<string, LoadedRule[]>
}

/** Indexes a workflow's rules by name and by the fact paths they read. */
export function indexWorkflow(spec: WorkflowSpec): LoadedWorkflow {
  const index = new Map<string, LoadedRule[]>()
  for (const rule of spec.rules) {
    for (const top of new Set(rule.paths.map((p) => p.split('.')[0]!))) {
      index.set(top, [...(index.get(top) ?? []), rule])
    }
  }
  return { name: spec.name, maxFirings: spec.maxFirings, reopen: spec.reopen === true, factsVersion: spec.factsVersion ?? 1, signals: new Set(spec.signals), rules: spec.rules, byName: new Map(spec.rules.map((r) => [r.name, r])), index }
}

/** The JSON form of a loaded workflow, to send into an isolate. */
export function workflowSpec(workflow: LoadedWorkflow): WorkflowSpec {
  return { name: workflow.name, maxFirings: workflow.maxFirings, signals: [...workflow.signals], rules: workflow.rules, reopen: workflow.reopen, factsVersion: workflow.factsVersion }
}
