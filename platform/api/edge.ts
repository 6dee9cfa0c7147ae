/**
 * The API's edge: what every request passes before a route sees it. A JSON body parser with a
 * byte limit and a nesting-depth limit (checked on the text, iteratively, before JSON.parse, so no
 * depth overflows a stack); no `\u0000` or lone surrogate in any string or key of a body, query or
 * path (PostgreSQL stores neither); and the HTTP parser's and router's own refusals (414, 431, bad
 * URL encoding) answered as `{ error: { code, message, details } }` like every other error.
 */
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { PraxisError, type ErrorCode } from '../errors.js'
import { UNSTORABLE } from '../engine/checks.js'

export interface EdgeLimits {
  /** Bytes of a request body (default 1 MiB). */
  bodyBytes: number
  /** Bytes of a deployment's body, which carries the bundle's code (default 25 MiB). */
  deployBodyBytes: number
  /** Levels of nesting of a JSON body; the body itself is level 1 (default 64). */
  depth: number
  /** Bytes of the request URL, path and query (default 8,192). */
  urlBytes: number
  /** Characters of one path parameter (default 256). */
  paramChars: number
  /** Bytes of the request line and headers; Node's `maxHeaderSize` (default 16 KiB). Used by `listen` servers. */
  headerBytes: number
}

export const DEFAULT_LIMITS: EdgeLimits = {
  bodyBytes: 1024 * 1024,
  deployBodyBytes: 25 * 1024 * 1024,
  depth: 64,
  urlBytes: 8192,
  paramChars: 256,
  headerBytes: 16 * 1024,
}

/** `{ error: { code, message, details } }` */
export const errorBody = (code: ErrorCode | string, message: string, details: unknown = null): { error: { code: string; message: string; details: unknown } } =>
  ({ error: { code, message, details } })

const MAX_SHOWN_SEGMENTS = 8

function showPath(segments: (string | number)[]): string {
  const shown = segments.slice(0, MAX_SHOWN_SEGMENTS).map((s) => (typeof s === 'number' ? `[${s}]` : s.length > 40 ? `${s.slice(0, 40)}…` : s))
  return shown.join('.').replace(/\.\[/g, '[') + (segments.length > MAX_SHOWN_SEGMENTS ? '…' : '')
}

/**
 * The deepest nesting of the JSON text, or where it first goes deeper than `max` (the keys and
 * indices leading there). One pass, no recursion; the text need not be valid JSON (JSON.parse
 * judges that afterwards).
 */
export function findTooDeep(text: string, max: number): (string | number)[] | null {
  // One frame per open container: an object's current key, or an array's current index.
  const keys: (string | number)[] = []
  const isObject: boolean[] = []
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 /* " */) {
      const start = i + 1
      for (i = start; i < text.length; i++) {
        const d = text.charCodeAt(i)
        if (d === 0x5c /* \ */) i++
        else if (d === 0x22) break
      }
      if (expectKey && isObject[isObject.length - 1]) {
        keys[keys.length - 1] = text.slice(start, Math.min(i, start + 80))
        expectKey = false
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (keys.length >= max) return keys
      isObject.push(c === 0x7b)
      keys.push(c === 0x7b ? '' : 0)
      expectKey = c === 0x7b
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      keys.pop()
      isObject.pop()
      expectKey = false
    } else if (c === 0x2c /* , */) {
      const top = keys.length - 1
      if (top >= 0 && isObject[top]) expectKey = true
      else if (top >= 0) keys[top] = (keys[top] as number) + 1
    }
  }
  return null
}

/** Text PostgreSQL cannot store (NUL, half of a surrogate pair): the same test the engine holds rule code's answers to. */
const BAD_CHAR = UNSTORABLE

/** What is wrong with a string PostgreSQL would refuse, or null. */
export function badString(s: string): string | null {
  const m = BAD_CHAR.exec(s)
  if (!m) return null
  return m[0] === '\u0000'
    ? 'holds a NUL character (\\u0000), which PostgreSQL cannot store'
    : `holds a lone surrogate (\\u${m[0].charCodeAt(0).toString(16)}), which is not Unicode text`
}

/**
 * The first string or key of `value` that PostgreSQL would refuse, with its path. Iterative: the
 * value may come from anywhere (a query, params) and need not have passed the depth check.
 */
export function findBadString(value: unknown, root: string): { path: string; problem: string } | null {
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [root] }]
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!
    if (typeof v === 'string') {
      const problem = badString(v)
      if (problem) return { path: showPath(path), problem }
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: [...path, i] })
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v)
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, item] = entries[i]!
        const problem = badString(key)
        if (problem) return { path: showPath([...path, key.replace(BAD_CHAR, '�')]), problem: `has a key that ${problem}` }
        stack.push({ value: item, path: [...path, key] })
      }
    }
  }
  return null
}

function refuseBadString(value: unknown, where: string): void {
  const bad = findBadString(value, where)
  if (bad) throw new PraxisError('PRX_BAD_REQUEST', `${bad.path} ${bad.problem}`, { details: [{ path: bad.path, code: 'invalid_string', message: bad.problem }] })
}

/** Installs the body parser, the string checks and the framework-error answers on `app`. */
export function installEdge(app: FastifyInstance, limits: EdgeLimits): void {
  const defaultJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string
    const deep = findTooDeep(text, limits.depth)
    if (deep) {
      const path = showPath(['body', ...deep])
      done(new PraxisError('PRX_BAD_REQUEST', `body nests deeper than ${limits.depth} levels at ${path}`, { details: [{ path, code: 'too_deep', limit: limits.depth }] }), undefined)
      return
    }
    // fastify's parser (secure-json-parse: `__proto__` and `constructor.prototype` keys refused)
    // answers synchronously; any exception of JSON.parse (a RangeError too) becomes its 400.
    let failed: Error | null = null
    let parsed: unknown
    defaultJson(request, text, (error, value) => {
      failed = error
      parsed = value
    })
    if (failed) {
      done(failed, undefined)
      return
    }
    try {
      refuseBadString(parsed, 'body')
    } catch (refused) {
      done(refused as Error, undefined)
      return
    }
    done(null, parsed)
  })

  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (Buffer.byteLength(request.url) > limits.urlBytes) throw new PraxisError('PRX_URL_TOO_LONG', `the URL is longer than ${limits.urlBytes} bytes`, { details: { limit: limits.urlBytes } })
  })
  app.addHook('preValidation', async (request: FastifyRequest) => {
    refuseBadString(request.params, 'params')
    refuseBadString(request.query, 'query')
  })
}

/** fastify's `frameworkErrors`: the router's refusals before any route or hook runs. */
export function frameworkErrors(limits: EdgeLimits) {
  return (error: Error & { code?: string }, _request: FastifyRequest, reply: FastifyReply): void => {
    if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      void reply.status(414).send(errorBody('PRX_URL_TOO_LONG', `a path parameter is longer than ${limits.paramChars} characters`, { limit: limits.paramChars }))
    } else if (error.code === 'FST_ERR_BAD_URL') {
      void reply.status(400).send(errorBody('PRX_BAD_REQUEST', 'the URL is not validly percent-encoded', { fastify: error.code }))
    } else {
      void reply.status(400).send(errorBody('PRX_BAD_REQUEST', error.message, { fastify: error.code ?? null }))
    }
  }
}

/** fastify's `clientErrorHandler`: what Node's HTTP parser refuses (no request object exists yet). */
export function clientErrorHandler(limits: EdgeLimits) {
  return (error: Error & { code?: string }, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return
    let status = 400
    let body = errorBody('PRX_BAD_REQUEST', 'the request is not valid HTTP', { http: error.code ?? null })
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      status = 431
      body = errorBody('PRX_HEADERS_TOO_LARGE', `the request line and headers exceed ${limits.headerBytes} bytes`, { limit: limits.headerBytes })
    } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408
      body = errorBody('PRX_BAD_REQUEST', 'the request was not received in time', { http: error.code })
    }
    const text = JSON.stringify(body)
    socket.end(`HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`)
  }
}

const statusText = (status: number): string => ({ 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' } as Record<number, string>)[status] ?? 'Error'
