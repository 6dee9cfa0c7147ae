/** Polling for tests: wait until a condition holds, or a reprocessing run is over. */
import type { TestPlatform } from './platform.js'

/** Polls `check` every 50 ms until it holds; after `timeoutMs`, fails naming `what` (text, or read then). */
export async function until(check: () => boolean | Promise<boolean>, what: string | (() => string | Promise<string>), timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : await what()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Waits until a reprocessing run of `service` is over and every evaluation it queued ran; returns its progress. */
export async function runReached(p: Pick<TestPlatform, 'request'>, service: string, id: string, key?: string): Promise<Record<string, any>> {
  let run: Record<string, any> = {}
  await until(async () => {
    run = (await p.request('GET', `/v1/services/${service}/reprocessing/${id}`, undefined, key)).body
    return run.status !== 'running' && run.evaluated >= run.queued
  }, () => `reprocessing run ${id} of ${service} to finish: ${JSON.stringify(run)}`)
  return run
}
