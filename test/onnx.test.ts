/**
 * ONNX export and import, checked with onnxruntime-node (an independent client) as the reference.
 * "Relative error" below is max|a - b| / max|b| over all outputs, b being the reference's outputs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFromStateDict } from '../src/nn/checkpoint.js';
import { IMAGENET_STATS, makeBatch, parseCifarBatches, parseNormalization, subset, type Cifar10Split } from '../src/nn/cifar10.js';
import { BatchNorm2d } from '../src/nn/layers.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { createModel } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { exportOnnx } from '../src/onnx/export.js';
import { OptimalTransport, prune } from '../src/prune/index.js';
import { noGrad } from '../src/tensor/autograd.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';
import { assign, destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { gpu, sharedDir } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const vggFile = () => parseSafetensors(readFileSync(join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors')), 'vgg11_bn checkpoint');
let testSet: Cifar10Split | null = null;
/** The first n CIFAR-10 test images, normalised as the checkpoint says. */
function cifarImages(n: number): Float32Array {
  testSet ??= parseCifarBatches([{ name: 'test_batch.bin', bytes: readFileSync(join(sharedDir(), 'data/cifar10/test_batch.bin')) }]);
  const meta = vggFile().metadata;
  const normalization = parseNormalization(meta.normalize_mean, meta.normalize_std) ?? IMAGENET_STATS;
  return makeBatch(subset(testSet, n), Array.from({ length: n }, (_, i) => i), { normalization }).x;
}
const randomImages = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return new Float32Array(n * 3072).map(() => 2 * r() - 1);
};

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

/** The engine's outputs for images [n, 3, 32, 32], in batches. */
async function engineOutputs(model: Module, images: Float32Array, batch = 50): Promise<Float32Array> {
  model.eval();
  const n = images.length / 3072;
  const parts: Float32Array[] = [];
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const x = images.subarray(i * 3072, (i + b) * 3072);
    parts.push(await noGrad(() => tidy(() => model.call(fromArray(x, [b, 3, 32, 32])))).dataAndDispose());
  }
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((offset, p) => (out.set(p, offset), offset + p.length), 0);
  return out;
}

async function ortOutputs(onnx: Uint8Array, images: Float32Array, shape = [3, 32, 32]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnx);
  const n = images.length / shape.reduce((a, b) => a * b);
  const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', images, [n, ...shape]) });
  await session.release();
  return result[session.outputNames[0]].data as Float32Array;
}

/** Random BN statistics and affine parameters, so folding is exercised (fresh BNs are the identity). */
function randomizeBatchNorms(model: Module, seed: number): void {
  const r = seededRandom(seed);
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof BatchNorm2d)) continue;
    const c = m.numFeatures;
    assign(m.weight, new Float32Array(c).map(() => 0.5 + r()));
    assign(m.bias, new Float32Array(c).map(() => r() - 0.5));
    assign(m.running_mean, new Float32Array(c).map(() => 0.2 * (r() - 0.5)));
    assign(m.running_var, new Float32Array(c).map(() => 0.5 + r()));
  }
}

type Variant = 'unpruned' | 'default' | 'intra-fusion';
async function pruned(model: Module, variant: Variant): Promise<Module> {
  if (variant !== 'unpruned') {
    const before = model.parameterCount();
    await prune(model, {
      importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1],
      optimalTransport: variant === 'intra-fusion' ? new OptimalTransport({ p: 1, targetProbability: 'uniform', sourceProbability: 'uniform', target: 'most_important', solver: 'emd' }) : null,
    });
    expect(model.parameterCount()).toBeLessThan(before); // the ONNX file really has the pruned shapes
  }
  return model;
}

describe('ONNX export, run by onnxruntime-node', () => {
  for (const variant of ['unpruned', 'default', 'intra-fusion'] as const) {
    it(`VGG11-BN (shared checkpoint), ${variant}: 100 CIFAR-10 test images and random inputs within 1e-4 relative`, async () => {
      const model = await pruned(modelFromStateDict('vgg11_bn', vggFile(), 'vgg11_bn checkpoint'), variant);
      const onnx = await exportOnnx(model, { inputShape: [3, 32, 32] });
      for (const images of [cifarImages(100), randomImages(8, 1)]) {
        const ours = await engineOutputs(model, images);
        const theirs = await ortOutputs(onnx, images);
        const rel = relativeError(ours, theirs);
        if (process.env.ONNX_REPORT) console.log(`${expect.getState().currentTestName}: relative error ${rel.toExponential(2)}`);
        expect(rel).toBeLessThan(1e-4);
      }
      model.dispose();
    }, 300_000);

    it(`ResNet18 (random weights and BN statistics), ${variant}: CIFAR-10 and random inputs at batch 4 within 1e-4 relative`, async () => {
      setInitSeed(7);
      const model = createModel('resnet18');
      randomizeBatchNorms(model, 8);
      await pruned(model, variant);
      const onnx = await exportOnnx(model, { inputShape: [3, 32, 32] });
      for (const images of [cifarImages(4), randomImages(4, 2)]) {
        const ours = await engineOutputs(model, images);
        const theirs = await ortOutputs(onnx, images);
        const rel = relativeError(ours, theirs);
        if (process.env.ONNX_REPORT) console.log(`${expect.getState().currentTestName}: relative error ${rel.toExponential(2)}`);
        expect(rel).toBeLessThan(1e-4);
      }
      model.dispose();
    }, 300_000);
  }
});
