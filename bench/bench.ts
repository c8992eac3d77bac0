/**
 * `npm run bench`: how this engine compares with what a user may already have, one table at a time:
 *   --only=kernels   matmul and conv2d GFLOP/s of this engine and of tfjs-backend-webgpu on the same adapter,
 *                    in the same process (target: every row >= 3x tfjs);
 *   --only=models    training and eval images/s of VGG11-BN and ResNet18 (bench/models.ts) beside PyTorch CPU
 *                    and onnxruntime-node CPU on the same models;
 *   --only=prune     pruning times (bench/prune.ts), whole-network Intra-Fusion beside the authors' code
 *                    (target: >= 2x faster);
 *   --only=main-job  the headline `node dist/run.js --sparsities 0.5` end to end (bench/main-job.ts; target:
 *                    <= 8 minutes on the full test set); --main-job=full|short picks one run (default both).
 * Without --only: kernels, models and prune (the main job takes long: ask for it). Each table is written to
 * bench/results/<table>.json with when and where it was measured; `npm run docs:bench` puts them in the README.
 *
 * Kernel timing: each side is warmed up (pipeline compilation), then `trials` trials alternate ours / tfjs,
 * each trial `reps` back-to-back calls (about 0.5 s of work) timed until the GPU reports them done (ours:
 * queue.onSubmittedWorkDone; tfjs: reading back the last result, which waits for its queue). The figure is
 * the median over trials of the mean per call; alternating makes a change of machine load hit both sides.
 * Flags: --quick (fewer sizes and trials), --no-tfjs, --gpu_id=N, --checkpoint=FILE, --data-dir=DIR
 * (default: $INTRA_FUSION_SHARED or ../shared when present), --reference-dir=DIR (default:
 * $INTRA_FUSION_REFERENCE), --eval-samples=N (pruning accuracy table; 0 skips it), --no-groups (pruning:
 * the whole-network race only, no per-group times or Sinkhorn batch).
 */
import { conv2dForward, conv2dBackwardData, conv2dBackwardWeight, matmul } from '../src/kernels/gemm.js';
import { getGpu } from '../src/tensor/device.js';
import { destroyRuntime, fromArray, initRuntime, tidy } from '../src/tensor/tensor.js';
import { benchMainJob, MAIN_JOB_VARIANTS } from './main-job.js';
import { benchModels } from './models.js';
import { benchPrune, defaultSharedPaths } from './prune.js';
import { median, round, startMeasurement, TARGETS, writeResult } from './results.js';

export interface KernelRow {
  op: string; shape: string; gflop: number;
  oursMs: number; tfjsMs: number | null; oursGflops: number; tfjsGflops: number | null; ratio: number | null;
  /** Per-trial mean ms per call, in the order measured (ours and tfjs alternating). */
  oursTrialsMs: number[]; tfjsTrialsMs: number[] | null;
}

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const quick = args.has('quick');
const gpuId = Number(args.get('gpu_id') ?? 0);
const trials = quick ? 3 : 7;
const only = args.get('only');
if (only && !['kernels', 'models', 'prune', 'main-job'].includes(only)) {
  console.error(`--only must be kernels, models, prune or main-job, got "${only}"`);
  process.exit(2);
}
const mainJobVariants = args.get('main-job') ? args.get('main-job')!.split(',') : Object.keys(MAIN_JOB_VARIANTS);
for (const v of mainJobVariants) {
  if (!(v in MAIN_JOB_VARIANTS)) {
    console.error(`--main-job must be ${Object.keys(MAIN_JOB_VARIANTS).join(', ')} or a comma-separated list of them, got "${v}"`);
    process.exit(2);
  }
}

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

interface Timed { run: () => void; finish: () => Promise<void> }

/** Mean ms per call of `reps` back-to-back calls, timed until `finish` says the work is done. */
async function trial(t: Timed, reps: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) t.run();
  await t.finish();
  return (performance.now() - t0) / reps;
}

/** Calls per trial for about 0.5 s of work, judged from one call after a warm-up call. */
async function repsFor(t: Timed): Promise<number> {
  await trial(t, 1);
  return Math.max(1, Math.min(50, Math.round(500 / Math.max(await trial(t, 1), 1))));
}

/** Ours and tfjs (when given) in alternating trials: per-trial ms of each. */
async function timeBoth(ours: Timed, tfjs: Timed | null): Promise<{ ours: number[]; tfjs: number[] | null }> {
  const repsOurs = await repsFor(ours);
  const repsTfjs = tfjs ? await repsFor(tfjs) : 0;
  const out = { ours: [] as number[], tfjs: tfjs ? ([] as number[]) : null };
  for (let i = 0; i < trials; i++) {
    out.ours.push(await trial(ours, repsOurs));
    if (tfjs) out.tfjs!.push(await trial(tfjs, repsTfjs));
  }
  return out;
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

type Tf = typeof import('@tensorflow/tfjs-core');
type TfTensor = import('@tensorflow/tfjs-core').Tensor;

/** A tfjs op as a Timed: each call disposes the previous result; finishing reads the last one back. */
function tfjsTimed(f: () => TfTensor): Timed {
  let last: TfTensor | null = null;
  return { run: () => { last?.dispose(); last = f(); }, finish: async () => { await last!.data(); } };
}

async function benchKernels(tf: Tf | undefined, sync: () => Promise<void>, log: (l: string) => void): Promise<KernelRow[]> {
  const rows: KernelRow[] = [];
  const add = (op: string, shape: string, flop: number, t: { ours: number[]; tfjs: number[] | null }) => {
    const oursMs = median(t.ours);
    const tfjsMs = t.tfjs ? median(t.tfjs) : null;
    const gflop = flop / 1e9;
    const oursGflops = gflop / (oursMs / 1e3);
    const tfjsGflops = tfjsMs === null ? null : gflop / (tfjsMs / 1e3);
    const row: KernelRow = {
      op, shape, gflop: round(gflop, 4), oursMs: round(oursMs, 2), tfjsMs: tfjsMs === null ? null : round(tfjsMs, 2),
      oursGflops: round(oursGflops, 2), tfjsGflops: tfjsGflops === null ? null : round(tfjsGflops, 2),
      ratio: tfjsGflops === null ? null : round(oursGflops / tfjsGflops, 2),
      oursTrialsMs: t.ours.map((v) => round(v, 2)), tfjsTrialsMs: t.tfjs?.map((v) => round(v, 2)) ?? null,
    };
    rows.push(row);
    log(`${op} ${shape}: ours ${row.oursMs} ms, tfjs ${row.tfjsMs ?? '-'} ms, ratio ${row.ratio ?? '-'}x`);
  };

  for (const n of quick ? [256, 512] : [256, 512, 1024]) {
    const a = rand(n * n), b = rand(n * n);
    const A = fromArray(a, [n, n]).keep(), B = fromArray(b, [n, n]).keep();
    const ta = tf?.tensor2d(a, [n, n]), tb = tf?.tensor2d(b, [n, n]);
    const t = await timeBoth({ run: () => tidy(() => void matmul(A, B)), finish: sync }, tf ? tfjsTimed(() => tf.matMul(ta!, tb!)) : null);
    add('matmul', `${n}x${n}x${n}`, 2 * n ** 3, t);
    A.dispose(); B.dispose(); ta?.dispose(); tb?.dispose();
  }

  // VGG11-BN / ResNet18 CIFAR-10 layer shapes (3x3, pad 1), batch 16.
  const convShapes = quick
    ? [[16, 64, 32, 32, 64], [16, 256, 8, 8, 256]]
    : [[16, 64, 32, 32, 64], [16, 128, 16, 16, 128], [16, 256, 8, 8, 256], [16, 512, 4, 4, 512]];
  for (const [N, C, H, W, O] of convShapes) {
    const x = rand(N * C * H * W), w = rand(O * C * 9), dy = rand(N * O * H * W);
    const X = fromArray(x, [N, C, H, W]).keep(), Wt = fromArray(w, [O, C, 3, 3]).keep(), DY = fromArray(dy, [N, O, H, W]).keep();
    // tfjs convolves NHWC with HWIO filters; the arithmetic is identical.
    const tx = tf?.tensor4d(x, [N, H, W, C]), tw = tf?.tensor4d(w, [3, 3, C, O]), tdy = tf?.tensor4d(dy, [N, H, W, O]);
    const flop = 2 * N * O * H * W * C * 9;
    const g = { stride: 1, padding: 1 };
    const shape = `${N}x${C}x${H}x${W} -> ${O}, 3x3`;
    const ours = (f: () => void): Timed => ({ run: () => tidy(f), finish: sync });
    const theirs = (f: () => TfTensor) => (tf ? tfjsTimed(f) : null);
    add('conv2d fwd', shape, flop, await timeBoth(ours(() => void conv2dForward(X, Wt, null, g)), theirs(() => tf!.conv2d(tx!, tw!, 1, 'same'))));
    add('conv2d dX', shape, flop, await timeBoth(ours(() => void conv2dBackwardData(DY, Wt, X.shape, g)), theirs(() => tf!.conv2dTranspose(tdy!, tw!, [N, H, W, C], 1, 'same'))));
    add('conv2d dW', shape, flop, await timeBoth(
      ours(() => void conv2dBackwardWeight(DY, X, Wt.shape, g)),
      theirs(() => tf!.engine().runKernel('Conv2DBackpropFilter', { x: tx!, dy: tdy! }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, C, O] }) as TfTensor),
    ));
    X.dispose(); Wt.dispose(); DY.dispose(); tx?.dispose(); tw?.dispose(); tdy?.dispose();
  }
  return rows;
}

async function main() {
  const log = (l: string) => console.log(l);
  const rt = await initRuntime(gpuId);
  const adapter = `${rt.adapterDescription}${rt.subgroups ? ' (subgroups)' : ''}`;
  log(`adapter: ${adapter}`);
  const paths = {
    ...defaultSharedPaths(),
    ...(args.get('checkpoint') ? { checkpoint: args.get('checkpoint') } : {}),
    ...(args.get('data-dir') ? { dataDir: args.get('data-dir') } : {}),
    ...(args.get('reference-dir') ? { referenceDir: args.get('reference-dir') } : {}),
  };
  const written: string[] = [];

  if (!only || only === 'kernels') {
    const tf = args.has('no-tfjs') ? undefined : (await loadTfjs())?.tf;
    const m = startMeasurement(adapter);
    const rows = await benchKernels(tf, () => rt.sync(), log);
    written.push(writeResult('kernels', { measured: m.finish(), trials, targetRatio: TARGETS.kernelRatio, tfjs: tf ? '@tensorflow/tfjs-backend-webgpu 4.22.0' : null, rows }));
  }
  if (!only || only === 'models') {
    const m = startMeasurement(adapter);
    const models = await benchModels(quick, log);
    written.push(writeResult('models', { measured: m.finish(), ...models }));
  }
  if (!only || only === 'prune') {
    const m = startMeasurement(adapter);
    const pruning = await benchPrune({ ...paths, evalLimit: Number(args.get('eval-samples') ?? (quick ? 500 : 2000)), quick, perGroup: !args.has('no-groups') }, log);
    written.push(writeResult('prune', { measured: m.finish(), checkpoint: paths.checkpoint ?? null, ...pruning }));
  }
  if (only === 'main-job') {
    if (!paths.dataDir) throw new Error('the main job needs CIFAR-10: pass --data-dir=DIR (or set INTRA_FUSION_SHARED)');
    destroyRuntime(); // run.js opens its own device; ours would only hold memory
    await benchMainJob(mainJobVariants, { dataDir: paths.dataDir, adapter }, log);
    written.push('bench/results/main-job.json');
  }
  log(`\nwritten ${written.join(', ')}; \`npm run docs:bench\` puts them in the README`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
