/**
 * The pruner's kernels (prune.wgsl) against float64 on random shapes, and what they promise a user:
 * channel maps applied by gathering their entries (a selection copies the kept rows bit for bit, so a
 * NaN in a pruned filter never reaches a kept one); per-channel |w| and w^2 sums (l1, l2, lamp); the
 * transport cost from features gathered and L2-normalised on the device (odd channel counts, several
 * axes, p = 1, 2, 3, subgroup and portable paths); tracing that records no GPU work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMap, channelNormParts, channelNormsAdded, deviceFeatures, disposeMap, lpCost, scaleChannels, selectionMap, uploadMap } from '../src/kernels/prune.js';
import { createModel } from '../src/nn/models.js';
import { OptimalTransport } from '../src/ot/transport.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { AdaptiveAvgPool2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { dependencyGroups, foldBatchNorms, prune } from '../src/prune/index.js';
import { groupFeatureAxes } from '../src/prune/features.js';
import { assign, destroyRuntime, fromArray, getRuntime } from '../src/tensor/tensor.js';
import { expectClose, gpu } from './helpers.js';
import { referenceCost } from './method-reference.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const bits = (v: Float32Array) => new Uint32Array(v.buffer, v.byteOffset, v.length);

/** out[r, j, t] = sum_i M[j, i] x[r, i, t] in float64 (M rounded to float32, as uploaded). */
function mapAlongAxis(M: ArrayLike<number>, k: number, n: number, x: Float32Array, rows: number, inner: number): Float64Array {
  const out = new Float64Array(rows * k * inner);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) for (let i = 0; i < n; i++) {
    const m = Math.fround(M[j * n + i]);
    if (m !== 0) for (let t = 0; t < inner; t++) out[(r * k + j) * inner + t] += m * x[(r * n + i) * inner + t];
  }
  return out;
}

describe('channel maps on the GPU', () => {
  it('sparse maps (0-3 entries per row, empty rows), dense maps and selections equal the float64 product on 24 random shapes', async () => {
    for (let s = 0; s < 24; s++) {
      const r = seededRandom(700 + s);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const [n, rows, inner] = [int(1, 40), int(1, 6), int(1, 12)];
      const kind = ['sparse', 'dense', 'selection'][s % 3];
      let k = int(1, 40);
      let M = new Float64Array(k * n);
      if (kind === 'sparse') for (let j = 0; j < k; j++) for (let e = int(0, 3); e > 0; e--) M[j * n + int(0, n - 1)] = r() * 2 - 1;
      if (kind === 'dense') M = M.map(() => r());
      const kept = Array.from({ length: n }, (_, i) => i).filter(() => r() < 0.6);
      if (kind === 'selection') k = kept.length || 1;
      const w = Float32Array.from({ length: rows * n * inner }, () => r() * 2 - 1);
      const x = fromArray(w, [w.length]);
      const map = kind === 'selection' ? selectionMap(kept.length ? kept : [0], n) : uploadMap(M, k, n);
      const what = `seed ${700 + s} (${kind}), k ${k}, n ${n}, rows ${rows}, inner ${inner}`;
      // CSR for every selection and whenever at most one entry per row or a quarter of all is non-zero.
      const nnz = M.filter((v) => v !== 0).length;
      expect(map.csr !== null, `${what}: CSR`).toBe(kind === 'selection' || nnz <= Math.max(k, (k * n) / 4));
      const got = await applyMap(map, x, rows, inner).dataAndDispose();
      x.dispose();
      disposeMap(map);
      if (kind === 'selection') {
        const want = new Float32Array(rows * k * inner);
        (kept.length ? kept : [0]).forEach((i, j) => { for (let a = 0; a < rows; a++) want.set(w.subarray((a * n + i) * inner, (a * n + i + 1) * inner), (a * k + j) * inner); });
        expect(bits(got), what).toEqual(bits(want));
      } else {
        expectClose(got, mapAlongAxis(M, k, n, w, rows, inner), 1e-6, 1e-5, what);
      }
    }
    expect(() => uploadMap(new Float64Array(5), 2, 3)).toThrow(/5 values do not form a 2 x 3 map/);
  });

  it('default pruning with NaN weights: kept filters that do not read a NaN are the original bits (-0 and subnormals too)', async () => {
    setInitSeed(11);
    const net = () => new Sequential(new Conv2d(3, 8, 3, 1, 1, true), new ReLU(), new Conv2d(8, 6, 3, 1, 1, true), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(6, 4));
    // Group 1 = conv "0"'s 8 filters (read by conv "2"'s in-columns); random importance, seeded: the kept
    // channels do not depend on the weights, so NaN can be placed in a pruned and in a kept channel.
    const options = () => ({ importanceCriteria: 'random', sparsity: 0.5, groupIdxs: [1], random: seededRandom(4) });
    const probe = net();
    const [{ keptIdx, prunedIdx }] = await prune(probe, options());
    probe.dispose();
    const model = net();
    const [conv0, conv2] = [model.at(0) as Conv2d, model.at(2) as Conv2d];
    const w0 = await conv0.weight.data();
    const w2 = await conv2.weight.data();
    const per0 = 27; // 3 x 3 x 3 per filter of conv "0"
    const [pruned, keptNaN, keptExact] = [prunedIdx[0], keptIdx[0], keptIdx[1]];
    w0[pruned * per0 + 5] = NaN;
    w0[keptNaN * per0 + 1] = NaN;
    w0[keptExact * per0 + 2] = -0;
    w0[keptExact * per0 + 3] = 1e-40; // subnormal
    for (let o = 0; o < 6; o++) w2[(o * 8 + pruned) * 9 + 4] = NaN; // conv "2" reads the pruned channel: column dropped
    assign(conv0.weight, w0);
    assign(conv2.weight, w2);
    const [report] = await prune(model, options());
    expect(report.keptIdx).toEqual(keptIdx);
    const [p0, b0, p2] = await Promise.all([conv0.weight.data(), conv0.bias!.data(), conv2.weight.data()]);
    keptIdx.forEach((i, j) => {
      expect(bits(p0.subarray(j * per0, (j + 1) * per0)), `conv 0 filter ${i}`).toEqual(bits(w0.subarray(i * per0, (i + 1) * per0)));
      for (let o = 0; o < 6; o++) expect(bits(p2.subarray((o * 4 + j) * 9, (o * 4 + j + 1) * 9)), `conv 2 column ${i}`).toEqual(bits(w2.subarray((o * 8 + i) * 9, (o * 8 + i + 1) * 9)));
    });
    expect(Number.isNaN(p0[keptIdx.indexOf(keptNaN) * per0 + 1])).toBe(true);
    const nonFinite = [...p0, ...b0, ...p2].filter((v) => !Number.isFinite(v)).length;
    expect(nonFinite, 'only the kept NaN').toBe(1);
    model.dispose();
  });
});

/** Host features in groupFeatures' order: axis by axis, then r, then t. */
function hostFeatures(n: number, axes: { w: Float32Array; rows: number; inner: number }[]): { X: Float64Array; D: number } {
  const D = axes.reduce((d, a) => d + a.rows * a.inner, 0);
  const X = new Float64Array(n * D);
  for (let c = 0; c < n; c++) {
    let at = c * D;
    for (const { w, rows, inner } of axes) for (let r = 0; r < rows; r++) for (let t = 0; t < inner; t++) X[at++] = w[(r * n + c) * inner + t];
  }
  return { X, D };
}

/** n channels, 1-3 weight axes [rows, n, inner] whose channels have very different scales, k kept. */
function randomCase(seed: number) {
  const r = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const n = int(1, 90);
  const axes = Array.from({ length: int(1, 3) }, () => {
    const rows = int(1, 7);
    const inner = int(1, 40);
    const w = Float32Array.from({ length: rows * n * inner }, (_, i) => (r() * 2 - 1) * (1 + (Math.floor(i / inner) % n) % 5));
    return { w, rows, inner };
  });
  const k = int(1, n);
  const keptIdx = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5).slice(0, k).sort((a, b) => a - b);
  return { n, axes, keptIdx };
}

describe('channel scaling on the GPU (batch-norm folding)', () => {
  it('x[r, c, t] * scale[c] is the float32-rounded product on 12 random [rows, n, inner] shapes and past the dispatch limit; bad views are refused', async () => {
    for (let s = 0; s < 12; s++) {
      const r = seededRandom(1500 + s);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const [rows, n, inner] = [int(1, 5), int(1, 70), int(1, 150)];
      const w = Float32Array.from({ length: rows * n * inner }, () => r() * 4 - 2);
      const scale = Float32Array.from({ length: n }, () => r() * 3 - 1);
      const x = fromArray(w, [w.length]);
      const out = fromArray(new Float32Array(w.length), [w.length]);
      scaleChannels(x, out, scale, rows, inner);
      const got = await out.dataAndDispose();
      x.dispose();
      const want = w.map((v, i) => Math.fround(v * scale[Math.floor(i / inner) % n]));
      expect(Array.from(bits(got)), `seed ${1500 + s}, [${rows}, ${n}, ${inner}]`).toEqual(Array.from(bits(want)));
    }
    // More channels than one dispatch dimension (70,000 > 65,535): the kernel loops past its grid.
    const n = 70000;
    const big = fromArray(Float32Array.from({ length: 2 * n }, (_, i) => (i % 5) - 2), [2 * n]);
    const bigOut = fromArray(new Float32Array(2 * n), [2 * n]);
    const scale = Float32Array.from({ length: n }, (_, c) => (c % 7) - 3);
    scaleChannels(big, bigOut, scale, 1, 2);
    const got = await bigOut.dataAndDispose();
    big.dispose();
    expect(Array.from(got)).toEqual(Array.from({ length: 2 * n }, (_, i) => ((i % 5) - 2) * scale[Math.floor(i / 2)]));
    const x = fromArray(new Float32Array(6), [6]);
    expect(() => scaleChannels(x, x, new Float32Array(4), 1, 2)).toThrow(/does not fit/);
    expect(() => scaleChannels(x, x, new Float32Array(3), 1, 2)).toThrow(/another tensor than the input/);
    x.dispose();
  });
});

describe('channel importance sums on the GPU', () => {
  it('|w| and w^2 over [rows, n, inner] slices equal float64 on 16 random shapes', async () => {
    for (let s = 0; s < 16; s++) {
      const { n, axes } = randomCase(900 + s);
      const { w, rows, inner } = axes[0];
      const q = (1 + (s % 2)) as 1 | 2;
      const t = fromArray(w, [w.length]);
      const got = channelNormsAdded(await channelNormParts({ tensor: t, rows, inner }, n, q).dataAndDispose(), n);
      t.dispose();
      const want = new Float64Array(n);
      for (let a = 0; a < rows; a++) for (let c = 0; c < n; c++) for (let u = 0; u < inner; u++) want[c] += Math.abs(w[(a * n + c) * inner + u]) ** q;
      expectClose(got, want, 1e-5, 1e-5, `seed ${900 + s}, [${rows}, ${n}, ${inner}], q ${q}`);
    }
  });

  it('more rows than one dispatch takes (70,000 > 65,535: a Linear with 70,000 outputs) are all summed', async () => {
    const rows = 70000;
    const n = 3;
    const w = Float32Array.from({ length: rows * n }, (_, i) => ((i * 7919) % 13) - 6);
    const t = fromArray(w, [w.length]);
    const got = channelNormsAdded(await channelNormParts({ tensor: t, rows, inner: 1 }, n, 1).dataAndDispose(), n);
    t.dispose();
    const want = new Float64Array(n);
    w.forEach((v, i) => (want[i % n] += Math.abs(v)));
    expectClose(got, want, 0, 0, 'rows 70000');
  });
});

describe('OT cost on the GPU', () => {
  async function check(seed: number, p: number) {
    const { n, axes, keptIdx } = randomCase(seed);
    const tensors = axes.map((a) => fromArray(a.w, [a.w.length]));
    const f = deviceFeatures(n, tensors.map((tensor, i) => ({ tensor, rows: axes[i].rows, inner: axes[i].inner })));
    const cost = await lpCost(f, keptIdx, p).dataAndDispose();
    f.XT.dispose();
    tensors.forEach((t) => t.dispose());
    const { X, D } = hostFeatures(n, axes);
    expectClose(cost, referenceCost(X, D, keptIdx, p), 2e-5, 2e-5, `seed ${seed}, n ${n}, D ${D}, k ${keptIdx.length}, p ${p}`);
  }

  it('equals the float64 cost on 18 random shapes, p = 1, 2, 3, and on 6 more without subgroups', async () => {
    for (let s = 0; s < 18; s++) await check(100 + s, [1, 2, 3][s % 3]);
    const rt = getRuntime();
    const had = rt.subgroups;
    rt.subgroups = false;
    try {
      for (let s = 0; s < 6; s++) await check(500 + s, [1, 2, 3][s % 3]);
    } finally {
      rt.subgroups = had;
    }
  });

  it('sources in any order: XT columns permuted, the cost of the first m columns only, equal the float64 rows of those channels on 12 random shapes', async () => {
    for (let s = 0; s < 12; s++) {
      const { n, axes, keptIdx } = randomCase(1300 + s);
      const r = seededRandom(1400 + s);
      const order = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5);
      const m = 1 + Math.floor(r() * n);
      const p = [1, 2, 3][s % 3];
      const tensors = axes.map((a) => fromArray(a.w, [a.w.length]));
      const f = deviceFeatures(n, tensors.map((tensor, i) => ({ tensor, rows: axes[i].rows, inner: axes[i].inner })), order);
      const cost = await lpCost(f, keptIdx, p, m).dataAndDispose();
      f.XT.dispose();
      tensors.forEach((t) => t.dispose());
      const { X, D } = hostFeatures(n, axes);
      const full = referenceCost(X, D, keptIdx, p);
      const k = keptIdx.length;
      const want = order.slice(0, m).flatMap((c) => full.slice(c * k, (c + 1) * k));
      expectClose(cost, want, 2e-5, 2e-5, `seed ${1300 + s}, n ${n}, D ${D}, k ${k}, sources ${m}, p ${p}`);
    }
    const t = fromArray(new Float32Array(6), [6]);
    expect(() => deviceFeatures(3, [{ tensor: t, rows: 1, inner: 2 }], [0, 1, 1])).toThrow(/not a permutation/);
    expect(() => deviceFeatures(3, [{ tensor: t, rows: 1, inner: 2 }], [0, 1])).toThrow(/lists 2 channels/);
    const f = deviceFeatures(3, [{ tensor: t, rows: 1, inner: 2 }]);
    expect(() => lpCost(f, [0], 1, 4)).toThrow(/sources must be 1..3/);
    f.XT.dispose();
    t.dispose();
  });

  it('a VGG-sized group (n 512, D 6912, k 256) equals the float64 host cost; a zero channel costs as on the host; bad input is refused', async () => {
    const r = seededRandom(7);
    const n = 512;
    const axes = [{ rows: 1, inner: 2304 }, { rows: 512, inner: 9 }].map(({ rows, inner }) => ({ rows, inner, w: Float32Array.from({ length: rows * n * inner }, () => r() * 2 - 1) }));
    const keptIdx = Array.from({ length: 256 }, (_, j) => 2 * j + (j % 2));
    const ot = new OptimalTransport();
    const tensors = axes.map((a) => fromArray(a.w, [a.w.length]));
    const gpuCost = await ot.deviceCostMatrix(n, tensors.map((tensor, i) => ({ tensor, rows: axes[i].rows, inner: axes[i].inner })), keptIdx);
    tensors.forEach((t) => t.dispose());
    const { X, D } = hostFeatures(n, axes);
    expectClose(gpuCost, ot.costMatrix(X, D, keptIdx), 1e-5, 1e-5, 'n 512');

    const w = Float32Array.from([1, 2, 0, 0, 3, -1]); // 3 channels of 2 features: channel 1 is zero
    const t = fromArray(w, [6]);
    const ot2 = new OptimalTransport({ p: 2 });
    expectClose(await ot2.deviceCostMatrix(3, [{ tensor: t, rows: 1, inner: 2 }], [0, 2]), ot2.costMatrix(Float64Array.from(w), 2, [0, 2]), 1e-6, 1e-6, 'zero row');
    expect(() => deviceFeatures(3, [{ tensor: t, rows: 2, inner: 2 }])).toThrow(/does not fit/);
    const f = deviceFeatures(3, [{ tensor: t, rows: 1, inner: 2 }]);
    expect(() => lpCost(f, [3], 1)).toThrow(/not one of the 3 channels/);
    f.XT.dispose();
    t.dispose();
  });
});

describe('tracing', () => {
  it('finding the groups and batch-norm pairs of VGG11-BN records no GPU work; folding them one dispatch per pair', async () => {
    const m = createModel('vgg11_bn');
    const rt = getRuntime();
    const before = rt.dispatchCount;
    expect(dependencyGroups(m).length).toBe(8);
    expect(rt.dispatchCount - before).toBe(0);
    expect(await foldBatchNorms(m)).toBe(8);
    expect(rt.dispatchCount - before).toBe(8); // folding: one row scaling per pair, the weights stay on the GPU
    m.dispose();
  });
});

describe('where OT features are gathered', () => {
  it('on the GPU for whole layers, on the host when the feature matrix would take over half the largest buffer', async () => {
    // Group 0: 4 channels, read by a Linear over 128x128 maps: D = 256 * 16384 features of 4 channels, 67 MB.
    const big = new Sequential(new Conv2d(3, 4, 3, 1, 1, true), new ReLU(), new Flatten(), new Linear(4 * 128 * 128, 256));
    const small = new Sequential(new Conv2d(3, 4, 3, 1, 1, true), new ReLU(), new Flatten(), new Linear(4 * 16 * 16, 256));
    const [g] = dependencyGroups(big, { inputShape: [3, 128, 128] });
    const bytes = (27 + 256 * 128 * 128) * 4 * 4;
    const { maxStorageBufferBindingSize, maxBufferSize } = getRuntime().device.limits;
    expect(groupFeatureAxes(g) === null).toBe(bytes > Math.min(maxStorageBufferBindingSize, maxBufferSize) / 2); // null on lavapipe (128 MB)
    const [h] = dependencyGroups(small, { inputShape: [3, 16, 16] });
    expect(groupFeatureAxes(h)!.map((a) => [a.rows, a.inner])).toEqual([[1, 27], [256, 256]]);
    big.dispose();
    small.dispose();
  });
});
