/**
 * prune() options whose effect is easy to lose: the batch-norm fold (the BN's eps by default, handed back
 * to the BN after pruning so the layout and parameter counts are the original's; the reference's
 * eps-free fold with `referenceQuirks`), folding seeded from `random`, and where dimensionality-preserving
 * Intra-Fusion puts the fused rows.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { createModel } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { OptimalTransport, prune } from '../src/prune/index.js';
import * as ag from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { expectClose, gpu } from './helpers.js';

afterAll(() => destroyRuntime());

async function outputs(m: Module, shape: [number, number, number]): Promise<Float32Array> {
  const r = seededRandom(3);
  const x = fromArray(Float32Array.from({ length: 2 * shape[0] * shape[1] * shape[2] }, () => 2 * r() - 1), [2, ...shape]);
  m.eval();
  const y = await ag.noGrad(() => tidy(() => m.call(x))).dataAndDispose();
  x.dispose();
  return y;
}

/** A bias-free conv net whose first BN has two near-dead channels (running_var 1e-7), as trained nets do. */
function nearDead(): Sequential {
  setInitSeed(41);
  const m = new Sequential(
    new Conv2d(3, 8, 3, 1, 1, false), new BatchNorm2d(8), new ReLU(), new Conv2d(8, 8, 3, 1, 1, false), new BatchNorm2d(8), new ReLU(),
    new AdaptiveAvgPool2d(1), new Flatten(), new Linear(8, 4),
  );
  const r = seededRandom(42);
  for (const bn of [m.at(1), m.at(4)] as BatchNorm2d[]) {
    assign(bn.weight, Float32Array.from({ length: 8 }, () => 0.5 + r()));
    assign(bn.bias, Float32Array.from({ length: 8 }, () => r() - 0.5));
    assign(bn.running_mean, Float32Array.from({ length: 8 }, () => 0.2 * (r() - 0.5)));
    assign(bn.running_var, Float32Array.from({ length: 8 }, (_, c) => (bn === m.at(1) && c < 2 ? 1e-7 : 0.5 + r())));
  }
  return m;
}

describe('batch-norm folding in prune()', () => {
  it('sparsity 0 keeps the function and the layout; referenceQuirks reproduces the reference\'s eps-free fold', async () => {
    await gpu();
    const names = (m: Module) => [...m.stateTensors()].map(([n, t]) => `${n}:${t.shape}`);
    const m = nearDead();
    const before = await outputs(m, [3, 8, 8]);
    const layout = names(m);
    await prune(m, { importanceCriteria: 'l1', sparsity: 0, exampleInput: [3, 8, 8] });
    expectClose(await outputs(m, [3, 8, 8]), before, 1e-5, 1e-4, 'sparsity 0, default fold');
    expect(names(m)).toEqual(layout); // bias-free convs are bias-free again
    expect((m.at(0) as Conv2d).bias).toBeNull();
    m.dispose();

    const q = nearDead();
    await prune(q, { importanceCriteria: 'l1', sparsity: 0, exampleInput: [3, 8, 8], referenceQuirks: true });
    const quirky = await outputs(q, [3, 8, 8]);
    // Folding without eps blows the near-dead channels up by sqrt((1e-7 + 1e-5) / 1e-7), about 10x.
    expect(Math.max(...quirky.map((v, i) => Math.abs(v - before[i])))).toBeGreaterThan(0.01);
    expect(names(q)).toEqual([...layout.slice(0, 1), '0.bias:8', ...layout.slice(1, 6), '3.bias:8', ...layout.slice(6)]);
    q.dispose();
  });

  it('layers no pruned group reaches keep their exact original values (with referenceQuirks they stay folded)', async () => {
    await gpu();
    const values = async (m: Module, prefix: string[]) => Promise.all([...m.stateTensors()].filter(([n]) => prefix.some((p) => n.startsWith(p))).map(async ([n, t]) => [n, await t.data()] as const));
    const untouched = ['0.', '1.'];
    for (const referenceQuirks of [false, true]) {
      const m = nearDead();
      const before = await values(m, untouched);
      // Group 0 (nearest the output): the second conv, its BN and the classifier; the first pair is not reached.
      await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [0], exampleInput: [3, 8, 8], referenceQuirks });
      expect((m.at(3) as Conv2d).outChannels).toBe(4);
      const after = await values(m, untouched);
      if (referenceQuirks) expect(after.map(([n]) => n)).toContain('0.bias');
      else expect(after).toEqual(before);
      m.dispose();
    }
  });

  it('a pruned ResNet18 keeps torchvision\'s layout: Torch-Pruning\'s 2,801,450 parameters at 0.5 (2,400 more with referenceQuirks)', async () => {
    await gpu();
    for (const quirks of [false, true]) {
      setInitSeed(43);
      const m = createModel('resnet18', { stem: 'imagenet', numClasses: 10 });
      expect(m.parameterCount()).toBe(11_181_642);
      await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 32, 32], referenceQuirks: quirks });
      // scripts/resnet18-half-params.py: torchvision's BasicBlocks at widths 32, 64, 128, 256.
      expect(m.parameterCount()).toBe(quirks ? 2_801_450 + 2_400 : 2_801_450);
      const convBiases = m.namedModules().filter(([, c]) => c instanceof Conv2d && c.bias !== null);
      expect(convBiases.length).toBe(quirks ? 20 : 0);
      m.dispose();
    }
  }, 300_000);
});

describe('seeds and placement', () => {
  const small = () => {
    setInitSeed(44);
    return new Sequential(new Conv2d(3, 12, 3, 1, 1, true), new ReLU(), new Conv2d(12, 8, 3, 1, 1, true), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(8, 4));
  };
  const weights = async (m: Module) => Promise.all([...m.stateTensors()].map(([, t]) => t.data()));

  it('model folding draws its k-means seeds from `random`: same seed, same model; another seed, another model', async () => {
    await gpu();
    const fold = async (seed: number) => {
      const m = small();
      await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], fusion: 'folding', exampleInput: [3, 8, 8], random: seededRandom(seed) });
      const w = await weights(m);
      m.dispose();
      return w.flatMap((t) => Array.from(t));
    };
    const [a, b, c] = [await fold(1), await fold(1), await fold(2)];
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('dimensionality-preserving Intra-Fusion puts fused row j at the j-th kept index, zeros elsewhere, in one step', async () => {
    await gpu();
    const m = small();
    const conv = m.at(0) as Conv2d;
    const [w, b] = [await conv.weight.data(), await conv.bias!.data()];
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], fusion: 'ot', optimalTransport: new OptimalTransport(), dimensionalityPreserving: true, exampleInput: [3, 8, 8] });
    expect(conv.outChannels).toBe(12);
    const [w2, b2] = [await conv.weight.data(), await conv.bias!.data()];
    const per = w.length / 12;
    const expected = new Float64Array(w.length);
    const expectedBias = new Float64Array(12);
    r.keptIdx.forEach((row, j) => {
      for (let i = 0; i < 12; i++) {
        const mji = r.map[j * 12 + i];
        expectedBias[row] += mji * b[i];
        for (let e = 0; e < per; e++) expected[row * per + e] += mji * w[i * per + e];
      }
    });
    expectClose(w2, expected, 1e-6, 1e-5, 'fused rows at the kept indices');
    expectClose(b2, expectedBias, 1e-6, 1e-5, 'fused biases at the kept indices');
    for (const row of r.prunedIdx) expect(Array.from(w2.subarray(row * per, (row + 1) * per)).every((v) => v === 0)).toBe(true);
    m.dispose();
  });
});
