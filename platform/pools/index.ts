/** platform/pools: worker processes that run function handlers and take the fused step. */
export { startWorker, sweepDeadWorkers, type WorkerHandle, type WorkerOptions } from './worker.js'
export { runInvocation, type InvokeOutcome } from './invoke.js'
export { loadService, type LoadedService } from './service.js'
