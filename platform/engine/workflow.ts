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
}

export interface LoadedWorkflow {
  name: string
  maxFirings: number
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
  return { name: spec.name, maxFirings: spec.maxFirings, signals: new Set(spec.signals), rules: spec.rules, byName: new Map(spec.rules.map((r) => [r.name, r])), index }
}

/** The JSON form of a loaded workflow, to send into an isolate. */
export function workflowSpec(workflow: LoadedWorkflow): WorkflowSpec {
  return { name: workflow.name, maxFirings: workflow.maxFirings, signals: [...workflow.signals], rules: workflow.rules }
}
