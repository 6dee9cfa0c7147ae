// Starts the rule sandbox thread from TypeScript source (development, tests): registers tsx's
// loader in this thread, which worker threads do not inherit, then loads the worker module.
import { register } from 'tsx/esm/api'

register()
await import('./sandbox-worker.ts')
