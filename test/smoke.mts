import { buildBundle, loadBundle } from '../platform/engine/bundle.js'
const t0 = performance.now()
const b = await buildBundle('examples/video-encoding')
const t1 = performance.now()
const l = loadBundle('video-encoding', b.code)
const t2 = performance.now()
console.log('build', (t1 - t0).toFixed(1), 'load', (t2 - t1).toFixed(1), 'size', b.code.length)
console.log(JSON.stringify(l.manifest.workflows[0]!.rules.map(r => [r.name, r.fingerprint, r.paths])))
const init = l.runtime.init('encodeVideo', { source: 's3://a.mov', recipe: 'h264' })
console.log(JSON.stringify(init))
if (init.ok) {
  const r = l.runtime.run({ workflow: 'encodeVideo', target: { rule: 'split', section: 'action' }, facts: init.facts })
  console.log(JSON.stringify(r))
  let t = performance.now()
  for (let i = 0; i < 1000; i++) l.runtime.run({ workflow: 'encodeVideo', target: { rule: 'split', section: 'action' }, facts: init.facts })
  console.log('per run us', ((performance.now() - t)).toFixed(1))
}
console.log(JSON.stringify(l.runtime.init('encodeVideo', { source: '', recipe: 3 })))
{
  const l2 = loadBundle('video-encoding', b.code, { callTimeoutMs: 0 })
  const init = l2.runtime.init('encodeVideo', { source: 's3://a.mov', recipe: 'h264' })
  if (init.ok) for (let k = 0; k < 3; k++) {
    let t = performance.now()
    for (let i = 0; i < 1000; i++) l.runtime.run({ workflow: 'encodeVideo', target: { rule: 'split', section: 'action' }, facts: init.facts })
    const a = performance.now() - t
    t = performance.now()
    for (let i = 0; i < 1000; i++) l2.runtime.run({ workflow: 'encodeVideo', target: { rule: 'split', section: 'action' }, facts: init.facts })
    console.log('timeout us/run', a.toFixed(1), 'no-timeout', (performance.now() - t).toFixed(1))
  }
}
