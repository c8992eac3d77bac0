/**
 * The method on models small enough for direct float64 checks: BN folding, the flatten factor, every
 * criterion and option reachable from the CLI through prune() (each would fail if the option were
 * ignored), several and all groups in one call, and taylor / chip against gradients and nuclear norms
 * computed here from their definitions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError } from '../src/errors.js';
import { Conv2d } from '../src/nn/layers.js';
import { batchIndices, makeBatch, order, type Normalization } from '../src/data/cifar10.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import type { Module } from '../src/nn/module.js';
import { dependencyGroups, foldBatchNorms, groupImportance, OptimalTransport, prune, type Group } from '../src/prune/index.js';
import { assign, destroyRuntime } from '../src/tensor/tensor.js';
import { expectClose, gpu } from './helpers.js';
import {
  byMean, conv2d64, ConvPoolLinear, nuclearNorm, referenceCost, referenceMap, referenceSinkhorn, syntheticSplit, TinyVGG,
} from './method-reference.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const convs = (m: Module) => m.namedModules().map(([, x]) => x).filter((x): x is Conv2d => x instanceof Conv2d);
const tiny = (seed = 3) => {
  setInitSeed(seed);
  return new TinyVGG();
};

/** Per-channel slices of a group as float64 arrays: producer rows and consumer columns (factor per channel). */
async function slices(group: Group): Promise<number[][][]> {
  const n = group.channels;
  const out: number[][][] = [];
  for (const layer of group.producers) {
    const w = await layer.weight.data();
    const per = w.length / n;
    out.push(Array.from({ length: n }, (_, c) => Array.from(w.subarray(c * per, (c + 1) * per))));
  }
  for (const { layer, factor } of group.consumers) {
    const w = await layer.weight.data();
    const rows = layer.weight.shape[0];
    const inner = layer instanceof Conv2d ? layer.kernelSize ** 2 : factor;
    const perRow = w.length / rows;
    out.push(Array.from({ length: n }, (_, c) => {
      const col: number[] = [];
      for (let o = 0; o < rows; o++) for (let t = 0; t < inner; t++) col.push(w[o * perRow + c * inner + t]);
      return col;
    }));
  }
  return out;
}

/** Mean over layers of a per-slice score, divided by its mean. */
const criterion = (s: number[][][], f: (slice: number[]) => number) => byMean(s[0].map((_, c) => s.reduce((acc, layer) => acc + f(layer[c]), 0) / s.length));
const l1 = (v: number[]) => v.reduce((a, x) => a + Math.abs(x), 0);
const sq = (v: number[]) => v.reduce((a, x) => a + x * x, 0);
const topK = (imp: ArrayLike<number>, k: number) => Array.from(imp, (v, i) => [v, i]).sort((a, b) => b[0] - a[0] || b[1] - a[1]).slice(0, k).map(([, i]) => i).sort((a, b) => a - b);

describe('BN folding', () => {
  // Default: the BN's own eps, and the reset BN an exact identity (var 1 - eps). referenceQuirks: the
  // reference's fold without eps, var reset to 1.
  for (const quirks of [false, true]) it(`is W * gamma / sqrt(var${quirks ? '' : ' + eps'}) and (b - mean) * gamma / sqrt(var${quirks ? '' : ' + eps'}) + beta in exact arithmetic${quirks ? ' (referenceQuirks: no epsilon)' : ''}`, async () => {
    const m = tiny(4);
    const r = seededRandom(9);
    const expected: { w: number[]; b: number[] }[] = [];
    for (const [, bn] of m.namedModules().filter(([, x]) => x.constructor.name === 'BatchNorm2d')) {
      const b = bn as unknown as { numFeatures: number; weight: never; bias: never; running_mean: never; running_var: never };
      const C = b.numFeatures;
      // Small variances, so an epsilon of 1e-5 would move the result by up to 0.5%.
      for (const [t, lo, hi] of [[b.weight, 0.5, 1.5], [b.bias, -0.2, 0.2], [b.running_mean, -0.3, 0.3], [b.running_var, 1e-3, 1e-2]] as const) {
        assign(t, Float32Array.from({ length: C }, () => lo + (hi - lo) * r()));
      }
    }
    const pairs = convs(m).map((conv, i) => [conv, m.namedModules().filter(([, x]) => x.constructor.name === 'BatchNorm2d')[i][1]] as const);
    for (const [conv, bnModule] of pairs) {
      const bn = bnModule as unknown as Record<'weight' | 'bias' | 'running_mean' | 'running_var', { data(): Promise<Float32Array> }>;
      const [w, b, g, beta, mean, v] = await Promise.all([conv.weight.data(), conv.bias!.data(), bn.weight.data(), bn.bias.data(), bn.running_mean.data(), bn.running_var.data()]);
      const per = w.length / conv.outChannels;
      const eps = quirks ? 0 : (bnModule as unknown as { eps: number }).eps;
      expected.push({
        w: Array.from(w, (x, i) => x * g[Math.floor(i / per)] / Math.sqrt(v[Math.floor(i / per)] + eps)),
        b: Array.from(b, (x, c) => (x - mean[c]) * g[c] / Math.sqrt(v[c] + eps) + beta[c]),
      });
    }
    expect(await foldBatchNorms(m, undefined, { referenceQuirks: quirks })).toBe(3);
    for (const [i, [conv, bn]] of pairs.entries()) {
      expectClose(await conv.weight.data(), expected[i].w, 0, 2e-7, `${conv.path} weight`);
      expectClose(await conv.bias!.data(), expected[i].b, 1e-7, 2e-7, `${conv.path} bias`);
      const reset = bn as unknown as Record<'running_var' | 'running_mean', { data(): Promise<Float32Array> }>;
      expect(Array.from(await reset.running_var.data())).toEqual(new Array(expected[i].b.length).fill(Math.fround(quirks ? 1 : 1 - 1e-5)));
      expect(Array.from(await reset.running_mean.data())).toEqual(new Array(expected[i].b.length).fill(0));
    }
    m.dispose();
  });
});

describe('criteria and options through prune()', () => {
  it('the classifier after a 2x2 map reads 4 columns per channel (flatten factor 4)', async () => {
    const m = tiny();
    const [g0] = dependencyGroups(m);
    expect(g0.consumers.map((c) => c.factor)).toEqual([4]);
    const s = await slices(g0);
    expect(s[1][0]).toHaveLength(40); // 10 outputs x 4 columns
    expectClose(await groupImportance(m, g0, 'l1'), criterion(s, l1), 1e-12, 1e-6, 'l1 with factor 4');
    const before = await m.classifier.weight.data();
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [0] });
    expect(m.classifier.weight.shape).toEqual([10, 16]);
    const after = await m.classifier.weight.data();
    const expected = Array.from({ length: 10 }, (_, o) => r.keptIdx.flatMap((c) => Array.from(before.subarray(o * 32 + c * 4, o * 32 + c * 4 + 4)))).flat();
    expectClose(after, expected, 0, 0, 'kept classifier columns');
    m.dispose();
  });

  it('l2, lamp and random rank channels by their definitions', async () => {
    const refs: Record<string, (s: number[][][], bnCount: number) => number[]> = {
      l2: (s) => criterion(s, sq),
      lamp: (s, bnCount) => {
        // ||slice||_2 per layer plus one row |gamma| = 1 per BN (identity after folding), mean, by mean, LAMP step.
        const v = byMean(s[0].map((_, c) => (s.reduce((acc, layer) => acc + Math.sqrt(sq(layer[c])), 0) + bnCount) / (s.length + bnCount)));
        const idx = v.map((_, i) => i).sort((a, b) => v[b] - v[a] || a - b);
        const out = new Array(v.length);
        let cum = 0;
        idx.forEach((i) => (out[i] = v[i] / (cum += v[i])));
        return out;
      },
    };
    for (const name of ['l2', 'lamp', 'random']) {
      const m = tiny();
      const g1 = dependencyGroups(m)[1];
      const s = await slices(g1); // BNs are the identity here, so folding leaves these weights as they are
      const expected = name === 'random' ? Array.from({ length: 6 }, seededRandom(5)) : refs[name](s, g1.batchNorms.length);
      const [r] = await prune(m, { importanceCriteria: name, sparsity: 0.5, groupIdxs: [1], random: seededRandom(5) });
      expectClose(r.importance, expected, 1e-12, 1e-6, name);
      expect(r.keptIdx, name).toEqual(topK(expected, 3));
      m.dispose();
    }
  });

  it('several groups in one call prune one after another, each on the weights the earlier ones changed', async () => {
    const a = tiny();
    const reports = await prune(a, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1, 0] });
    expect(reports.map((r) => [r.index, r.channels, r.kept])).toEqual([[1, 6, 3], [0, 8, 4]]);
    expect(convs(a).map((c) => [c.inChannels, c.outChannels])).toEqual([[3, 4], [4, 3], [3, 4]]);
    expect(a.classifier.weight.shape).toEqual([10, 16]);
    // Group 0's importance is computed after group 1 removed half of conv 3's input columns.
    const b = tiny();
    await prune(b, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1] });
    expectClose(reports[1].importance, criterion(await slices(dependencyGroups(b)[0]), l1), 1e-12, 1e-6, 'group 0 after group 1');
    a.dispose();
    b.dispose();
  });

  it('no groupIdxs prunes every group', async () => {
    const m = tiny();
    const reports = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5 });
    expect(reports.map((r) => r.index)).toEqual([0, 1, 2]);
    expect(convs(m).map((c) => [c.inChannels, c.outChannels])).toEqual([[3, 2], [2, 3], [3, 4]]);
    expect(m.classifier.inFeatures).toBe(16);
    m.dispose();
  });

  it('Intra-Fusion with p = 2 and importance marginals: the cost, plan marginals and map follow the options', async () => {
    const m = tiny();
    const X = (await slices(dependencyGroups(m)[1])).reduce((acc, layer) => acc.map((row, c) => row.concat(layer[c])), new Array(6).fill(0).map(() => [] as number[]));
    const D = X[0].length;
    const ot = new OptimalTransport({ p: 2, sourceProbability: 'importance', targetProbability: 'importance', fullCost: true });
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], optimalTransport: ot });
    const n = 6;
    const k = 3;
    expectClose(r.transport!.cost, referenceCost(Float64Array.from(X.flat()), D, r.keptIdx, 2), 1e-6, 1e-6, 'cost p=2');
    const total = r.importance.reduce((s, v) => s + v, 0);
    const keptTotal = r.keptIdx.reduce((s, i) => s + r.importance[i], 0);
    const plan = r.transport!.plan;
    expectClose(Array.from({ length: n }, (_, i) => plan[i * k] + plan[i * k + 1] + plan[i * k + 2]), Array.from(r.importance, (v) => v / total), 1e-12, 0, 'source marginal');
    expectClose(Array.from({ length: k }, (_, j) => Array.from({ length: n }, (_, i) => plan[i * k + j]).reduce((s, v) => s + v)), r.keptIdx.map((i) => r.importance[i] / keptTotal), 1e-12, 0, 'target marginal');
    expectClose(r.map, referenceMap(plan, n, k), 1e-12, 0, 'map');
    m.dispose();
  });

  it('Intra-Fusion with Sinkhorn: the entropic plan of the group, and a warning when it does not converge', async () => {
    const m = tiny();
    const X = (await slices(dependencyGroups(m)[1])).reduce((acc, layer) => acc.map((row, c) => row.concat(layer[c])), new Array(6).fill(0).map(() => [] as number[]));
    const reg = 0.5;
    const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], optimalTransport: new OptimalTransport({ solver: 'sinkhorn', reg, sinkhorn: { tol: 1e-6, maxIter: 5000 } }) });
    const cost = referenceCost(Float64Array.from(X.flat()), X[0].length, r.keptIdx, 1);
    expect(r.transport!.converged).toBe(true);
    expect(r.transport!.iterations).toBeGreaterThan(1);
    expectClose(r.transport!.plan, referenceSinkhorn(new Array(6).fill(1 / 6), new Array(3).fill(1 / 3), cost, reg), 1e-5, 0, 'sinkhorn plan');
    m.dispose();

    const messages: string[] = [];
    const short = tiny();
    const [s] = await prune(short, {
      importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], onProgress: (msg) => messages.push(msg),
      optimalTransport: new OptimalTransport({ solver: 'sinkhorn', reg: 0.01, sinkhorn: { tol: 1e-9, maxIter: 2 } }),
    });
    expect(s.transport!.converged).toBe(false);
    expect(s.transport!.marginalError).toBeGreaterThan(1e-9);
    expect(messages.some((msg) => /^warning: Sinkhorn stopped at 2 iterations for group 1/.test(msg))).toBe(true);
    short.dispose();
  });

  it('bad options are ArgumentErrors', async () => {
    const m = tiny();
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 1.2 })).rejects.toThrow(ArgumentError);
    await expect(prune(m, { importanceCriteria: 'nope', sparsity: 0.5 })).rejects.toThrow(ArgumentError);
    await expect(prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [3] })).rejects.toThrow(ArgumentError);
    await expect(groupImportance(m, dependencyGroups(m)[0], 'taylor')).rejects.toThrow(ArgumentError);
    m.dispose();
  });
});

describe('taylor and chip against direct computations', () => {
  const normalization: Normalization = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
  const train = syntheticSplit(24);
  const opts = (seed: number) => ({ data: { train, normalization }, batches: 2, batchSize: 8, random: seededRandom(seed) });
  /** The batches importance draws: the same seeded shuffle and augmentation, replayed. */
  function replayBatches(seed: number) {
    const random = seededRandom(seed);
    const out: { x: Float64Array; y: Float32Array; n: number }[] = [];
    for (const idx of batchIndices(order(train.count, true, random), 8)) {
      if (out.length === 2) break;
      const { x, y } = makeBatch(train, idx, { normalization, augment: true, random });
      out.push({ x: Float64Array.from(x), y, n: idx.length });
    }
    return out;
  }

  async function params(m: ConvPoolLinear) {
    return { w: Float64Array.from(await m.conv.weight.data()), b: Float64Array.from(await m.conv.bias!.data()), L: Float64Array.from(await m.fc.weight.data()), lb: Float64Array.from(await m.fc.bias!.data()) };
  }

  it('taylor is |w * dL/dw| with dL/dw accumulated over the batches (gradients by hand, float64)', async () => {
    setInitSeed(12);
    const m = new ConvPoolLinear();
    const { w, b, L, lb } = await params(m);
    const gw = new Float64Array(w.length);
    const gL = new Float64Array(L.length);
    for (const { x, y, n } of replayBatches(7)) {
      const { y: z } = conv2d64(x, [n, 3, 32, 32], w, b, 4, 3, 1, 1);
      for (let s = 0; s < n; s++) {
        const pooled = Array.from({ length: 4 }, (_, o) => z.subarray((s * 4 + o) * 1024, (s * 4 + o + 1) * 1024).reduce((a, v) => a + Math.max(v, 0), 0) / 1024);
        const logits = Array.from({ length: 10 }, (_, j) => lb[j] + pooled.reduce((a, p, o) => a + L[j * 4 + o] * p, 0));
        const mx = Math.max(...logits);
        const e = logits.map((v) => Math.exp(v - mx));
        const sum = e.reduce((a, v) => a + v);
        const dlogit = e.map((v, j) => (v / sum - (j === y[s] ? 1 : 0)) / n); // mean cross-entropy over the batch
        for (let j = 0; j < 10; j++) for (let o = 0; o < 4; o++) gL[j * 4 + o] += dlogit[j] * pooled[o];
        for (let o = 0; o < 4; o++) {
          const dp = dlogit.reduce((a, d, j) => a + d * L[j * 4 + o], 0) / 1024;
          for (let c = 0; c < 3; c++) {
            for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
              let acc = 0;
              for (let py = 0; py < 32; py++) {
                const iy = py + ky - 1;
                if (iy < 0 || iy >= 32) continue;
                for (let px = 0; px < 32; px++) {
                  const ix = px + kx - 1;
                  if (ix >= 0 && ix < 32 && z[(s * 4 + o) * 1024 + py * 32 + px] > 0) acc += x[((s * 3 + c) * 32 + iy) * 32 + ix];
                }
              }
              gw[((o * 3 + c) * 3 + ky) * 3 + kx] += dp * acc;
            }
          }
        }
      }
    }
    const row = (o: number) => Array.from({ length: 27 }, (_, i) => Math.abs(w[o * 27 + i] * gw[o * 27 + i])).reduce((a, v) => a + v);
    const col = (o: number) => Array.from({ length: 10 }, (_, j) => Math.abs(L[j * 4 + o] * gL[j * 4 + o])).reduce((a, v) => a + v);
    const expected = byMean(Array.from({ length: 4 }, (_, o) => (row(o) + col(o)) / 2));
    const got = await groupImportance(m, dependencyGroups(m)[0], 'taylor', opts(7));
    expectClose(got, expected, 1e-4, 1e-3, 'taylor');
    m.dispose();
  }, 120_000);

  it('chip is the drop in the nuclear norm of each sample\'s conv output when the channel is zeroed (SVD by hand, float64)', async () => {
    setInitSeed(13);
    const m = new ConvPoolLinear();
    const { w, b } = await params(m);
    const expected = new Array(4).fill(0);
    const batches = replayBatches(8);
    for (const { x, n } of batches) {
      const { y: z } = conv2d64(x, [n, 3, 32, 32], w, b, 4, 3, 1, 1);
      for (let s = 0; s < n; s++) {
        const A = z.subarray(s * 4096, (s + 1) * 4096);
        const full = nuclearNorm(A, 4, 1024);
        for (let c = 0; c < 4; c++) {
          const zeroed = Float64Array.from(A);
          zeroed.fill(0, c * 1024, (c + 1) * 1024);
          expected[c] += (full - nuclearNorm(zeroed, 4, 1024)) / n / batches.length;
        }
      }
    }
    const got = await groupImportance(m, dependencyGroups(m)[0], 'chip', opts(8));
    expectClose(got, byMean(expected), 1e-4, 1e-3, 'chip');
    m.dispose();
  }, 120_000);
});
