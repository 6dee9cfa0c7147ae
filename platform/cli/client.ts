/** A small HTTP client of the REST API, for the CLI. */
import { readFile } from 'node:fs/promises'
import path from 'node:path'

export interface ApiClient { request(method: 'GET' | 'POST', url: string, body?: unknown): Promise<any> }

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: { error?: { code?: string; message?: string; details?: unknown } } | null) {
    super(body?.error?.message ?? `HTTP ${status}`)
  }
}

/** The key from --api-key, PRAXIS_API_KEY, or the one `praxis dev` wrote for its local tenant. */
export async function resolveApiKey(flag: string | undefined, dataDir: string): Promise<string> {
  const key = flag ?? process.env.PRAXIS_API_KEY ?? (await readFile(path.join(dataDir, 'dev-api-key'), 'utf8').catch(() => '')).trim()
  if (!key) throw new Error(`no API key: pass --api-key, set PRAXIS_API_KEY, or run \`praxis dev\` first (it writes ${path.join(dataDir, 'dev-api-key')})`)
  return key
}

export function apiClient(server: string, apiKey: string): ApiClient {
  return {
    async request(method, url, body) {
      let response: Response
      try {
        response = await fetch(new URL(url, server), {
          method,
          headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        })
      } catch (error) {
        throw new Error(`cannot reach the Praxis API at ${server} (${(error as Error).message}): start it with \`npm start\` or pass --server`, { cause: error })
      }
      const text = await response.text()
      const parsed = text ? JSON.parse(text) : null
      if (!response.ok) throw new ApiError(response.status, parsed)
      return parsed
    },
  }
}
