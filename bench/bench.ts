/**
 * `npm run bench`: matmul and conv2d GFLOP/s of this engine and of tfjs-backend-webgpu, side by side,
 * on the same WebGPU adapter in the same process. Prints a table and writes bench/results/<adapter>.json.
 *
 * Timing: after a warm-up call (pipeline compilation), `reps` calls are recorded back to back and the
 * clock stops when the GPU reports the work done (ours: queue.onSubmittedWorkDone; tfjs: reading back
 * the last result, which waits for its queue). The minimum over `trials` of the mean per call is kept.
 * Then (bench/models.ts) training and eval images/s of both models, beside PyTorch CPU when present.
 * Then (bench/prune.ts) pruning time per group and solver, and EMD vs Sinkhorn accuracy.
 * Flags: --quick (fewer sizes), --only=kernels|models|prune, --no-tfjs, --gpu_id=N,
 * --checkpoint=FILE and --data-dir=DIR (default: ../shared when present), --eval-samples=N.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { conv2dForward, conv2dBackwardData, conv2dBackwardWeight, matmul } from '../src/kernels/gemm.js';
import { getGpu } from '../src/tensor/device.js';
import { fromArray, getRuntime, initRuntime, tidy } from '../src/tensor/tensor.js';
import { benchModels, type ModelRow } from './models.js';
import { benchPrune, defaultSharedPaths } from './prune.js';

interface Row { op: string; shape: string; gflop: number; oursMs: number; tfjsMs: number | null }

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const quick = args.has('quick');
const gpuId = Number(args.get('gpu_id') ?? 0);
const trials = quick ? 2 : 3;
const only = args.get('only');
if (only && !['kernels', 'models', 'prune'].includes(only)) {
  console.error(`--only must be kernels, models or prune, got "${only}"`);
  process.exit(2);
}

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

async function timeIt(run: () => void, finish: () => Promise<void>, flop: number): Promise<number> {
  run();
  await finish();
  // Enough calls for roughly 0.5 s of work per trial, judged from the warm-up.
  let t0 = performance.now();
  run();
  await finish();
  const one = performance.now() - t0;
  const reps = Math.max(1, Math.min(50, Math.round(500 / Math.max(one, 1))));
  let best = Infinity;
  for (let t = 0; t < trials; t++) {
    t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    await finish();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  void flop;
  return best;
}

async function loadTfjs(): Promise<null | { tf: typeof import('@tensorflow/tfjs-core') }> {
  try {
    const gpu = await getGpu();
    const g = globalThis as { navigator?: { gpu?: GPU } };
    if (!g.navigator?.gpu) Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu }, configurable: true });
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Error('setBackend(webgpu) returned false');
    await tf.ready();
    return { tf };
  } catch (e) {
    console.warn(`tfjs-backend-webgpu unavailable (${(e as Error).message}); reporting this engine only.`);
    return null;
  }
}

async function main() {
  const rt = await initRuntime(gpuId);
  const kernelsToo = !only || only === 'kernels';
  const tfjs = args.has('no-tfjs') || !kernelsToo ? null : await loadTfjs();
  const tf = tfjs?.tf;
  console.log(`adapter: ${rt.adapterDescription}${rt.subgroups ? ' (subgroups)' : ''}`);
  const rows: Row[] = [];

  const matmulSizes = !kernelsToo ? [] : quick ? [256, 512] : [256, 512, 1024];
  for (const n of matmulSizes) {
    const a = rand(n * n), b = rand(n * n);
    const A = fromArray(a, [n, n]).keep(), B = fromArray(b, [n, n]).keep();
    const flop = 2 * n ** 3;
    const oursMs = await timeIt(() => tidy(() => void matmul(A, B)), () => rt.sync(), flop);
    let tfjsMs: number | null = null;
    if (tf) {
      const ta = tf.tensor2d(a, [n, n]), tb = tf.tensor2d(b, [n, n]);
      let last: import('@tensorflow/tfjs-core').Tensor | null = null;
      tfjsMs = await timeIt(() => { last?.dispose(); last = tf.matMul(ta, tb); }, async () => { await last!.data(); }, flop);
      (last as import('@tensorflow/tfjs-core').Tensor | null)?.dispose();
      ta.dispose(); tb.dispose();
    }
    rows.push({ op: 'matmul', shape: `${n}x${n}x${n}`, gflop: flop / 1e9, oursMs, tfjsMs });
    A.dispose(); B.dispose();
  }

  // VGG11-BN / ResNet18 CIFAR-10 layer shapes (3x3, pad 1), batch 16.
  const convShapes = !kernelsToo
    ? []
    : quick
    ? [[16, 64, 32, 32, 64], [16, 256, 8, 8, 256]]
    : [[16, 64, 32, 32, 64], [16, 128, 16, 16, 128], [16, 256, 8, 8, 256], [16, 512, 4, 4, 512]];
  for (const [N, C, H, W, O] of convShapes) {
    const x = rand(N * C * H * W), w = rand(O * C * 9), dy = rand(N * O * H * W);
    const X = fromArray(x, [N, C, H, W]).keep(), Wt = fromArray(w, [O, C, 3, 3]).keep(), DY = fromArray(dy, [N, O, H, W]).keep();
    const flop = 2 * N * O * H * W * C * 9;
    const g = { stride: 1, padding: 1 };
    const shape = `${N}x${C}x${H}x${W} -> ${O}, 3x3`;
    const fwd = await timeIt(() => tidy(() => void conv2dForward(X, Wt, null, g)), () => rt.sync(), flop);
    const bwdData = await timeIt(() => tidy(() => void conv2dBackwardData(DY, Wt, X.shape, g)), () => rt.sync(), flop);
    const bwdWeight = await timeIt(() => tidy(() => void conv2dBackwardWeight(DY, X, Wt.shape, g)), () => rt.sync(), flop);
    let tf3: (number | null)[] = [null, null, null];
    if (tf) {
      // tfjs convolves NHWC with HWIO filters; the arithmetic is identical.
      const tx = tf.tensor4d(x, [N, H, W, C]), tw = tf.tensor4d(w, [3, 3, C, O]), tdy = tf.tensor4d(dy, [N, H, W, O]);
      const timeTf = async (f: () => import('@tensorflow/tfjs-core').Tensor) => {
        let last: import('@tensorflow/tfjs-core').Tensor | null = null;
        const ms = await timeIt(() => { last?.dispose(); last = f(); }, async () => { await last!.data(); }, flop);
        (last as import('@tensorflow/tfjs-core').Tensor | null)?.dispose();
        return ms;
      };
      tf3 = [
        await timeTf(() => tf.conv2d(tx, tw, 1, 'same')),
        await timeTf(() => tf.conv2dTranspose(tdy, tw, [N, H, W, C], 1, 'same')),
        await timeTf(() => tf.engine().runKernel('Conv2DBackpropFilter', { x: tx, dy: tdy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, C, O] }) as import('@tensorflow/tfjs-core').Tensor),
      ];
      tx.dispose(); tw.dispose(); tdy.dispose();
    }
    rows.push({ op: 'conv2d fwd', shape, gflop: flop / 1e9, oursMs: fwd, tfjsMs: tf3[0] });
    rows.push({ op: 'conv2d dX', shape, gflop: flop / 1e9, oursMs: bwdData, tfjsMs: tf3[1] });
    rows.push({ op: 'conv2d dW', shape, gflop: flop / 1e9, oursMs: bwdWeight, tfjsMs: tf3[2] });
    X.dispose(); Wt.dispose(); DY.dispose();
  }

  const fmt = (v: number | null, d = 2) => (v === null ? '-' : v.toFixed(d));
  const table = rows.map((r) => {
    const ours = r.gflop / (r.oursMs / 1e3);
    const theirs = r.tfjsMs === null ? null : r.gflop / (r.tfjsMs / 1e3);
    return { ...r, oursGflops: ours, tfjsGflops: theirs, ratio: theirs === null ? null : ours / theirs };
  });
  if (table.length) console.log('\n| op | shape | ours ms | ours GFLOP/s | tfjs-webgpu ms | tfjs GFLOP/s | ratio |');
  if (table.length) console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of table) {
    console.log(`| ${r.op} | ${r.shape} | ${fmt(r.oursMs, 1)} | ${fmt(r.oursGflops)} | ${fmt(r.tfjsMs, 1)} | ${fmt(r.tfjsGflops)} | ${fmt(r.ratio)}x |`);
  }
  let models: ModelRow[] = [];
  if (!only || only === 'models') {
    models = await benchModels(quick, (l) => console.log(l));
    console.log('\n| model | train img/s (batch) | eval img/s (batch) | latency ms (batch 1) | PyTorch CPU train img/s | PyTorch CPU eval img/s |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const m of models) {
      console.log(`| ${m.model} | ${m.trainImagesPerS.toFixed(1)} (${m.trainBatch}) | ${m.evalImagesPerS.toFixed(1)} (${m.evalBatch}) | ${m.latencyMs.toFixed(1)} | ${fmt(m.torchTrainImagesPerS, 1)} | ${fmt(m.torchEvalImagesPerS, 1)} |`);
    }
  }
  let pruning: Awaited<ReturnType<typeof benchPrune>> | null = null;
  if (!only || only === 'prune') {
    const paths = { ...defaultSharedPaths(), ...(args.get('checkpoint') ? { checkpoint: args.get('checkpoint') } : {}), ...(args.get('data-dir') ? { dataDir: args.get('data-dir') } : {}) };
    pruning = await benchPrune({ ...paths, evalLimit: Number(args.get('eval-samples') ?? (quick ? 500 : 2000)), quick }, (l) => console.log(l));
    console.log('\n| VGG11-BN group | channels | default s | IF-EMD s | IF-Sinkhorn s |');
    console.log('|---:|---:|---:|---:|---:|');
    for (const r of pruning.timings) console.log(`| ${r.group} | ${r.channels} | ${r.defaultS.toFixed(2)} | ${r.emdS.toFixed(2)} | ${r.sinkhornS.toFixed(2)} |`);
    if (pruning.accuracy.length) {
      console.log('\n| group | sparsity | method | accuracy % | prune s |');
      console.log('|---:|---:|---|---:|---:|');
      for (const r of pruning.accuracy) console.log(`| ${r.group} | ${r.sparsity} | ${r.method} | ${r.accuracy.toFixed(2)} | ${r.pruneS.toFixed(2)} |`);
    }
  }
  const out = {
    date: new Date().toISOString(),
    adapter: getRuntime().adapterDescription,
    subgroups: getRuntime().subgroups,
    node: process.version,
    rows: table,
    models,
    pruning,
  };
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/${out.adapter.replace(/[^A-Za-z0-9]+/g, '_').slice(0, 60)}.json`;
  writeFileSync(file, JSON.stringify(out, null, 2));
  console.log(`\nwritten ${file}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
