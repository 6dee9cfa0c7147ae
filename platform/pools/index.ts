/** platform/pools: worker processes that run function handlers and take the fused step. */
export { checkCaps, type CapsOptions } from './caps.js'
export { startWorker, sweepDeadWorkers, type WorkerHandle, type WorkerOptions } from './worker.js'
export { runInvocation, type InvokeOutcome } from './invoke.js'
export { loadService, type LoadedService } from './service.js'
export { checkPolicy, desiredWorkers, formatEvent, groupPools, Supervisor, WORKER_READY, type PoolLoad, type PoolSpec, type PoolStatus, type ScaleDecision, type ScalePolicy, type ServiceRestart, type SupervisorEvent, type SupervisorOptions } from './supervisor.js'
