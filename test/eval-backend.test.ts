/**
 * --eval-backend onnxruntime: the same models evaluated by this engine and by onnxruntime-node give the
 * same top-1 predictions (except where a sample's top two logits are within 1e-4, a float tie), the
 * results JSON names the backend of every evaluation, a missing onnxruntime-node is one clear error, and
 * a software adapter gets the hint.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { subset, type Cifar10Split } from '../src/data/cifar10.js';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { DependencyError } from '../src/errors.js';
import { evaluate, evaluateLogits, type LogitsFn } from '../src/nn/metrics.js';
import { createModel } from '../src/nn/models.js';
import { loadCheckpoint } from '../src/nn/checkpoint-node.js';
import { parseNormalization, IMAGENET_STATS, type Normalization } from '../src/data/cifar10.js';
import { evaluateOnnxRuntime, onnxRuntimeSession, setOnnxRuntimeModule } from '../src/onnx/onnxruntime.js';
import { OptimalTransport, prune } from '../src/prune/index.js';
import { fromArray, initRuntime, destroyRuntime, tidy } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { main as runMain, SOFTWARE_ADAPTER_HINT, type RunResult } from '../src/run.js';
import { compare, main as compareMain } from '../src/compare.js';
import { sharedDir } from './helpers.js';

const checkpoint = 'models/vgg11_bn_cifar10.fp16.safetensors';
const dataDir = () => join(sharedDir(), 'data/cifar10');
const temps: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'if-eval-backend-'));
  temps.push(d);
  return d;
};
let test: Cifar10Split;
let normalization: Normalization;

beforeAll(async () => {
  await initRuntime(0);
  test = subset((await loadCifar10(dataDir(), { download: false })).test, 256);
});
afterAll(() => {
  destroyRuntime();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function shippedModel() {
  const model = createModel('vgg11_bn');
  const meta = loadCheckpoint(model, checkpoint);
  normalization = parseNormalization(meta.normalize_mean, meta.normalize_std) ?? IMAGENET_STATS;
  return model;
}

/** A logits function that also keeps every batch's logits. */
function recording(fn: LogitsFn): { fn: LogitsFn; rows: Float32Array[] } {
  const rows: Float32Array[] = [];
  return { rows, fn: async (x, shape) => { const v = await fn(x, shape); rows.push(v.slice()); return v; } };
}

describe('evaluation backends', () => {
  it('WebGPU and onnxruntime agree on every top-1 prediction of the original and pruned VGG11-BN (up to float ties)', async () => {
    for (const method of ['original', 'default', 'Intra-Fusion'] as const) {
      const model = shippedModel().eval();
      if (method !== 'original') await prune(model, { importanceCriteria: 'l1', sparsity: 0.6, groupIdxs: [2], optimalTransport: method === 'Intra-Fusion' ? new OptimalTransport() : null });
      const gpu = recording((x, shape) => noGrad(() => tidy(() => model.call(fromArray(x, shape)))).dataAndDispose());
      const session = await onnxRuntimeSession(model, [3, 32, 32]);
      const ort = recording(session.logits);
      const a = await evaluateLogits(gpu.fn, test, { normalization, batchSize: 64 });
      const b = await evaluateLogits(ort.fn, test, { normalization, batchSize: 64 });
      await session.release();
      model.dispose();
      const [la, lb] = [gpu.rows, ort.rows].map((r) => Float32Array.from(r.flatMap((v) => Array.from(v))));
      expect(la.length).toBe(test.count * 10);
      let differing = 0;
      for (let i = 0; i < test.count; i++) {
        const row = (l: Float32Array) => Array.from(l.subarray(i * 10, i * 10 + 10));
        const [ra, rb] = [row(la), row(lb)];
        const top = (r: number[]) => r.indexOf(Math.max(...r));
        if (top(ra) !== top(rb)) {
          differing++;
          const sorted = [...ra].sort((x, y) => y - x);
          expect(sorted[0] - sorted[1], `${method} sample ${i}`).toBeLessThan(1e-4);
        }
      }
      expect(differing, method).toBeLessThanOrEqual(1);
      expect(Math.abs(a.accuracy - b.accuracy)).toBeLessThanOrEqual((100 * differing) / test.count);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-4);
    }
  }, 600_000);

  it('evaluateOnnxRuntime gives evaluate()\'s result fields and accuracy', async () => {
    const model = shippedModel();
    const a = await evaluate(model, test, { normalization, batchSize: 128, limit: 128 });
    const b = await evaluateOnnxRuntime(model, test, { normalization, batchSize: 128, limit: 128, inputShape: [3, 32, 32] });
    model.dispose();
    expect(b.count).toBe(128);
    expect(b.accuracy).toBeCloseTo(a.accuracy, 5);
    expect(b.top5).toBeCloseTo(a.top5!, 5);
    expect(b.meanBatchAccuracy).toBeCloseTo(a.meanBatchAccuracy, 5);
  }, 300_000);

  it('run.js --eval-backend onnxruntime records the backend of every evaluation, and gives no software-adapter hint; compare.js measures latency with it', async () => {
    const out = tempDir();
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    try {
      expect(await runMain(['--data-dir', dataDir(), '--checkpoint', checkpoint, '--eval-samples', '64', '--group_idxs', '2', '--sparsities', '0.6',
        '--eval-backend', 'onnxruntime', '--out', out])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    expect(lines.join('')).not.toContain('hint:');
    const [r] = JSON.parse(readFileSync(join(out, 'logs', readdirSync(join(out, 'logs'))[0]), 'utf8')) as RunResult[];
    for (const m of [r.original_model, r.default_pruning, r.intra_fusion]) {
      expect(m.eval_backend).toBe('onnxruntime');
      expect(m.inference_time).toBeGreaterThan(0);
    }
    expect(r.original_model.accuracy).toBeGreaterThan(80);
    expect(r.intra_fusion.accuracy).toBeGreaterThan(r.default_pruning.accuracy!);
    // compare.js measures the pruned checkpoints' latency through onnxruntime too.
    const rows = await compare(join(out, 'pruned_models'), { latency: true, gpuId: 0, evalBackend: 'onnxruntime' });
    expect(rows.map((row) => row.method).sort()).toEqual(['default_pruning', 'intra_fusion']);
    for (const row of rows) expect(row.latencyMs).toBeGreaterThan(0);
    await initRuntime(0); // main() destroyed the runtime
  }, 600_000);

  it('without onnxruntime-node: one DependencyError that says how to install it, before any data is read', async () => {
    setOnnxRuntimeModule('onnxruntime-node-not-installed');
    try {
      const noData = tempDir();
      const run = runMain(['--data-dir', noData, '--eval-backend', 'onnxruntime', '--out', noData]);
      await expect(run).rejects.toThrow(DependencyError);
      await expect(run).rejects.toThrow(/needs the onnxruntime-node package, which is not installed: run `npm install onnxruntime-node`/);
      await expect(evaluateOnnxRuntime(createModel('vgg11'), test, { normalization: IMAGENET_STATS, inputShape: [3, 32, 32] })).rejects.toThrow(DependencyError);
      await expect(compareMain(['--model_dir', noData, '--eval-backend', 'onnxruntime'])).rejects.toThrow(/npm install onnxruntime-node/);
    } finally {
      setOnnxRuntimeModule();
    }
    await initRuntime(0);
  });

  it('on a software adapter (and only there), run.js with the default backend prints the hint naming the flag', async () => {
    const rt = await initRuntime(0);
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    const empty = tempDir();
    vi.stubEnv('INTRA_FUSION_CIFAR10_URL', 'http://127.0.0.1:9/cifar-10-binary.tar.gz'); // no data: the run stops right after the hint
    try {
      await expect(runMain(['--data-dir', empty, '--out', empty])).rejects.toThrow(/downloading it failed/);
    } finally {
      spy.mockRestore();
      vi.unstubAllEnvs();
    }
    // lavapipe here reports itself as a fallback adapter; a hardware adapter gets no hint.
    if (rt.isFallback) expect(lines.join('')).toContain(`${SOFTWARE_ADAPTER_HINT}\n`);
    else expect(lines.join('')).not.toContain('hint:');
    expect(SOFTWARE_ADAPTER_HINT).toMatch(/--eval-backend onnxruntime .* \d+x faster/);
    await initRuntime(0);
  }, 120_000);
});
