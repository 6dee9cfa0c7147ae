/** platform/engine: bundles, condition evaluation, forward chaining and the evaluation transaction. */
export { buildBundle, readGeneratedManifest } from './build.js'
export { loadBundle, serviceManifest, type LoadedBundle, type LoadedRule, type LoadedWorkflow, type Manifest } from './bundle.js'
export { BundleCache } from './bundle-cache.js'
export { chain, type ChainInput, type ChainResult, type HandlerRun, type TimelineDraft } from './chain.js'
export { ConditionEvaluator } from './conditions.js'
export { Evaluator, type EvaluationSummary, type InvocationResult } from './evaluate.js'
export { deployBundle, type Deployment } from './deploy.js'
