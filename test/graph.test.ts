/**
 * The op table and traced graph (issue 15): one conv-BN pairing rule shared by BN folding and the ONNX
 * export, op specs for every recorded op, and registration from outside. Tiny models, 6x6 inputs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { layerKind } from '../src/nn/kinds.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d } from '../src/nn/layers.js';
import { Module } from '../src/nn/module.js';
import { opSpec } from '../src/graph/ops.js';
import { convBnPairs } from '../src/graph/pairing.js';
import * as ag from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { foldBatchNorms } from '../src/prune/bn-fold.js';
import { dependencyGroups } from '../src/prune/groups.js';
import { OptimalTransport, prune, type PruneOptions, type PrunedGroup } from '../src/prune/index.js';
import { expectClose, gpu, randArray } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

async function outputs(m: Module, shape: [number, number, number]): Promise<Float32Array> {
  const x = fromArray(randArray(seededRandom(3), 2 * shape[0] * shape[1] * shape[2]), [2, ...shape]);
  m.eval();
  const y = await ag.noGrad(() => tidy(() => m.call(x))).dataAndDispose();
  x.dispose();
  return y;
}

function randomiseNorm(bn: BatchNorm2d, seed: number): void {
  const r = seededRandom(seed);
  const c = bn.numFeatures;
  assign(bn.weight, Float32Array.from({ length: c }, () => 0.5 + r()));
  assign(bn.bias, randArray(r, c, 0.3));
  assign(bn.running_mean, randArray(r, c, 0.2));
  assign(bn.running_var, Float32Array.from({ length: c }, () => 0.5 + r()));
}

/** bn(conv(x)) + conv(x): the conv output has two readers, so its BN must not fold into it. */
class SharedConvOutput extends Module {
  conv = this.addChild('conv', new Conv2d(3, 4, 3, 1, 1));
  bn = this.addChild('bn', new BatchNorm2d(4));
  conv2 = this.addChild('conv2', new Conv2d(4, 4, 3, 1, 1));
  bn2 = this.addChild('bn2', new BatchNorm2d(4));
  fc = this.addChild('fc', new Linear(4 * 36, 3));
  forward(x: Tensor): Tensor {
    const h = this.conv.call(x);
    const s = ag.relu(ag.add(this.bn.call(h), h));
    return this.fc.call(ag.flatten(this.bn2.call(this.conv2.call(s))));
  }
}

describe('conv-BN pairing: a BN folds only into a conv whose output it alone reads', () => {
  it('bn(conv(x)) + conv(x) is not folded and keeps its function; bn2(conv2(.)) is', async () => {
    setInitSeed(4);
    const m = new SharedConvOutput();
    randomiseNorm(m.bn, 1);
    randomiseNorm(m.bn2, 2);
    expect(convBnPairs(m, [3, 6, 6]).map(([c, b]) => `${c.path}+${b.path}`)).toEqual(['conv2+bn2']);
    const before = await outputs(m, [3, 6, 6]);
    expect(await foldBatchNorms(m, [3, 6, 6])).toBe(1);
    // Folding leaves the eval BN as the identity up to 1 / sqrt(1 + eps): within 1e-5 relative.
    expectClose(await outputs(m, [3, 6, 6]), before, 1e-4, 1e-4, 'after folding');
    m.dispose();
  });
});

describe('op table', () => {
  it('has a spec for every op autograd records, with a channel rule', () => {
    for (const op of ['conv2d', 'linear', 'batchNorm2d', 'relu', 'scale', 'add', 'maxPool2d', 'avgPool2d', 'adaptiveAvgPool2d', 'reshape']) {
      expect(opSpec(op)?.channels, op).not.toBe('none');
      expect(opSpec(op)?.onnx, op).toBeDefined();
    }
    expect(opSpec('matmul')?.channels).toBe('none');
  });
});

// ------------------------------------------------------------------ channel offsets and grouped convs

type Shape3 = [number, number, number];
const conv = (i: number, o: number, k = 3, groups = 1) => new Conv2d(i, o, k, 1, (k - 1) / 2, true, groups);

/** DenseNet-like: every layer reads the concatenation of all earlier outputs, through a BN over the concatenation. */
class TinyDense extends Module {
  stem = this.addChild('stem', conv(3, 4));
  stemBn = this.addChild('stemBn', new BatchNorm2d(4));
  bn1 = this.addChild('bn1', new BatchNorm2d(4));
  conv1 = this.addChild('conv1', conv(4, 3));
  bn2 = this.addChild('bn2', new BatchNorm2d(7));
  conv2 = this.addChild('conv2', conv(7, 2));
  bnT = this.addChild('bnT', new BatchNorm2d(9));
  trans = this.addChild('trans', conv(9, 5, 1));
  pool = this.addChild('pool', new AdaptiveAvgPool2d(2));
  fc = this.addChild('fc', new Linear(5 * 4, 3));
  forward(x: Tensor): Tensor {
    const x0 = ag.relu(this.stemBn.call(this.stem.call(x)));
    const x1 = ag.concat([x0, this.conv1.call(ag.relu(this.bn1.call(x0)))]);
    const x2 = ag.concat([x1, this.conv2.call(ag.relu(this.bn2.call(x1)))]);
    return this.fc.call(ag.flatten(this.pool.call(this.trans.call(ag.relu(this.bnT.call(x2))))));
  }
}

/** Inception-like branches concatenated, a squeeze-excitation gate on the concatenation, then a channel split cutting one branch. */
class TinyInception extends Module {
  stem = this.addChild('stem', conv(3, 6));
  b1 = this.addChild('b1', conv(6, 2, 1));
  b2 = this.addChild('b2', conv(6, 3));
  b3pool = this.addChild('b3pool', new MaxPool2d(3, 1, 1));
  b3 = this.addChild('b3', conv(6, 2, 1));
  squeeze = this.addChild('squeeze', new AdaptiveAvgPool2d(1));
  reduce = this.addChild('reduce', conv(7, 3, 1));
  expand = this.addChild('expand', conv(3, 7, 1));
  left = this.addChild('left', conv(4, 3));
  right = this.addChild('right', conv(3, 3, 1));
  pool = this.addChild('pool', new AdaptiveAvgPool2d(1));
  fc = this.addChild('fc', new Linear(3, 4));
  forward(x: Tensor): Tensor {
    const h = ag.relu(this.stem.call(x));
    const cat = ag.concat([this.b1.call(h), this.b2.call(h), this.b3.call(this.b3pool.call(h))]);
    const gated = ag.mul(cat, ag.sigmoid(this.expand.call(ag.silu(this.reduce.call(this.squeeze.call(cat))))));
    // Cuts b2 before its last channel (4 of 7 at first); the sizes follow the widths as pruning changes them.
    const [a, b] = ag.split(gated, [this.b1.outChannels + this.b2.outChannels - 1, 1 + this.b3.outChannels]);
    return this.fc.call(ag.flatten(this.pool.call(ag.relu(ag.add(this.left.call(a), this.right.call(b))))));
  }
}

/** ResNeXt-like bottleneck: a grouped 3x3 conv (4 groups of 2 channels) between 1x1 convs, with a projected shortcut. */
class TinyResNeXt extends Module {
  conv1 = this.addChild('conv1', conv(3, 8, 1));
  bn1 = this.addChild('bn1', new BatchNorm2d(8));
  conv2 = this.addChild('conv2', conv(8, 8, 3, 4));
  bn2 = this.addChild('bn2', new BatchNorm2d(8));
  conv3 = this.addChild('conv3', conv(8, 6, 1));
  bn3 = this.addChild('bn3', new BatchNorm2d(6));
  shortcut = this.addChild('shortcut', conv(3, 6, 1));
  pool = this.addChild('pool', new AdaptiveAvgPool2d(1));
  fc = this.addChild('fc', new Linear(6, 3));
  forward(x: Tensor): Tensor {
    const h = ag.relu(this.bn1.call(this.conv1.call(x)));
    const g = ag.relu(this.bn2.call(this.conv2.call(h)));
    const y = ag.relu(ag.add(this.bn3.call(this.conv3.call(g)), this.shortcut.call(x)));
    return this.fc.call(ag.flatten(this.pool.call(y)));
  }
}

function randomiseNorms(m: Module, seed: number): void {
  for (const [, bn] of m.namedModules()) if (bn instanceof BatchNorm2d) randomiseNorm(bn, seed++);
}

/** Zeroes channels of a weight viewed as [rows, n, inner] (rows restricted to `rowRange` when given). */
async function zeroChannels(t: Tensor, rows: number, n: number, inner: number, channels: number[], rowRange: (c: number) => [number, number] = () => [0, rows]): Promise<void> {
  const v = await t.data();
  for (const c of channels) {
    const [r0, r1] = rowRange(c);
    for (let r = r0; r < r1; r++) v.fill(0, (r * n + c) * inner, (r * n + c + 1) * inner);
  }
  assign(t, v);
}

/**
 * The dense reference of a default pruning: the same model with BNs folded and every pruned channel's
 * producer rows (weight and bias) and consumer columns zeroed AT ITS OFFSET in each layer, written here
 * from the layer shapes, not with the pruner's own slice code.
 */
async function zeroedDense(m: Module, report: PrunedGroup[], shape: Shape3): Promise<void> {
  await foldBatchNorms(m, shape);
  const groups = dependencyGroups(m, { exampleInput: shape });
  for (const r of report) {
    const g = groups[r.index];
    for (const { layer, offset } of g.outSlots) {
      const at = r.prunedIdx.map((c) => offset + c);
      const out = layerKind(layer)!.outChannels(layer);
      await zeroChannels(layer.weight, 1, out, layer.weight.size / out, at);
      const bias = (layer as unknown as { bias: Tensor | null }).bias;
      if (bias) await zeroChannels(bias, 1, out, 1, at);
    }
    for (const { layer, offset, factor } of g.consumers) {
      const at = r.prunedIdx.map((c) => offset + c);
      if (layer instanceof Conv2d) {
        // Input channel c is column c mod perGroup of the rows of its conv group (all rows when groups = 1).
        const [out, perGroup, kh, kw] = layer.weight.shape;
        const rowsPerGroup = out / layer.groups;
        for (const c of at) {
          const b = Math.floor(c / perGroup);
          await zeroChannels(layer.weight, out, perGroup, kh * kw, [c % perGroup], () => [b * rowsPerGroup, (b + 1) * rowsPerGroup]);
        }
      } else if (layer instanceof Linear) {
        await zeroChannels(layer.weight, layer.outFeatures, layer.inFeatures / factor, factor, at);
      }
    }
  }
}

async function expectPrunedEqualsZeroed(build: () => Module, shape: Shape3, o: Omit<PruneOptions, 'importanceCriteria'>): Promise<{ report: PrunedGroup[]; pruned: Module }> {
  setInitSeed(21);
  const pruned = build();
  randomiseNorms(pruned, 5);
  setInitSeed(21);
  const dense = build();
  randomiseNorms(dense, 5);
  const report = await prune(pruned, { importanceCriteria: 'l1', exampleInput: shape, ...o });
  await zeroedDense(dense, report, shape);
  expect(pruned.parameterCount()).toBeLessThan(dense.parameterCount());
  expectClose(await outputs(pruned, shape), await outputs(dense, shape), 1e-5, 1e-4, 'pruned vs zeroed dense');
  dense.dispose();
  return { report, pruned };
}

/** Intra-Fusion shrunk and dimensionality-preserving compute the same function (the fused maps at the offsets). */
async function expectFusedPreservingEqualsShrunk(build: () => Module, shape: Shape3, groupIdxs?: number[]): Promise<void> {
  const run = async (dimensionalityPreserving: boolean) => {
    setInitSeed(21);
    const m = build();
    randomiseNorms(m, 5);
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs, exampleInput: shape, optimalTransport: new OptimalTransport(), dimensionalityPreserving });
    const y = await outputs(m, shape);
    m.dispose();
    return y;
  };
  expectClose(await run(true), await run(false), 1e-5, 1e-4, 'Intra-Fusion preserving vs shrunk');
}

describe('channel offsets: concatenation and slicing along channels', () => {
  it('DenseNet-like: each concatenated part is its own group, at its offset in every reader', async () => {
    const m = new TinyDense();
    expect(dependencyGroups(m, { exampleInput: [3, 6, 6] }).map((g) => g.describe())).toEqual([
      'group 0 (5 channels): out trans; in fc',
      'group 1 (2 channels): out conv2; bn bnT[7:9]; in trans[7:9]',
      'group 2 (3 channels): out conv1; bn bnT[4:7], bn2[4:7]; in trans[4:7], conv2[4:7]',
      'group 3 (4 channels): out stem; bn bnT[0:4], bn2[0:4], bn1, stemBn; in trans[0:4], conv2[0:4], conv1',
    ]);
    m.dispose();
  });

  it('DenseNet-like, default pruning of every group equals the dense model with those channels zeroed at their offsets', async () => {
    const { report, pruned } = await expectPrunedEqualsZeroed(() => new TinyDense(), [3, 6, 6], { sparsity: 0.5 });
    expect(report.map((r) => `${r.index}:${r.kept}/${r.channels}`)).toEqual(['0:2/5', '1:1/2', '2:1/3', '3:2/4']);
    const d = pruned as TinyDense;
    expect([d.bn2.numFeatures, d.bnT.numFeatures, d.conv2.inChannels, d.trans.inChannels]).toEqual([3, 4, 3, 4]);
    pruned.dispose();
  });

  it('Inception-like: branches at their concat offsets, the squeeze-excitation gate merged with the gated channels, a split cutting a branch', async () => {
    const m = new TinyInception();
    expect(dependencyGroups(m, { exampleInput: [3, 6, 6] }).map((g) => g.describe())).toEqual([
      'group 0 (3 channels): out right, left; in fc',
      'group 1 (2 channels): out expand[0:2], b1; in reduce[0:2], left[0:2]',
      'group 2 (2 channels): out expand[2:4], b2[0:2]; in reduce[2:4], left[2:4]',
      'group 3 (1 channels): out expand[4:5], b2[2:3]; in right[0:1], reduce[4:5]',
      'group 4 (2 channels): out expand[5:7], b3; in right[1:3], reduce[5:7]',
      'group 5 (3 channels): out reduce; in expand',
      'group 6 (6 channels): out stem; in b3, b2, b1',
    ]);
    m.dispose();
    const { pruned } = await expectPrunedEqualsZeroed(() => new TinyInception(), [3, 6, 6], { sparsity: 0.5, groupIdxs: [1, 2, 5, 6] });
    const p = pruned as TinyInception;
    expect([p.b2.outChannels, p.expand.outChannels, p.left.inChannels, p.right.inChannels]).toEqual([2, 5, 2, 3]);
    pruned.dispose();
  });

  it('Intra-Fusion places its fused maps at the offsets: dimensionality-preserving equals shrunk (DenseNet-, Inception-like)', async () => {
    await expectFusedPreservingEqualsShrunk(() => new TinyDense(), [3, 6, 6]);
    await expectFusedPreservingEqualsShrunk(() => new TinyInception(), [3, 6, 6], [0, 1, 2, 4, 5, 6]);
  });
});

describe('grouped convolution (1 < groups < channels)', () => {
  it('prunes whole groups alike: the same channels of every conv group, equal to the zeroed dense model', async () => {
    const m = new TinyResNeXt();
    expect(dependencyGroups(m, { exampleInput: [3, 6, 6] }).map((g) => g.describe())).toEqual([
      'group 0 (6 channels): out shortcut, conv3; bn bn3; in fc',
      'group 1 (8 channels in 4 blocks): out conv2; bn bn2; in conv3',
      'group 2 (8 channels in 4 blocks): out conv1; bn bn1; in conv2',
    ]);
    m.dispose();
    const { report, pruned } = await expectPrunedEqualsZeroed(() => new TinyResNeXt(), [3, 6, 6], { sparsity: 0.5, groupIdxs: [1, 2] });
    for (const r of report.slice(0, 2)) {
      const inBlock = (b: number) => r.keptIdx.filter((c) => Math.floor(c / 2) === b).map((c) => c % 2);
      expect(r.keptIdx.length).toBe(4);
      for (let b = 1; b < 4; b++) expect(inBlock(b)).toEqual(inBlock(0));
    }
    const c2 = (pruned as TinyResNeXt).conv2;
    expect([c2.inChannels, c2.outChannels, c2.groups, ...c2.weight.shape]).toEqual([4, 4, 4, 4, 1, 3, 3]);
    pruned.dispose();
    await expectFusedPreservingEqualsShrunk(() => new TinyResNeXt(), [3, 6, 6]);
  });
});

/**
 * Ops where a zero channel does not stay zero (hardsigmoid(0) = 0.5, sigmoid(0) = 0.5, a batch-norm the
 * fold cannot reach adds its shift) between a pruned producer and its readers.
 */
class NonZeroPreserving extends Module {
  c1 = this.addChild('c1', conv(3, 6));
  bn = this.addChild('bn', new BatchNorm2d(6));
  dw = this.addChild('dw', conv(6, 6, 3, 6));
  c2 = this.addChild('c2', conv(6, 5));
  se1 = this.addChild('se1', conv(5, 3, 1));
  se2 = this.addChild('se2', conv(3, 5, 1));
  pool = this.addChild('pool', new AdaptiveAvgPool2d(1));
  fc = this.addChild('fc', new Linear(5 * 4, 3));
  pool2 = this.addChild('pool2', new AdaptiveAvgPool2d(2));
  forward(x: Tensor): Tensor {
    const h = this.bn.call(ag.hardSigmoid(this.c1.call(x), 0.2, 0.5)); // a BN after an activation: not folded
    const y = this.c2.call(ag.sigmoid(this.dw.call(h)));
    const gated = ag.mul(y, ag.sigmoid(this.se2.call(ag.relu(this.se1.call(this.pool.call(y))))));
    return this.fc.call(ag.flatten(this.pool2.call(ag.hardSigmoid(gated, 0.2, 0.5))));
  }
}

describe('ops where zero does not stay zero (zeroStaysZero false)', () => {
  it('dimensionality-preserving pruning equals shrinking through them: every reader of a pruned channel loses its columns, so what the channel carries never counts', async () => {
    for (const op of ['hardSigmoid', 'sigmoid']) expect(opSpec(op)?.zeroStaysZero, op).toBe(false);
    const shape: Shape3 = [3, 6, 6];
    const m = new NonZeroPreserving();
    expect(dependencyGroups(m, { exampleInput: shape }).map((g) => g.describe())).toEqual([
      'group 0 (5 channels): out se2, c2; in fc, se1',
      'group 1 (3 channels): out se1; in se2',
      'group 2 (6 channels): out dw, c1; bn bn; in c2',
    ]);
    m.dispose();
    for (const optimalTransport of [undefined, new OptimalTransport()]) {
      const run = async (dimensionalityPreserving: boolean) => {
        setInitSeed(5);
        const m = new NonZeroPreserving();
        randomiseNorm(m.bn, 9);
        const report = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: shape, dimensionalityPreserving, optimalTransport });
        expect(report.map((r) => `${r.index}:${r.kept}/${r.channels}`)).toEqual(['0:2/5', '1:1/3', '2:3/6']);
        const y = await outputs(m, shape);
        m.dispose();
        return y;
      };
      expectClose(await run(true), await run(false), 1e-5, 1e-4, `${optimalTransport ? 'Intra-Fusion' : 'default'}: preserving vs shrunk`);
    }
  });
});
