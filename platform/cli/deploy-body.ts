/**
 * What a deploy of the service in a folder sends (`praxis deploy`, and praxis/testing's platform):
 * its rules bundle and the manifest codegen wrote. Refused when the generated code is stale: rules
 * built on stale stubs, or a manifest other services would layer on, must not be deployed.
 */
import path from 'node:path'
import { codegen, CodegenError } from '../../codegen/index.js'
import type { ServiceManifest } from '../../sdk/manifest.js'
import { buildBundle, readGeneratedManifest } from '../engine/index.js'

/** `refusal` words the error, given the service and its stale files (each `dir`/path). */
export async function deployBody(dir: string, refusal: (service: string, stale: string[]) => string): Promise<{ service: string; body: { code: string; manifest?: ServiceManifest } }> {
  const checked = await codegen({ dir, check: true })
  const stale = checked.files.filter((f) => f.state === 'stale').map((f) => path.join(dir, f.path))
  if (stale.length > 0) throw new CodegenError('PRX_CODEGEN_STALE', refusal(checked.service, stale))
  const { code } = await buildBundle(dir)
  const manifest = await readGeneratedManifest(dir)
  return { service: checked.service, body: { code, ...(manifest ? { manifest } : {}) } }
}
