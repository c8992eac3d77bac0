/**
 * The prunable-layer registry and op table (issue 9): group tables per layer kind and op, pruned outputs
 * equal to a dense model with the pruned channels zeroed, user-defined models, the structurally found
 * classifier, pruning modes, and clear errors outside the supported set. Tiny models, 8x8 inputs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnsupportedError } from '../src/errors.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../src/nn/layers.js';
import { complexity } from '../src/nn/metrics.js';
import { createModel } from '../src/nn/models.js';
import { Module } from '../src/nn/module.js';
import { VGG } from '../src/nn/vgg.js';
import * as ag from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { dependencyGroups, foldBatchNorms, groupImportance, layerKind, OptimalTransport, prune, roundKept, type OtProblem, type PruneOptions, type PrunedGroup } from './prune-helpers.js';
import { expectClose, gpu, randArray, sharedDir } from './helpers.js';
import { parseArgs } from '../src/cli/args.js';
import { join } from 'node:path';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { parseNormalization, subset } from '../src/data/cifar10.js';
import { loadStateDict, modelToSafetensors, resizeToStateDict } from '../src/nn/checkpoint.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';

beforeAll(gpu);
afterAll(destroyRuntime);

/** A model from named parts and a forward function: the way a user writes their own Module subclass. */
class Net extends Module {
  constructor(readonly parts: Record<string, Module>, private readonly f: (p: Record<string, Module>, x: Tensor) => Tensor) {
    super();
    for (const [name, m] of Object.entries(parts)) this.addChild(name, m);
  }
  forward(x: Tensor): Tensor {
    return this.f(this.parts, x);
  }
}

const call = (m: Module, x: Tensor) => m.call(x);
const describeAll = (m: Module, shape: [number, number, number] = [3, 8, 8]) => dependencyGroups(m, { exampleInput: shape }).map((g) => g.describe());

/** Random BN statistics, so folding and zeroing are not trivially the identity. */
function randomiseNorms(m: Module, seed: number): void {
  const r = seededRandom(seed);
  for (const [, bn] of m.namedModules()) {
    if (!(bn instanceof BatchNorm2d)) continue;
    const c = bn.numFeatures;
    assign(bn.weight, Float32Array.from({ length: c }, () => 0.5 + r()));
    assign(bn.bias, randArray(r, c, 0.3));
    assign(bn.running_mean, randArray(r, c, 0.2));
    assign(bn.running_var, Float32Array.from({ length: c }, () => 0.5 + r()));
  }
}

async function outputs(m: Module, shape: [number, number, number], seed = 3): Promise<Float32Array> {
  const x = fromArray(randArray(seededRandom(seed), 2 * shape[0] * shape[1] * shape[2]), [2, ...shape]);
  m.eval();
  const y = await ag.noGrad(() => tidy(() => m.call(x))).dataAndDispose();
  x.dispose();
  return y;
}

/**
 * The dense reference: the same model, batch-norms folded, with every pruned channel's producer rows and
 * biases zeroed (a zero channel stays zero through folded BN, ReLU, pooling and residual adds, so the
 * consumers see exactly the pruned model's inputs).
 */
async function zeroedReference(m: Module, report: PrunedGroup[], shape: [number, number, number]): Promise<void> {
  await foldBatchNorms(m, shape);
  const groups = dependencyGroups(m, { exampleInput: shape });
  for (const r of report) {
    for (const layer of groups[r.index].producers) {
      for (const axis of layerKind(layer)!.outAxes(layer)) {
        const t = (layer as unknown as Record<string, Tensor>)[axis.tensor];
        const v = await t.data();
        for (const c of r.prunedIdx) v.fill(0, c * axis.inner, (c + 1) * axis.inner);
        assign(t, v);
      }
    }
  }
}

/** Prunes one copy and checks it against a zeroed copy built from the same seed. */
async function expectPrunedEqualsZeroed(build: () => Module, shape: [number, number, number], o: Omit<PruneOptions, 'importanceCriteria'>): Promise<PrunedGroup[]> {
  setInitSeed(11);
  const pruned = build();
  randomiseNorms(pruned, 5);
  setInitSeed(11);
  const dense = build();
  randomiseNorms(dense, 5);
  const report = await prune(pruned, { importanceCriteria: 'l1', exampleInput: shape, ...o });
  expect(report.length).toBeGreaterThan(0);
  const originalCount = dense.parameterCount(); // before folding gives its bias-free convs biases
  await zeroedReference(dense, report, shape);
  const dimPreserving = o.dimensionalityPreserving ?? false;
  // The pruned model keeps the original layout: fewer parameters, or as many when dimensions are kept.
  if (dimPreserving) expect(pruned.parameterCount()).toBe(originalCount);
  else expect(pruned.parameterCount()).toBeLessThan(originalCount);
  expectClose(await outputs(pruned, shape), await outputs(dense, shape), 1e-5, 1e-4, 'pruned vs zeroed dense');
  pruned.dispose();
  dense.dispose();
  return report;
}

const conv = (i: number, o: number, bias = true, k = 3, stride = 1) => new Conv2d(i, o, k, stride, (k - 1) / 2, bias);

/** conv-BN-ReLU-pool x2, flatten (2x2 per channel), Linear, ReLU, Linear. */
const smallVgg = (classes = 5) => new Net({
  features: new Sequential(conv(3, 8), new BatchNorm2d(8), new ReLU(), new MaxPool2d(2), conv(8, 12), new BatchNorm2d(12), new ReLU(), new MaxPool2d(2)),
  fc1: new Linear(48, 16), fc2: new Linear(16, classes),
}, (p, x) => p.fc2.call(ag.relu(p.fc1.call(ag.flatten(p.features.call(x))))));

/** A bias-free ResNet-like: stem, identity block, strided block with a 1x1 shortcut, global average pool. */
class TinyResNet extends Module {
  stem = this.addChild('stem', conv(3, 8, false));
  bn = this.addChild('bn', new BatchNorm2d(8));
  a = this.addChild('a', new Sequential(conv(8, 8, false), new BatchNorm2d(8), new ReLU(), conv(8, 8, false), new BatchNorm2d(8)));
  b = this.addChild('b', new Sequential(conv(8, 12, false, 3, 2), new BatchNorm2d(12), new ReLU(), conv(12, 12, false), new BatchNorm2d(12)));
  shortcut = this.addChild('shortcut', new Sequential(conv(8, 12, false, 1, 2), new BatchNorm2d(12)));
  head = this.addChild('head', new Linear(12, 4));
  forward(x: Tensor): Tensor {
    const h = ag.relu(this.bn.call(this.stem.call(x)));
    const h1 = ag.relu(ag.add(this.a.call(h), h));
    const h2 = ag.relu(ag.add(this.b.call(h1), this.shortcut.call(h1)));
    return this.head.call(ag.flatten(ag.avgPool2d(h2, { kernel: 4, stride: 4 })));
  }
}

describe('channel rules per layer kind and op (group tables)', () => {
  it('Conv2d and Linear consume a space and produce a new one; BatchNorm2d keeps it; flatten gives H*W columns', () => {
    const m = smallVgg();
    expect(describeAll(m)).toEqual([
      'group 0 (16 channels): out fc1; in fc2',
      'group 1 (12 channels): out features.4; bn features.5; in fc1',
      'group 2 (8 channels): out features.0; bn features.1; in features.4',
    ]);
    expect(dependencyGroups(m, { exampleInput: [3, 8, 8] })[1].consumers[0].factor).toBe(4);
    // MACs per layer kind: conv out*oh*ow*in*k*k (8*8*8*27, 12*4*4*72), Linear in*out (48*16, 16*5).
    expect(complexity(m, [3, 8, 8]).macs).toBe(8 * 64 * 27 + 12 * 16 * 72 + 48 * 16 + 16 * 5);
    // The flatten factor follows the input size: 16x16 inputs leave 4x4 per channel.
    const big = new Net({ c: conv(3, 4), fc: new Linear(4 * 64, 2) }, (p, x) => p.fc.call(ag.flatten(ag.maxPool2d(p.c.call(x), { kernel: 2, stride: 2 }))));
    expect(dependencyGroups(big, { exampleInput: [3, 16, 16] })[0].consumers[0].factor).toBe(64);
    m.dispose();
    big.dispose();
  });

  it('add merges its operands (residual groups); relu, avgPool2d preserve', () => {
    const m = new TinyResNet();
    expect(describeAll(m)).toEqual([
      'group 0 (12 channels): out shortcut.0, b.3; bn shortcut.1, b.4; in head',
      'group 1 (12 channels): out b.0; bn b.1; in b.3',
      'group 2 (8 channels): out a.3, stem; bn bn, a.4; in shortcut.0, a.0, b.0',
      'group 3 (8 channels): out a.0; bn a.1; in a.3',
    ]);
    m.dispose();
  });

  it('scale preserves channels; adaptive average pooling then flatten gives oh*ow columns per channel', () => {
    const m = new Net({ c1: conv(3, 6), c2: conv(6, 5), pool: new AdaptiveAvgPool2d(2), fc: new Linear(20, 3) },
      (p, x) => p.fc.call(ag.flatten(p.pool.call(p.c2.call(ag.scale(p.c1.call(x), 0.5))))));
    const groups = dependencyGroups(m, { exampleInput: [3, 8, 8] });
    expect(groups.map((g) => g.describe())).toEqual(['group 0 (5 channels): out c2; in fc', 'group 1 (6 channels): out c1; in c2']);
    expect(groups[0].consumers[0].factor).toBe(4);
    m.dispose();
  });

  it('a depthwise conv keeps its input space: producer and consumer sides are one group', async () => {
    const build = () => new Net({
      stem: conv(3, 8, false), bn0: new BatchNorm2d(8), dw: new Conv2d(8, 8, 3, 1, 1, false, 8), bn1: new BatchNorm2d(8),
      pw: conv(8, 6, false, 1), pool: new AdaptiveAvgPool2d(1), fc: new Linear(6, 3),
    }, (p, x) => {
      const h = ag.relu(p.bn1.call(p.dw.call(ag.relu(p.bn0.call(p.stem.call(x))))));
      return p.fc.call(ag.flatten(p.pool.call(ag.relu(p.pw.call(h)))));
    });
    const m = build();
    expect(describeAll(m)).toEqual(['group 0 (6 channels): out pw; in fc', 'group 1 (8 channels): out dw, stem; bn bn1, bn0; in pw']);
    m.dispose();
    const [r] = await expectPrunedEqualsZeroed(build, [3, 8, 8], { sparsity: 0.5, groupIdxs: [1] });
    expect(r.kept).toBe(4);
  });
});

describe('pruned outputs equal a dense model with the pruned channels zeroed', () => {
  for (const dimensionalityPreserving of [false, true]) {
    const mode = dimensionalityPreserving ? ' (dimensionality preserving)' : '';
    it(`small VGG-like, every group at once${mode}`, async () => {
      const report = await expectPrunedEqualsZeroed(() => smallVgg(), [3, 8, 8], { sparsity: 0.5, dimensionalityPreserving });
      expect(report.map((r) => r.kept)).toEqual([8, 6, 4]);
    });
    it(`bias-free ResNet-like with residual merges and BN, groups in sequence${mode}`, async () => {
      const report = await expectPrunedEqualsZeroed(() => new TinyResNet(), [3, 8, 8], { sparsity: 0.5, groupIdxs: [0, 2, 3], dimensionalityPreserving });
      expect(report.map((r) => r.kept)).toEqual([6, 4, 4]);
    });
  }

  it('iterative and global modes in dimensionality-preserving mode (channels pruned in step 1 stay pruned)', async () => {
    const iterative = await expectPrunedEqualsZeroed(() => smallVgg(), [3, 8, 8], { sparsity: 0.5, iterativeSteps: 2, dimensionalityPreserving: true });
    expect(iterative.filter((r) => r.step === 2).map((r) => r.channels - r.kept)).toEqual([8, 6, 4]);
    const global = await expectPrunedEqualsZeroed(() => new TinyResNet(), [3, 8, 8], { sparsity: 0.5, global: true, dimensionalityPreserving: true });
    expect(global.reduce((t, r) => t + r.channels - r.kept, 0)).toBe(20);
  });

  it('a pruned checkpoint of a bias-free model loads into a freshly built one (registry resize)', async () => {
    setInitSeed(17);
    const pruned = new TinyResNet();
    randomiseNorms(pruned, 7);
    await prune(pruned, { importanceCriteria: 'l1', sparsity: { 0: 0.5, 1: 0.25, 2: 0.5 }, exampleInput: [3, 8, 8] });
    const file = parseSafetensors(await modelToSafetensors(pruned));
    const fresh = new TinyResNet();
    resizeToStateDict(fresh, file);
    loadStateDict(fresh, file, 'pruned TinyResNet');
    expect(fresh.parameterCount()).toBe(pruned.parameterCount());
    expect(fresh.b.at(0)).toMatchObject({ outChannels: 9, inChannels: 4 });
    expectClose(await outputs(fresh, [3, 8, 8]), await outputs(pruned, [3, 8, 8]), 0, 0, 'reloaded outputs');
    pruned.dispose();
    fresh.dispose();
  });

  it('BN folding gives bias-free convs a bias and keeps eval outputs', async () => {
    setInitSeed(13);
    const m = new TinyResNet();
    randomiseNorms(m, 6);
    const before = await outputs(m, [3, 8, 8]);
    expect(m.stem.bias).toBeNull();
    expect(await foldBatchNorms(m, [3, 8, 8])).toBe(6);
    expect(m.stem.bias?.shape).toEqual([8]);
    // Each folded BN still divides by sqrt(1 + eps) in eval mode: a few 1e-6 relative per layer.
    expectClose(await outputs(m, [3, 8, 8]), before, 1e-5, 1e-4, 'outputs after folding');
    m.dispose();
  });

  it('a user-defined Module subclass with adaptive pooling, pruned end to end (sparsity per group)', async () => {
    class MyNet extends Module {
      body = this.addChild('body', new Sequential(conv(3, 8, false), new BatchNorm2d(8), new ReLU(), conv(8, 10), new ReLU()));
      pool = this.addChild('pool', new AdaptiveAvgPool2d(2));
      flat = this.addChild('flat', new Flatten());
      out = this.addChild('out', new Linear(40, 7));
      forward(x: Tensor): Tensor {
        return this.out.call(this.flat.call(this.pool.call(this.body.call(x))));
      }
    }
    const report = await expectPrunedEqualsZeroed(() => new MyNet(), [3, 8, 8], { sparsity: { 0: 0.3, 1: 0.5 } });
    expect(report.map((r) => [r.index, r.kept])).toEqual([[0, 7], [1, 4]]);
  });
});

describe('the protected classifier is found structurally', () => {
  it('a 100-class model keeps 100 outputs; a 10-wide hidden Linear is still pruned', async () => {
    const m = new Net({ c: conv(3, 8), fc1: new Linear(8 * 16, 10), fc2: new Linear(10, 100) },
      (p, x) => p.fc2.call(ag.relu(p.fc1.call(ag.flatten(ag.maxPool2d(ag.relu(p.c.call(x)), { kernel: 2, stride: 2 }))))));
    expect(describeAll(m)).toEqual(['group 0 (10 channels): out fc1; in fc2', 'group 1 (8 channels): out c; in fc1']);
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 8, 8] });
    expect((m.parts.fc2 as Linear).outFeatures).toBe(100);
    expect((m.parts.fc1 as Linear).outFeatures).toBe(5);
    expect((await outputs(m, [3, 8, 8])).length).toBe(200);
    // Explicit ignoredLayers replace the default: ignoring nothing makes the output space a group.
    expect(dependencyGroups(m, { exampleInput: [3, 8, 8], ignored: [] }).length).toBe(3);
    m.dispose();
  });

  it('a 100-class VGG11-BN pruned at group 0 keeps 100 outputs', async () => {
    const m = createModel('vgg11_bn', { numClasses: 100 });
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [0] });
    const classifier = (m as VGG).classifier as Linear;
    expect(classifier.outFeatures).toBe(100);
    expect(classifier.inFeatures).toBe(256);
    m.dispose();
  });
});

describe('pruning modes', () => {
  const widths = (m: Module) => dependencyGroups(m, { exampleInput: [3, 8, 8] }).map((g) => g.channels);

  it('per-group ratios, roundTo, and iterative steps on a linear schedule of the original widths', async () => {
    const a = smallVgg();
    await prune(a, { importanceCriteria: 'l1', sparsity: { 0: 0.5, 2: 0.25 }, exampleInput: [3, 8, 8] });
    expect(widths(a)).toEqual([8, 12, 6]);
    const b = smallVgg();
    // Torch-Pruning's round_to, down to a multiple: floor(16 * 0.6) = 9 -> 8; floor(12 * 0.6) = 7 -> 4; floor(8 * 0.6) = 4.
    const warnings: string[] = [];
    await prune(b, { importanceCriteria: 'l1', sparsity: 0.4, roundTo: 4, exampleInput: [3, 8, 8], onProgress: (m) => m.startsWith('warning') && warnings.push(m) });
    expect(widths(b)).toEqual([8, 4, 4]);
    expect(warnings).toEqual(["warning: roundTo 4 keeps 8 of group 0's 16 channels where the sparsity asks for 9", "warning: roundTo 4 keeps 4 of group 1's 12 channels where the sparsity asks for 7"]);
    // At least one multiple; never more than the group; 1 changes nothing.
    expect([roundKept(9, 10, 8), roundKept(3, 16, 4), roundKept(11, 16, 32), roundKept(7, 16, 1), roundKept(16, 16, 8)]).toEqual([8, 4, 16, 7, 16]);
    await expect(prune(smallVgg(), { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1, 1], exampleInput: [3, 8, 8] })).rejects.toThrow('prune: group 1 is listed twice in groupIdxs (it would be pruned twice).');
    const c = smallVgg();
    const report = await prune(c, { importanceCriteria: 'l2', sparsity: 0.5, iterativeSteps: 2, exampleInput: [3, 8, 8] });
    // Step 1 at sparsity 0.25 of the original widths, step 2 at 0.5.
    expect(report.map((r) => [r.step, r.channels, r.kept])).toEqual([[1, 16, 12], [1, 12, 9], [1, 8, 6], [2, 12, 8], [2, 9, 6], [2, 6, 4]]);
    expect(widths(c)).toEqual([8, 6, 4]);
    for (const m of [a, b, c]) m.dispose();
  });

  it('global ranking prunes the least important channels across groups, no group below its guard', async () => {
    setInitSeed(21);
    const m = smallVgg();
    // Channels 0-3 of group 2 (features.0 -> features.4) get zero rows and columns: importance 0.
    const features = m.parts.features as Sequential;
    for (const [layer, zero] of [[features.at(0), (w: Float32Array) => { for (let c = 0; c < 4; c++) w.fill(0, c * 27, (c + 1) * 27); }],
      [features.at(4), (w: Float32Array) => { for (let o = 0; o < 12; o++) w.fill(0, o * 72, o * 72 + 36); }]] as const) {
      const w = (layer as Conv2d).weight;
      const v = await w.data();
      zero(v);
      assign(w, v);
    }
    const report = await prune(m, { importanceCriteria: 'lamp', sparsity: 0.25, global: true, maxGroupSparsity: 0.75, exampleInput: [3, 8, 8] });
    // lamp scores are not mean-normalised per group, so the ranking needs the division by the group mean.
    // 36 channels in all, 9 pruned; the 4 dead channels of group 2 go first.
    const pruned = report.reduce((s, r) => s + r.channels - r.kept, 0);
    expect(pruned).toBe(9);
    expect(report[2].prunedIdx).toEqual(expect.arrayContaining([0, 1, 2, 3]));
    // Which groups lose the other 5: the 9 smallest of importance / group mean over all channels.
    const lowest = report.flatMap((r) => {
      const mean = r.importance.reduce((a, b) => a + b, 0) / r.channels;
      return Array.from(r.importance, (v) => ({ g: r.index, v: v / mean }));
    }).sort((a, b) => a.v - b.v).slice(0, 9);
    expect(report.map((r) => r.kept)).toEqual(report.map((r) => r.channels - lowest.filter((x) => x.g === r.index).length));
    m.dispose();
    // Iterative global: step t prunes to sparsity 0.5 * t / 2 of the original 36 channels in all.
    const it2 = smallVgg();
    const steps = await prune(it2, { importanceCriteria: 'l1', sparsity: 0.5, global: true, iterativeSteps: 2, exampleInput: [3, 8, 8] });
    expect([1, 2].map((t) => steps.filter((r) => r.step === t).reduce((s, r) => s + r.channels - r.kept, 0))).toEqual([9, 9]);
    expect(widths(it2).reduce((a, b) => a + b)).toBe(18);
    it2.dispose();
    // The guard: at 0.9 global sparsity with a 0.5 cap, every group keeps half.
    const g = smallVgg();
    await prune(g, { importanceCriteria: 'l1', sparsity: 0.9, global: true, maxGroupSparsity: 0.5, exampleInput: [3, 8, 8] });
    expect(widths(g)).toEqual([8, 6, 4]);
    g.dispose();
  });

  it('Intra-Fusion applies M to producer rows and biases and to consumer columns (H*W per channel)', async () => {
    setInitSeed(23);
    const m = smallVgg();
    const conv2 = (m.parts.features as Sequential).at(4) as Conv2d;
    const fc1 = m.parts.fc1 as Linear;
    const [w, b, v] = await Promise.all([conv2.weight.data(), conv2.bias!.data(), fc1.weight.data()]);
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], fusion: 'ot', foldBatchNorm: false, exampleInput: [3, 8, 8] });
    const { map: M, channels: n, kept: k } = r;
    // A fusion map, not a selection: each kept neuron absorbs n/k = 2 neurons' mass.
    expect(M.reduce((a, x) => a + x, 0)).toBeCloseTo(n, 9);
    const rows = new Float64Array(k * 72);
    const bias = new Float64Array(k);
    const cols = new Float64Array(16 * k * 4);
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < n; i++) {
        for (let e = 0; e < 72; e++) rows[j * 72 + e] += M[j * n + i] * w[i * 72 + e];
        bias[j] += M[j * n + i] * b[i];
        for (let o = 0; o < 16; o++) for (let t = 0; t < 4; t++) cols[(o * k + j) * 4 + t] += M[j * n + i] * v[(o * n + i) * 4 + t];
      }
    }
    expectClose(await conv2.weight.data(), rows, 1e-6, 1e-5, 'producer rows');
    expectClose(await conv2.bias!.data(), bias, 1e-6, 1e-5, 'producer bias');
    expectClose(await fc1.weight.data(), cols, 1e-6, 1e-5, 'consumer columns');
    m.dispose();
  });

  it('groups scored together share one set of taylor gradients, equal to each group\'s own', async () => {
    const d = await loadCifar10(join(sharedDir(), 'data/cifar10'), { download: false });
    const data = { train: subset(d.train, 16), normalization: parseNormalization('0.5,0.5,0.5', '0.25,0.25,0.25')! };
    const build = () => new Net({ c1: conv(3, 6), c2: conv(6, 8), fc: new Linear(8 * 64, 10) },
      (p, x) => p.fc.call(ag.flatten(ag.maxPool2d(ag.relu(p.c2.call(ag.maxPool2d(ag.relu(p.c1.call(x)), { kernel: 2, stride: 2 }))), { kernel: 2, stride: 2 }))));
    const o = { batches: 1, batchSize: 8, data };
    setInitSeed(29);
    const m = build();
    const report = await prune(m, { importanceCriteria: 'taylor', sparsity: 0.5, batchGroups: true, random: seededRandom(1), ...o });
    setInitSeed(29);
    const ref = build();
    const groups = dependencyGroups(ref);
    for (const r of report) expectClose(r.importance, await groupImportance(ref, groups[r.index], 'taylor', { random: seededRandom(1), ...o }), 1e-12, 1e-9, `group ${r.index}`);
    m.dispose();
    ref.dispose();
  }, 60_000);

  it('batched, global and iterative Intra-Fusion solve every group\'s transport problem in one call; whole-network by default goes group by group', async () => {
    const calls: number[] = [];
    class CountingOT extends OptimalTransport {
      override async maps(problems: OtProblem[]) {
        calls.push(problems.length);
        return super.maps(problems);
      }
    }
    const ot = new CountingOT();
    for (const o of [{}, { batchGroups: true }, { global: true }, { iterativeSteps: 2 }]) {
      const m = smallVgg();
      await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, optimalTransport: ot, exampleInput: [3, 8, 8], ...o });
      m.dispose();
    }
    const m = smallVgg();
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, fusion: 'ot', groupIdxs: [0, 1], optimalTransport: ot, exampleInput: [3, 8, 8] });
    m.dispose();
    expect(calls).toEqual([1, 1, 1, 3, 3, 3, 3, 1, 1]);
  });

  it('whole-network Intra-Fusion of VGG11-BN runs end to end and gives the halved VGG\'s parameter count', async () => {
    setInitSeed(4);
    const m = createModel('vgg11_bn');
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, optimalTransport: new OptimalTransport() });
    const halved = new VGG([32, 'M', 64, 'M', 128, 128, 'M', 256, 256, 'M', 256, 256, 'M']);
    expect(m.parameterCount()).toBe(halved.parameterCount());
    expect(complexity(m).macs).toBe(complexity(halved).macs);
    const y = await outputs(m, [3, 32, 32]);
    expect(y.length).toBe(20);
    expect(y.every(Number.isFinite)).toBe(true);
    m.dispose();
    halved.dispose();
  }, 120_000);

  it('whole-network Intra-Fusion of ResNet18 runs end to end: every group halved', async () => {
    setInitSeed(5);
    const m = createModel('resnet18');
    const before = dependencyGroups(m).map((g) => g.channels);
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, optimalTransport: new OptimalTransport() });
    expect(dependencyGroups(m).map((g) => g.channels)).toEqual(before.map((n) => n / 2));
    const y = await outputs(m, [3, 32, 32]);
    expect(y.length).toBe(20);
    expect(y.every(Number.isFinite)).toBe(true);
    m.dispose();
  }, 180_000);
});

describe('outside the supported set: UnsupportedError naming the layer or op', () => {
  it('an op without a channel rule, a layer kind not registered, a reshape that is not a flatten, a grouped conv', () => {
    class Projection extends Module {
      w = this.addParam('w', fromArray(randArray(seededRandom(1), 256 * 2), [256, 2]));
      forward(x: Tensor): Tensor {
        return ag.matmul(x, this.w);
      }
    }
    const mm = new Net({ c: conv(3, 4), proj: new Projection() }, (p, x) => p.proj.call(ag.flatten(p.c.call(x))));
    expect(() => dependencyGroups(mm, { exampleInput: [3, 8, 8] })).toThrow(UnsupportedError);
    expect(() => dependencyGroups(mm, { exampleInput: [3, 8, 8] })).toThrow(/the op "matmul" in proj has no channel rule/);
    mm.dispose();

    class MyDense extends Module {
      w = this.addParam('w', fromArray(randArray(seededRandom(1), 2 * 256), [2, 256]));
      forward(x: Tensor): Tensor {
        return ag.linear(x, this.w, null);
      }
    }
    const own = new Net({ c: conv(3, 4), head: new MyDense() }, (p, x) => p.head.call(ag.flatten(p.c.call(x))));
    expect(() => dependencyGroups(own, { exampleInput: [3, 8, 8] })).toThrow(/module head \(MyDense\) runs linear but is not a registered layer kind/);
    own.dispose();

    const seq = new Net({ c: conv(3, 4), fc: new Linear(4 * 64, 2) }, (p, x) => p.fc.call(ag.flatten(ag.reshape(p.c.call(x), [1, 4, 64, 1]))));
    expect(() => dependencyGroups(seq, { exampleInput: [3, 8, 8] })).toThrow(/reshape \[1,4,8,8\] -> \[1,4,64,1\] has no channel rule/);
    seq.dispose();

    const shared = new Net({ c: conv(3, 3), fc: new Linear(3 * 64, 2) }, (p, x) => p.fc.call(ag.flatten(p.c.call(p.c.call(x)))));
    expect(() => dependencyGroups(shared, { exampleInput: [3, 8, 8] })).toThrow(/c is called more than once per forward pass/);
    shared.dispose();

    // A grouped conv's groups cut by a concatenation cannot be pruned equally.
    const cut = new Net({ a: conv(3, 2), b: conv(3, 2), g: new Conv2d(4, 4, 3, 1, 1, true, 2), fc: new Linear(4 * 64, 2) },
      (p, x) => p.fc.call(ag.flatten(p.g.call(ag.concat([p.a.call(x), p.b.call(x)])))));
    expect(() => dependencyGroups(cut, { exampleInput: [3, 8, 8] })).toThrow(/g is a grouped convolution whose input channels are only partly one group \(2 of 4\)/);
    cut.dispose();
  });

  it('an op inside a named module is named with that module', () => {
    class Mean extends Module {
      forward(x: Tensor): Tensor {
        return ag.mean(x);
      }
    }
    const m = new Net({ c: conv(3, 4), reduce: new Mean() }, (p, x) => p.reduce.call(p.c.call(x)));
    expect(() => dependencyGroups(m, { exampleInput: [3, 8, 8] })).toThrow(/the op "mean" in reduce has no channel rule/);
    m.dispose();
  });

  it('taylor and chip refuse an exampleInput that CIFAR-10 batches do not fit', async () => {
    const m = smallVgg();
    const data = { train: { count: 1 } as never, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } as never };
    await expect(prune(m, { importanceCriteria: 'taylor', sparsity: 0.5, exampleInput: [3, 8, 8], data })).rejects.toThrow(/samples of 3x32x32, but the model.s input is 3x8x8/);
    m.dispose();
  });
});

describe('CLI flags for the pruning modes', () => {
  it('parses per-group ratios as GROUP=SPARSITY pairs and flags by their aliases', () => {
    const spec = { 'group-sparsity': { kind: 'pairs', help: '' }, 'input-shape': { kind: 'ints', help: '', aliases: ['exampleInput'], repeats: true } } as const;
    expect(parseArgs(['--group-sparsity', '1=0.3,2=0.5', '--exampleInput', '3', '16', '16'], spec)).toMatchObject({ 'group-sparsity': { 1: 0.3, 2: 0.5 }, 'input-shape': [3, 16, 16] });
    expect(parseArgs(['--group-sparsity', '1=0.3', '4=0.25'], spec)['group-sparsity']).toEqual({ 1: 0.3, 4: 0.25 });
    expect(() => parseArgs(['--group-sparsity', '1:0.3'], spec)).toThrow(/"1:0.3" is not KEY=VALUE/);
    expect(() => parseArgs(['--group-sparsity', 'a=0.3'], spec)).toThrow(/"a" is not an integer/);
  });
});

describe('model folding through prune()', () => {
  /**
   * conv(3->8) with channel pairs (c, c+4) identical in rows and bias, ReLU, conv(8->5): folding the
   * group to 4 channels merges each pair (k-means finds the 4 exact duplicates), producer rows become
   * the pair's mean (the same row) and consumer columns the pair's sum, so the output is unchanged.
   */
  it('folds duplicated channels to 4 clusters without changing the output; the merged columns are the sums', async () => {
    setInitSeed(21);
    const build = () => new Net({ a: conv(3, 8), b: conv(8, 5) }, (p, x) => p.b.call(ag.relu(p.a.call(x))));
    const m = build();
    const a = m.parts.a as Conv2d;
    const w = await a.weight.data();
    const per = w.length / 8;
    for (let c = 4; c < 8; c++) w.copyWithin(c * per, (c - 4) * per, (c - 3) * per);
    assign(a.weight, w);
    const bias = await a.bias!.data();
    bias.copyWithin(4, 0, 4);
    assign(a.bias!, bias);
    const dense = await outputs(m, [3, 8, 8]);
    const wb = await (m.parts.b as Conv2d).weight.data();
    const report = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 8, 8], fusion: 'folding', ignoredLayers: [m.parts.b] });
    expect(report.map((r) => r.kept)).toEqual([4]);
    expect((m.parts.a as Conv2d).outChannels).toBe(4);
    expectClose(await outputs(m, [3, 8, 8]), dense, 1e-5, 1e-4, 'folded vs dense');
    // Consumer columns of cluster {0, 4} (numbered by its smallest member: first) are the sum of both.
    const folded = await (m.parts.b as Conv2d).weight.data();
    for (let o = 0; o < 5; o++) for (let t = 0; t < 9; t++) {
      expect(folded[(o * 4 + 0) * 9 + t]).toBeCloseTo(wb[(o * 8 + 0) * 9 + t] + wb[(o * 8 + 4) * 9 + t], 5);
    }
    m.dispose();
  });

  it('rejects folding with dimensionality preservation', async () => {
    const m = smallVgg();
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 8, 8], fusion: 'folding', dimensionalityPreserving: true }))
      .rejects.toThrow(/folding" needs batch-norm folding and cannot preserve dimensionality/);
    m.dispose();
  });
});

describe('refused rather than silently wrong', () => {
  it('a reshape that moves channels into the batch dimension is not a flatten', () => {
    const m = new Net({ a: conv(3, 4), fc: new Linear(64, 5) }, (p, x) => p.fc.call(ag.reshape(p.a.call(x), [4, 64])));
    expect(() => dependencyGroups(m, { exampleInput: [3, 8, 8] })).toThrow(UnsupportedError);
    expect(() => dependencyGroups(m, { exampleInput: [3, 8, 8] })).toThrow(/reshape \[1,4,8,8\] -> \[4,64\] .*has no channel rule/);
    m.dispose();
  });

  it('dimensionality preservation without batch-norm folding is an ArgumentError', async () => {
    const m = smallVgg();
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 8, 8], dimensionalityPreserving: true, foldBatchNorm: false }))
      .rejects.toThrow(/dimensionalityPreserving needs batch-norm folding/);
    m.dispose();
  });
});
