// The Node half of full-size-check.py: the acceptance steps on the exported full-size models, through the
// built package (dist/index.js; run `npm run build` first). Usage: node full-size-check.mjs DIR STEPS families...
// Prints one Markdown row per family as it finishes; each cell is also written to DIR/<family>.cells.json as
// soon as it is measured, so a family stopped by full-size-check.py's time limit keeps what it finished.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { autograd as ag, dependencyGroups, destroyRuntime, exportOnnx, fromArray, importOnnx, initRuntime, OptimalTransport, prune, tidy } from '../../dist/index.js';

const [dir, stepList, ...families] = process.argv.slice(2);
const steps = new Set(stepList.split(','));

/** Mulberry32, as seededRandom in src/nn/init.ts and mulberry32 in families.py. */
function referenceInput(seed, count) {
  let a = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = 2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1;
  }
  return out;
}
const relativeError = (a, b) => {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
  return a.length === b.length ? diff / scale : Infinity;
};
const engine = (model, x, shape) => (model.eval(), ag.noGrad(() => tidy(() => model.call(fromArray(x, shape)))).dataAndDispose());
async function onnxruntime(bytes, x, shape) {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return (await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, shape) }))[session.outputNames[0]].data;
  } finally {
    await session.release();
  }
}
/** Our groups against Torch-Pruning's, as test/acceptance.test.ts compares them: equal, or how many differ. */
function compareGroups(model, theirs) {
  const bnPresent = new Set(model.namedModules().filter(([, m]) => m.constructor.name === 'BatchNorm2d').map(([n]) => n));
  const key = (g) => JSON.stringify([g.channels, [...g.out].sort(), [...g.in].sort(), [...g.bn].filter((b) => bnPresent.has(b)).sort()]);
  const ours = dependencyGroups(model, { inputShape: model.inputShape }).map((g) => {
    const out = g.producers.map((p) => p.path);
    const depthwise = g.producers.filter((p) => p.groups > 1 && p.groups === p.inChannels && p.groups === p.outChannels).map((p) => p.path);
    return key({ channels: g.channels, out, in: g.consumers.map((c) => c.layer.path).filter((p) => !depthwise.includes(p)), bn: g.batchNorms.map((b) => b.path) });
  });
  const theirKeys = new Set(theirs.map(key));
  const missing = ours.filter((k) => !theirKeys.has(k)).length;
  return `${ours.length} / ${theirs.length}${missing || ours.length !== theirs.length ? `, ${missing} differ` : ', equal'}`;
}
const fmt = (e) => e.toExponential(1);
const seconds = (t0) => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

await initRuntime(0);
const rows = ['| model | parameters | import: vs PyTorch / vs onnxruntime | groups (ours / Torch-Pruning) | default 0.5 | Intra-Fusion 0.5 | folding 0.5 |', '|---|---:|---|---|---|---|---|'];
for (const family of families) {
  const cells = [family];
  const saved = join(dir, `${family}.cells.json`);
  const push = (cell) => {
    cells.push(cell);
    writeFileSync(saved, JSON.stringify(cells));
  };
  writeFileSync(saved, JSON.stringify(cells));
  const file = join(dir, `${family}.onnx`);
  try {
    if (!existsSync(file)) throw new Error('not exported');
    const ref = JSON.parse(readFileSync(join(dir, `${family}.json`), 'utf8'));
    const bytes = new Uint8Array(readFileSync(file));
    const x = referenceInput(ref.input.seed, ref.input.shape.reduce((a, b) => a * b, 1));
    push(ref.parameters.toLocaleString('en-US'));
    let t0 = performance.now();
    const model = importOnnx(bytes, `${family}.onnx`);
    const ours = await engine(model, x, ref.input.shape);
    push(steps.has('import') ? `${fmt(relativeError(ours, ref.output))} / ${fmt(relativeError(ours, await onnxruntime(bytes, x, ref.input.shape)))} (${seconds(t0)})` : 'not run');
    try {
      push(steps.has('groups') && ref.groups ? compareGroups(model, ref.groups) : 'not run');
    } catch (e) {
      push(`error: ${e.message.slice(0, 120)}`);
    }
    model.dispose();
    for (const method of ['default', 'intra-fusion', 'folding']) {
      if (!steps.has('prune')) { push('not run'); continue; }
      t0 = performance.now();
      const m = importOnnx(bytes, `${family}.onnx`);
      try {
        const before = m.parameterCount();
        await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, inputShape: m.inputShape, ...(method === 'intra-fusion' ? { optimalTransport: new OptimalTransport() } : method === 'folding' ? { fusion: 'folding' } : {}) });
        const onnx = await exportOnnx(m, { inputShape: m.inputShape });
        const rel = relativeError(await engine(m, x, ref.input.shape), await onnxruntime(onnx, x, ref.input.shape));
        push(`${(m.parameterCount() / before * 100).toFixed(0)}% params, ${fmt(rel)} (${seconds(t0)})`);
      } catch (e) {
        push(`error: ${e.message.slice(0, 120)}`);
      } finally {
        m.dispose();
      }
    }
  } catch (e) {
    push(`error: ${e.message.slice(0, 160)}`);
    while (cells.length < 7) push('');
  }
  rows.push(`| ${cells.join(' | ')} |`);
  console.log(rows.at(-1));
}
writeFileSync(join(dir, 'full-size.md'), rows.join('\n') + '\n');
console.log(rows.join('\n'));
destroyRuntime();
