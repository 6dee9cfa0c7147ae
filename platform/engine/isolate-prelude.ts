/**
 * The first code in every tenant isolate (imported first by isolate-engine.ts, so it runs before
 * any library initialises): it takes away what rule code must not have and makes time and
 * randomness functions of the evaluation, so running an evaluation again gives the same commands.
 */
const g = globalThis as unknown as Record<string, unknown>

// Shared memory and WebAssembly escape the isolate's heap accounting; WeakRef and
// FinalizationRegistry let rule code observe garbage collection (nondeterminism).
for (const name of ['SharedArrayBuffer', 'Atomics', 'WebAssembly', 'WeakRef', 'FinalizationRegistry']) delete g[name]

// No timers: an evaluation is one synchronous pass (libraries that merely reference them still load).
const noTimers = (): never => {
  throw new Error('timers are not available to rule code: wait with ctx.after(...), or do the waiting in a function')
}
export const TIMERS = ['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate'] as const
for (const name of TIMERS) g[name] = noTimers

// The logical clock: the timestamp of the event being evaluated.
let now = 0
const RealDate = Date
function LogicalDate(this: unknown, ...args: unknown[]): unknown {
  if (!new.target) return new RealDate(now).toString()
  return Reflect.construct(RealDate, args.length === 0 ? [now] : args, new.target)
}
LogicalDate.prototype = RealDate.prototype
Object.defineProperty(RealDate.prototype, 'constructor', { value: LogicalDate, writable: false, enumerable: false, configurable: false })
Object.assign(LogicalDate, { now: () => now, parse: RealDate.parse, UTC: RealDate.UTC })
g.Date = LogicalDate

// Intl formats "now" (no date given) with the engine's own clock: give it the logical time too.
{
  const proto = Intl.DateTimeFormat.prototype
  const format = Object.getOwnPropertyDescriptor(proto, 'format')!.get!
  const formatToParts = proto.formatToParts
  Object.defineProperty(proto, 'format', {
    configurable: true,
    get(this: Intl.DateTimeFormat) {
      const bound = format.call(this) as (date?: Date | number) => string
      return (date?: Date | number) => bound(date === undefined ? now : date)
    },
  })
  proto.formatToParts = function (this: Intl.DateTimeFormat, date?: Date | number) {
    return formatToParts.call(this, date === undefined ? now : date)
  }
}

// A seeded generator (sfc32), reseeded per call from (instance, revision).
let a = 0, b = 0, c = 0, d = 0
const random = (): number => {
  a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
  const t = (a + b + d) >>> 0
  d = (d + 1) >>> 0
  a = b ^ (b >>> 9)
  b = (c + (c << 3)) >>> 0
  c = (c << 21) | (c >>> 11)
  c = (c + t) >>> 0
  return t / 4294967296
}
Math.random = random
export function setClock(time: unknown, seed: unknown): void {
  now = typeof time === 'number' && Number.isFinite(time) ? time : 0
  const s = typeof seed === 'number' ? seed >>> 0 : 0
  a = 0x9e3779b9; b = 0x243f6a88; c = 0xb7e15162; d = s
  for (let i = 0; i < 12; i++) random()
}
