/**
 * The rule sandbox's thread: loads bundles and runs whole evaluations (`chain`) for the host, one
 * at a time. Rule code runs here without a per-call watchdog: the host bounds each evaluation and
 * terminates this thread when one overruns, which stops any loop.
 */
import { workerData, type MessagePort } from 'node:worker_threads'
import { loadBundle, type LoadedBundle } from './bundle.js'
import { chain } from './chain.js'
import type { SandboxReply, SandboxRequest } from './sandbox.js'

const { port, flag } = workerData as { port: MessagePort; flag: Int32Array }
const bundles = new Map<string, LoadedBundle>()
const CAPACITY = 64

/** Replies, then wakes the host, which waits on `flag` (Atomics) rather than on its event loop. */
function reply(message: SandboxReply | { ready: true }): void {
  port.postMessage(message)
  Atomics.store(flag, 0, 1)
  Atomics.notify(flag, 0)
}

port.on('message', (request: SandboxRequest) => {
  void answer(request).then(reply)
})
reply({ ready: true })

async function answer(request: SandboxRequest): Promise<SandboxReply> {
  try {
    let bundle = bundles.get(request.key)
    if (!bundle) {
      if (request.code === undefined) return { id: request.id, missing: true }
      bundle = loadBundle(request.service, request.code, { callTimeoutMs: 0 })
      bundles.set(request.key, bundle)
      if (bundles.size > CAPACITY) bundles.delete(bundles.keys().next().value!)
    }
    if (!request.input) return { id: request.id, loaded: true }
    const workflow = bundle.workflows.get(request.workflow)
    if (!workflow) return { id: request.id, error: `workflow ${request.workflow} is not in bundle ${request.key}` }
    return { id: request.id, result: await chain(bundle, workflow, request.input) }
  } catch (error) {
    return { id: request.id, error: (error as Error).message }
  }
}
