/**
 * The Praxis SDK: what services import. Functions do the work; workflows hold typed facts and
 * forward-chaining rules that call them.
 *
 * @example
 * import { z } from 'zod'
 * import { defineFunction, defineWorkflow } from 'praxis/sdk'
 *
 * export const greet = defineFunction({
 *   name: 'greet', input: z.object({ who: z.string() }), output: z.object({ text: z.string() }),
 *   handler: async ({ who }) => ({ text: `hello ${who}` }),
 * })
 * export const hello = defineWorkflow({
 *   name: 'hello',
 *   input: z.object({ who: z.string() }),
 *   facts: z.object({ who: z.string(), stage: z.enum(['new', 'greeting', 'done']), text: z.string().optional() }),
 *   init: (input) => ({ who: input.who, stage: 'new' }),
 *   rules: (rule) => [
 *     rule('greet').match((f) => f.stage.eq('new'))
 *       .action((facts, ctx) => { ctx.set({ stage: 'greeting' }); return ctx.call(greet, { who: facts.who }) })
 *       .reaction((facts, out, ctx) => ctx.set({ stage: 'done', text: out.text })),
 *     rule('finish').match((f) => f.stage.eq('done')).action((facts, ctx) => ctx.complete({ text: facts.text ?? '' })),
 *   ],
 * })
 */
export { defineFunction, isFunctionRef, qualifiedPool } from './function.js'
export type { BatchContext, BatchHandler, FunctionContext, FunctionDefinition, FunctionOptions, FunctionRef, RetryPolicy } from './function.js'
export { defineWorkflow, isWorkflow } from './workflow.js'
export type { SignalFactory, SignalHandler, WorkflowDefinition, WorkflowOptions } from './workflow.js'
export { CHILD_POOL, functionStub, isWorkflowRef, workflowRef } from './stub.js'
export type { FunctionStubOptions, WorkflowRef } from './stub.js'
export { createServiceClient, PraxisApiError } from './client.js'
export type { ClientOptions, InstanceHandle, InstanceView, ServiceClient, TimelineEntry } from './client.js'
export type { ManifestFunction, ManifestRule, ManifestWorkflow, ServiceManifest } from './manifest.js'
export { rule } from './rule.js'
export type { ActedRule, MatchedRule, RuleBuilder, RuleDefinition, RuleFactory, RuleSections } from './rule.js'
export { buildCondition, conditionPaths, RESERVED_NAMES } from './match.js'
export type { Condition, Json, LeafCondition, MatchRoot, Operator, PathNode, PathRef } from './match.js'
export type { Callable, CallEachOptions, CallHandle, CallInfo, CallOptions, Command, Failure, RuleContext } from './context.js'
export { MAX_BATCH_SIZE, MAX_CAN_WAIT_MS } from './context.js'
export type { DeepReadonly, FactsPatch, PathValue, Paths } from './paths.js'
export { DefinitionError, NonRetryableError } from './errors.js'
export type { SdkErrorCode } from './errors.js'
