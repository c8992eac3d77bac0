/** The pruner and optimal transport (issue: dependency groups, importance criteria, OT, Intra-Fusion). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensorsBytes } from '../src/nn/checkpoint.js';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { parseNormalization, subset } from '../src/data/cifar10.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { evaluate } from '../src/nn/metrics.js';
import { createModel, type ModelName } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { emd } from '../src/ot/emd.js';
import { sinkhornBatch } from '../src/ot/sinkhorn.js';
import {
  chipScores, dependencyGroups, foldBatchNorms, groupImportance, keptCount, lampScores, OptimalTransport, prune, symmetricEigenvaluesForTest,
} from './prune-helpers.js';
import { noGrad } from '../src/tensor/autograd.js';
import { destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { expectClose, fixtureCases, gpu, loadFixture, sharedDir } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const checkpoint = () => readFileSync(join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors'));
const input = () => fromArray(new Float32Array(2 * 3072).map((_, i) => Math.sin(i * 0.37)), [2, 3, 32, 32]).keep();
async function logits(m: Module, x = input()) {
  m.eval();
  return noGrad(() => tidy(() => m.call(x))).dataAndDispose();
}

describe('optimal transport solvers', () => {
  it('exact EMD equals POT\'s plan on every ot fixture (cost within 1e-6 relative)', () => {
    const cases = fixtureCases('ot');
    expect(cases.length).toBe(5);
    for (const c of cases) {
      const f = loadFixture(c.file).tensors;
      const r = emd(f.get('a')!.values, f.get('b')!.values, f.get('cost')!.values);
      expectClose(r.plan, f.get('plan_emd')!.values, 1e-7, 1e-6, `${c.file} plan`);
      expect(Math.abs(r.cost - f.get('cost_emd')!.values[0]) / f.get('cost_emd')!.values[0]).toBeLessThan(1e-6);
    }
  });

  it('batched log-domain Sinkhorn matches the fixtures for reg 0.05 and 0.01, all ten problems in one dispatch', async () => {
    const problems: { a: Float32Array; b: Float32Array; cost: Float32Array; reg: number }[] = [];
    const refs: { name: string; plan: Float32Array }[] = [];
    for (const c of fixtureCases('ot')) {
      const f = loadFixture(c.file).tensors;
      for (const reg of [0.05, 0.01]) {
        problems.push({ a: f.get('a')!.values, b: f.get('b')!.values, cost: f.get('cost')!.values, reg });
        refs.push({ name: `${c.file} reg ${reg}`, plan: f.get(`plan_sinkhorn_${reg}`)!.values });
      }
    }
    const results = await sinkhornBatch(problems, { maxIter: 10000 });
    results.forEach((r, i) => {
      const max = refs[i].plan.reduce((m, v) => Math.max(m, v), 0);
      // float32 log-domain potentials reach cost/reg ~ 1e3, so agreement is ~1e-4 relative at best.
      expectClose(r.plan, refs[i].plan, 1e-3 * max, 0, refs[i].name);
    });
  }, 300_000); // long on a loaded 2-core machine (hit 120 s there)

  it('rejects inconsistent problems clearly', () => {
    expect(() => emd([0.5, 0.5], [1], [0, 1, 2])).toThrow(/cost matrix has 3 entries, expected 2 x 1/);
    expect(() => emd([0.5, 0.5], [0.2], [0, 1])).toThrow(/different masses/);
    expect(() => new OptimalTransport({ solver: 'magic' as 'emd' })).toThrow(/solver must be "emd" or "sinkhorn"/);
  });
});

describe('dependency groups', () => {
  it('VGG11-BN: 8 groups, index 0 nearest the output, as the spec lists', () => {
    const m = createModel('vgg11_bn');
    const g = dependencyGroups(m).map((x) => x.describe());
    expect(g).toEqual([
      'group 0 (512 channels): out features.25; bn features.26; in classifier',
      'group 1 (512 channels): out features.22; bn features.23; in features.25',
      'group 2 (512 channels): out features.18; bn features.19; in features.22',
      'group 3 (512 channels): out features.15; bn features.16; in features.18',
      'group 4 (256 channels): out features.11; bn features.12; in features.15',
      'group 5 (256 channels): out features.8; bn features.9; in features.11',
      'group 6 (128 channels): out features.4; bn features.5; in features.8',
      'group 7 (64 channels): out features.0; bn features.1; in features.4',
    ]);
    m.dispose();
  }, 300_000); // long on a loaded 2-core machine (hit 120 s there)

  it('ResNet18: 12 groups with the residual groups merged across adds', () => {
    const m = createModel('resnet18');
    const groups = dependencyGroups(m);
    expect(groups.length).toBe(12);
    const names = (i: number) => groups[i].describe();
    expect(names(0)).toMatch(/out layer4.1.conv2, layer4.0.shortcut.0, layer4.0.conv2;.*in linear, layer4.1.conv1/);
    expect(names(1)).toMatch(/out layer4.1.conv1;.*in layer4.1.conv2$/);
    expect(names(2)).toMatch(/out layer4.0.conv1;.*in layer4.0.conv2$/);
    expect(names(3)).toMatch(/\(256 channels\): out layer3.1.conv2, layer3.0.shortcut.0, layer3.0.conv2;.*in layer4.0.shortcut.0, layer3.1.conv1, layer4.0.conv1/);
    expect(names(6)).toMatch(/\(128 channels\): out layer2.1.conv2, layer2.0.shortcut.0, layer2.0.conv2/);
    expect(names(9)).toMatch(/\(64 channels\): out layer1.1.conv2, conv1, layer1.0.conv2; bn bn1, .*in layer2.0.shortcut.0, layer1.0.conv1, layer1.1.conv1, layer2.0.conv1/);
    expect(names(11)).toMatch(/out layer1.0.conv1;/);
    m.dispose();
  });

  it('pruning one group gives the spec\'s verified parameter counts', async () => {
    const expected: Record<string, Record<number, number[]>> = {
      vgg11_bn: { 1: [7_811_388, 6_871_050, 5_921_493], 2: [7_811_388, 6_871_050, 5_921_493], 3: [8_166_204, 7_460_874, 6_748_629] },
      resnet18: { 1: [9_759_036, 8_818_698, 7_869_141], 2: [10_113_852, 9_408_522, 8_696_277], 3: [10_241_749, 9_621_130, 8_988_342] },
    };
    expect([0.3, 0.4, 0.5, 0.6, 0.7].map((s) => keptCount(512, s))).toEqual([358, 307, 256, 204, 153]);
    for (const [name, perGroup] of Object.entries(expected)) {
      for (const [g, counts] of Object.entries(perGroup)) {
        for (const [i, s] of [0.3, 0.5, 0.7].entries()) {
          const m = createModel(name as ModelName);
          // The spec's counts are the reference's: folded biases kept (referenceQuirks).
          await prune(m, { importanceCriteria: 'l1', sparsity: s, groupIdxs: [Number(g)], referenceQuirks: true });
          expect(m.parameterCount(), `${name} group ${g} sparsity ${s}`).toBe(counts[i]);
          const out = await logits(m);
          expect(out.every(Number.isFinite)).toBe(true);
          m.dispose();
        }
      }
    }
  }, 300_000); // long on a loaded 2-core machine (hit 120 s there)
});

describe('folding and importance', () => {
  it('BN folding keeps eval outputs (with the BN\'s eps; referenceQuirks: up to 1/sqrt(1 + eps) per BN)', async () => {
    for (const quirks of [false, true]) {
      const m = createModel('vgg11_bn');
      loadSafetensorsBytes(m, checkpoint());
      const before = await logits(m);
      expect(await foldBatchNorms(m, undefined, { referenceQuirks: quirks })).toBe(8);
      const after = await logits(m);
      // Default: the same function up to float32 rounding. The reference's fold omits eps and each reset BN
      // still scales by 1/sqrt(1 + 1e-5): a few 1e-5 relative per layer.
      if (quirks) expectClose(after, before, 2e-3, 2e-3, 'logits after the reference\'s folding');
      else expectClose(after, before, 1e-4, 1e-4, 'logits after folding');
      const bn = m.namedModules().find(([n]) => n === 'features.1')![1] as unknown as { running_var: { data(): Promise<Float32Array> } };
      expect(Array.from(await bn.running_var.data()).every((v) => v === Math.fround(quirks ? 1 : 1 - 1e-5))).toBe(true);
      m.dispose();
    }
  });

  it('l1 importance is the layer mean of row and column L1 norms, normalised by its mean', async () => {
    setInitSeed(2);
    const m = createModel('vgg11_bn');
    const group = dependencyGroups(m)[7]; // features.0 (64 out) -> features.4 (in)
    const imp = await groupImportance(m, group, 'l1');
    const w0 = await group.producers[0].weight.data();
    const w4 = await group.consumers[0].layer.weight.data();
    const ref = Array.from({ length: 64 }, (_, c) => {
      let row = 0;
      for (let i = 0; i < 27; i++) row += Math.abs(w0[c * 27 + i]);
      let col = 0;
      for (let o = 0; o < 128; o++) for (let t = 0; t < 9; t++) col += Math.abs(w4[(o * 64 + c) * 9 + t]);
      return (row + col) / 2;
    });
    const mean = ref.reduce((a, b) => a + b) / 64;
    expectClose(imp, ref.map((v) => v / mean), 1e-9, 1e-6, 'l1');
    m.dispose();
  });

  it('LAMP: correct ranking, and the reference\'s permutation behaviour on request', () => {
    const round = (v: ArrayLike<number>) => Array.from(v, (x) => Math.round(x * 1000) / 1000);
    expect(round(lampScores([1, 3, 2, 5, 4]))).toEqual([0.067, 0.25, 0.143, 1.0, 0.444]);
    expect(round(lampScores([1, 3, 2, 5, 4], true))).toEqual([0.143, 0.067, 0.444, 0.25, 1.0]);
  });

  it('CHIP scores agree between the pixel-Gram and channel-Gram computations', () => {
    const r = seededRandom(4);
    for (const [C, HW] of [[6, 4], [5, 9]]) {
      const A = Float32Array.from({ length: C * HW }, () => r() * 2 - 1);
      const got = chipScores(A, C, HW);
      // Brute force: nuclear norm from the pixel Gram of A with row c zeroed, for every c.
      const nuclear = (zero: number) => {
        const g = new Float64Array(HW * HW);
        for (let c = 0; c < C; c++) if (c !== zero) for (let p = 0; p < HW; p++) for (let q = 0; q < HW; q++) g[p * HW + q] += A[c * HW + p] * A[c * HW + q];
        return symmetricEigenvaluesForTest(g, HW).reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
      };
      expectClose(got, Array.from({ length: C }, (_, c) => nuclear(-1) - nuclear(c)), 1e-9, 1e-6, `chip ${C}x${HW}`);
    }
  });

  it('taylor and chip need training data and use it', async () => {
    const d = await loadCifar10(join(sharedDir(), 'data/cifar10'), { download: false });
    setInitSeed(6);
    const m = createModel('vgg11_bn');
    const group = dependencyGroups(m)[0];
    await expect(groupImportance(m, group, 'taylor')).rejects.toThrow(/taylor criterion needs training data/);
    const data = { train: subset(d.train, 64), normalization: parseNormalization('0.5,0.5,0.5', '0.25,0.25,0.25')! };
    for (const criterion of ['taylor', 'chip'] as const) {
      const imp = await groupImportance(m, group, criterion, { data, batches: 2, batchSize: 16, random: seededRandom(1) });
      expect(imp.length).toBe(512);
      expect(imp.every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
      expect(imp.reduce((a, b) => a + b) / 512).toBeCloseTo(1, 6);
      // Scores vary across channels (channels dead on this random-init model may tie).
      expect(new Set(Array.from(imp)).size, criterion).toBeGreaterThan(100);
    }
    m.dispose();
  }, 300_000);
});

describe('default pruning and Intra-Fusion', () => {
  it('the fusion map: source columns sum to 1, rows to n/k, and kept neurons map to themselves', async () => {
    setInitSeed(8);
    const m = createModel('vgg11_bn');
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], optimalTransport: new OptimalTransport() });
    const { map, keptIdx, channels: n, kept: k } = r;
    for (let i = 0; i < n; i++) {
      let col = 0;
      for (let j = 0; j < k; j++) col += map[j * n + i];
      expect(col).toBeCloseTo(1, 9);
    }
    for (let j = 0; j < k; j++) {
      let row = 0;
      for (let i = 0; i < n; i++) row += map[j * n + i];
      expect(row).toBeCloseTo(n / k, 9);
      expect(map[j * n + keptIdx[j]]).toBeCloseTo(1, 9);
    }
    m.dispose();
  });

  it('dimensionality-preserving pruning gives the same outputs as shrinking the layers', async () => {
    for (const ot of [null, new OptimalTransport()]) {
      const shrunk = createModel('vgg11_bn');
      const kept = createModel('vgg11_bn');
      loadSafetensorsBytes(shrunk, checkpoint());
      loadSafetensorsBytes(kept, checkpoint());
      await prune(shrunk, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [2], optimalTransport: ot });
      await prune(kept, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [2], optimalTransport: ot, dimensionalityPreserving: true });
      expect(kept.parameterCount()).toBe(9_231_114);
      expectClose(await logits(kept), await logits(shrunk), 1e-4, 1e-4, `dimensionality preserving (${ot ? 'IF' : 'default'})`);
      shrunk.dispose();
      kept.dispose();
    }
  }, 300_000); // long on a loaded 2-core machine (hit 120 s there)

  it('gives clear errors for bad options', async () => {
    const m = createModel('vgg11_bn');
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 1, groupIdxs: [1] })).rejects.toThrow(/sparsity must be in \[0, 1\)/);
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [8] })).rejects.toThrow(/group index 8 does not exist; this model has groups 0..7/);
    await expect(prune(m, { importanceCriteria: 'l7', sparsity: 0.5 })).rejects.toThrow(/Unknown importance criterion "l7"/);
    m.dispose();
  });

  it('on the shared VGG11-BN, Intra-Fusion beats default pruning clearly (groups 1-2, sparsity 0.5-0.7, l1, 500 test images)', async () => {
    const d = await loadCifar10(join(sharedDir(), 'data/cifar10'), { download: false });
    const bytes = checkpoint();
    const rows: string[] = [];
    for (const g of [1, 2]) {
      for (const s of [0.5, 0.7]) {
        const acc: number[] = [];
        for (const ot of [null, new OptimalTransport()]) {
          const m = createModel('vgg11_bn');
          const meta = loadSafetensorsBytes(m, bytes);
          await prune(m, { importanceCriteria: 'l1', sparsity: s, groupIdxs: [g], optimalTransport: ot });
          const r = await evaluate(m, d.test, { normalization: parseNormalization(meta.normalize_mean, meta.normalize_std)!, limit: 500 });
          acc.push(r.accuracy);
          m.dispose();
        }
        rows.push(`group ${g} sparsity ${s}: default ${acc[0].toFixed(1)} -> IF ${acc[1].toFixed(1)}`);
        // The paper's gap on VGG11-BN is 2.6-42pp over these cells; require at least 2pp (5pp at 70%).
        expect(acc[1] - acc[0], rows[rows.length - 1]).toBeGreaterThan(s === 0.7 ? 5 : 2);
      }
    }
    console.log(rows.join('\n'));
  }, 600_000);
});
