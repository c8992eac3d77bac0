/**
 * Channel importance for a dependency group (spec section 3, Torch-Pruning's importance.py).
 *
 * Slices of channel c: the row W[c] of every layer whose out-channels the group prunes, and the column
 * W[:, c] (H*W columns after a flatten) of every layer whose in-channels it prunes. Biases are never used.
 * Per-layer score vectors are averaged over layers, then divided by their mean.
 *   l1      sum |slice|                       (BN skipped)
 *   l2      sum slice^2                       (BN skipped)
 *   taylor  sum |w * dL/dw|, gradients accumulated over `batches` calibration batches in eval mode
 *   lamp    ||slice||_2 plus |gamma_c| of each BN, then the LAMP step: sort descending, v_r / sum_{t<=r} v_t
 *           (`lampReferencePermutation` reproduces the reference's indexing bug, see the spec)
 *   chip    nuclear-norm drop of each conv output map when channel c is zeroed, averaged over samples
 *   random  uniform random scores
 */
import * as ag from '../tensor/autograd.js';
import { ArgumentError, UnsupportedError } from '../errors.js';
import { fromArray, tidy, type Tensor } from '../tensor/tensor.js';
import { batchIndices, order, type Cifar10Split } from '../data/cifar10.js';
import { cifar10Dataset, isDataset, type Dataset } from '../data/dataset.js';
import type { Normalization } from '../data/normalization.js';
import { Conv2d } from '../nn/layers.js';
import { addForwardHook, type Module } from '../nn/module.js';
import type { ExampleInput, Group, Prunable } from './graph.js';
import { layerKind, type ChannelAxis } from './registry.js';

export const CRITERIA = ['l1', 'l2', 'taylor', 'lamp', 'chip', 'random'] as const;
export type Criterion = (typeof CRITERIA)[number];

/** Calibration data for taylor and chip: any Dataset, or a CIFAR-10 split with its normalisation. */
export type ImportanceData = Dataset | { train: Cifar10Split; normalization: Normalization };

const calibrationDataset = (d: ImportanceData): Dataset => (isDataset(d) ? d : cifar10Dataset(d.train, d.normalization, 'CIFAR-10 train'));

export interface ImportanceOptions {
  /** Calibration data, needed by taylor and chip. */
  data?: ImportanceData;
  /** Batches for taylor and chip (reference: 5) and their size (reference: 128). */
  batches?: number;
  batchSize?: number;
  /** Calibration samples in all (default batches x batchSize, capped by the data): overrides `batches`. */
  samples?: number;
  random?: () => number;
  lampReferencePermutation?: boolean;
  /** The model's input shape; taylor and chip check that the calibration data has it. */
  inputShape?: ExampleInput;
  /** taylor: gradients already accumulated for the group's layers (prune() shares them across a batch of groups). */
  gradients?: Map<Prunable, Float32Array>;
}

/** The criterion if `name` is one of CRITERIA; an ArgumentError listing them otherwise. */
export function assertCriterion(name: string): Criterion {
  if (!(CRITERIA as readonly string[]).includes(name)) {
    throw new ArgumentError(`Unknown importance criterion "${name}"; choose one of: ${CRITERIA.join(', ')}.`);
  }
  return name as Criterion;
}

/** The weight axes a group's channel slices come from: producers' out-rows, then consumers' in-columns. */
function groupAxes(group: Group): { layer: Prunable; axis: ChannelAxis }[] {
  const axes: { layer: Prunable; axis: ChannelAxis }[] = [];
  for (const layer of group.producers) axes.push({ layer, axis: layerKind(layer)!.outAxes(layer)[0] });
  for (const { layer, factor } of group.consumers) {
    const axis = layerKind(layer)!.inAxis(layer, factor);
    if (axis) axes.push({ layer, axis });
  }
  return axes;
}

/** Calls f(flat index) over channel c's slice of a tensor viewed as [rows, n, inner]. */
function forSlice({ rows, n, inner }: ChannelAxis, c: number, f: (i: number) => void): void {
  for (let r = 0; r < rows; r++) {
    const base = (r * n + c) * inner;
    for (let t = 0; t < inner; t++) f(base + t);
  }
}

/**
 * OT features (spec section 4.1): row c concatenates, in group order, every producer row and consumer
 * column of channel c (folded weights; no bias, no BN parameters). Returns X (n x D, row-major).
 */
export async function groupFeatures(group: Group): Promise<{ X: Float64Array; D: number }> {
  const n = group.channels;
  const parts = await Promise.all(groupAxes(group).map(async ({ layer, axis }) => ({ axis, w: await layer.weight.data() })));
  const D = parts.reduce((d, { axis }) => d + axis.rows * axis.inner, 0);
  const X = new Float64Array(n * D);
  for (let c = 0; c < n; c++) {
    let at = c * D;
    for (const { axis, w } of parts) forSlice(axis, c, (i) => (X[at++] = w[i]));
  }
  return { X, D };
}

/** Per-layer score vectors over the group's slices, from a per-element score. */
async function sliceScores(group: Group, element: (layer: Prunable) => Promise<(v: number, i: number) => number>, reduce: 'sum' | 'l2'): Promise<Float64Array[]> {
  const n = group.channels;
  const vectors: Float64Array[] = [];
  for (const { layer, axis } of groupAxes(group)) {
    const w = await layer.weight.data();
    const f = await element(layer);
    const s = new Float64Array(n);
    for (let c = 0; c < n; c++) forSlice(axis, c, (i) => (s[c] += f(w[i], i)));
    vectors.push(reduce === 'l2' ? s.map(Math.sqrt) : s);
  }
  return vectors;
}

/** Mean over layers, then divided by the mean (Torch-Pruning's group_reduction="mean", normalizer="mean"). */
function reduceAndNormalise(vectors: Float64Array[], n: number): Float64Array {
  const out = new Float64Array(n);
  const used = vectors.filter((v) => v.length === n);
  if (!used.length) throw new UnsupportedError('importance: the group has no layer slices.');
  for (const v of used) for (let c = 0; c < n; c++) out[c] += v[c] / used.length;
  const mean = out.reduce((a, b) => a + b, 0) / n;
  if (mean > 0) for (let c = 0; c < n; c++) out[c] /= mean;
  return out;
}

/** The LAMP step over normalised scores. */
export function lampScores(v: ArrayLike<number>, referencePermutation = false): Float64Array {
  const n = v.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => v[b] - v[a] || a - b);
  const ratio = new Float64Array(n);
  let cum = 0;
  idx.forEach((i, r) => {
    cum += v[i];
    ratio[r] = cum > 0 ? v[i] / cum : 0;
  });
  const out = new Float64Array(n);
  // Correct: channel idx[r] gets ratio[r]. The reference returns ratio[idx[c]] for channel c instead.
  for (let r = 0; r < n; r++) {
    if (referencePermutation) out[r] = ratio[idx[r]];
    else out[idx[r]] = ratio[r];
  }
  return out;
}

/**
 * The calibration batches: the first `samples` (default `batches` (reference: 5) x `batchSize` (reference: 128))
 * of a shuffled order, with the dataset's training augmentation (CIFAR-10's flip and crop, as the reference).
 */
async function* calibrationBatches(data: ImportanceData, o: ImportanceOptions): AsyncGenerator<{ x: Tensor; y: Float32Array; count: number }> {
  const ds = calibrationDataset(data);
  const shape = o.inputShape ?? [3, 32, 32];
  if (ds.shape.join() !== shape.join()) {
    throw new ArgumentError(`taylor and chip: the calibration data ${ds.name} has samples of ${ds.shape.join('x')}, but the model's input is ${shape.join('x')}.`);
  }
  const batchSize = o.batchSize ?? 128;
  const samples = Math.min(o.samples ?? (o.batches ?? 5) * batchSize, ds.count);
  if (!(samples >= 1)) throw new ArgumentError(`taylor and chip need at least one calibration sample, got ${samples}.`);
  const random = o.random ?? Math.random;
  for (const idx of batchIndices(order(ds.count, true, random).subarray(0, samples), batchSize)) {
    const { x, y } = await ds.batch(idx, { augment: true, random });
    yield { x: fromArray(x, [idx.length, ...ds.shape]), y, count: idx.length };
  }
}

/** The layers whose weights a group's importance reads. */
export function groupLayers(group: Group): Prunable[] {
  return [...group.producers, ...group.consumers.map((c) => c.layer)];
}

/** Weight gradients of `layers` accumulated over the taylor batches (one backward pass per batch). */
export async function taylorGradients(model: Module, layers: Prunable[], o: ImportanceOptions): Promise<Map<Prunable, Float32Array>> {
  if (!o.data) throw new ArgumentError('The taylor criterion needs training data (gradients over training batches).');
  const wasTraining = model.training;
  model.eval(); // the reference traces in eval mode; gradients still flow through BN with running stats
  const params = model.parameters();
  ag.zeroGrad(params);
  try {
    for await (const { x, y, count } of calibrationBatches(o.data, o)) {
      // No zero_grad between batches: gradients accumulate, as in the reference.
      tidy(() => ag.backward(ag.crossEntropy(model.call(x), fromArray(y, [count]))));
      x.dispose();
    }
    const grads = new Map<Prunable, Float32Array>();
    for (const l of layers) grads.set(l, l.weight.grad ? await l.weight.grad.data() : new Float32Array(l.weight.size));
    return grads;
  } finally {
    ag.zeroGrad(params);
    model.train(wasTraining);
  }
}

/** Eigenvalues of a symmetric d x d matrix (cyclic Jacobi; d is at most a few hundred here). */
export function symmetricEigenvalues(input: Float64Array, d: number): Float64Array {
  const a = Float64Array.from(input);
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < d; p++) {
      diag += a[p * d + p] ** 2;
      for (let q = p + 1; q < d; q++) off += a[p * d + q] ** 2;
    }
    if (off <= 1e-22 * (diag + off) || off === 0) break;
    for (let p = 0; p < d - 1; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = a[k * d + p];
          const akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k];
          const aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Float64Array.from({ length: d }, (_, i) => a[i * d + i]);
}

function nuclearFromGram(g: Float64Array, d: number): number {
  return symmetricEigenvalues(g, d).reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
}

/** CHIP scores of one feature map A (C x HW): ||A||_* - ||A with row c zeroed||_* for every c. */
export function chipScores(A: Float32Array, C: number, HW: number): Float64Array {
  const out = new Float64Array(C);
  if (HW <= C) {
    // Gram over pixels (HW x HW); zeroing row c subtracts a_c a_c^T.
    const g = new Float64Array(HW * HW);
    for (let c = 0; c < C; c++) for (let p = 0; p < HW; p++) for (let q = 0; q < HW; q++) g[p * HW + q] += A[c * HW + p] * A[c * HW + q];
    const full = nuclearFromGram(g, HW);
    const gc = new Float64Array(HW * HW);
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < HW; p++) for (let q = 0; q < HW; q++) gc[p * HW + q] = g[p * HW + q] - A[c * HW + p] * A[c * HW + q];
      out[c] = full - nuclearFromGram(gc, HW);
    }
  } else {
    // Gram over channels (C x C); zeroing row c removes row and column c.
    const g = new Float64Array(C * C);
    for (let p = 0; p < C; p++) for (let q = p; q < C; q++) {
      let s = 0;
      for (let i = 0; i < HW; i++) s += A[p * HW + i] * A[q * HW + i];
      g[p * C + q] = g[q * C + p] = s;
    }
    const full = nuclearFromGram(g, C);
    const sub = new Float64Array((C - 1) * (C - 1));
    for (let c = 0; c < C; c++) {
      let w = 0;
      for (let p = 0; p < C; p++) {
        if (p === c) continue;
        for (let q = 0; q < C; q++) if (q !== c) sub[w++] = g[p * C + q];
      }
      out[c] = full - nuclearFromGram(sub, C - 1);
    }
  }
  return out;
}

async function chipImportance(model: Module, group: Group, o: ImportanceOptions): Promise<Float64Array> {
  if (!o.data) throw new ArgumentError('The chip criterion needs training data (feature maps of training batches).');
  const convs = group.producers.filter((p): p is Conv2d => p instanceof Conv2d);
  if (!convs.length) throw new UnsupportedError('chip: the group has no convolution whose feature maps could be scored.');
  const n = group.channels;
  const perLayer = convs.map(() => new Float64Array(n));
  const captured: { layer: number; t: Tensor }[] = [];
  const remove = addForwardHook((m, _x, y) => {
    const i = convs.indexOf(m as Conv2d);
    if (i >= 0) captured.push({ layer: i, t: y });
  });
  const wasTraining = model.training;
  model.eval();
  let batches = 0;
  try {
    for await (const { x } of calibrationBatches(o.data, o)) {
      batches++;
      captured.length = 0;
      const maps = ag.noGrad(() => tidy(() => {
        model.call(x);
        return captured.map((c) => c.t);
      }));
      x.dispose();
      const layersOfMaps = captured.map((c) => c.layer);
      for (let m = 0; m < maps.length; m++) {
        const [N, C, H, W] = maps[m].shape;
        const values = await maps[m].dataAndDispose();
        const batchMean = new Float64Array(C);
        for (let s = 0; s < N; s++) {
          const sc = chipScores(values.subarray(s * C * H * W, (s + 1) * C * H * W), C, H * W);
          for (let c = 0; c < C; c++) batchMean[c] += sc[c] / N;
        }
        // Mean over samples, then over batches.
        for (let c = 0; c < C; c++) perLayer[layersOfMaps[m]][c] += batchMean[c];
      }
    }
  } finally {
    remove();
    model.train(wasTraining);
  }
  return reduceAndNormalise(perLayer.map((v) => v.map((x) => x / batches)), n);
}

/** Importance of every channel of `group` (higher = more important). */
export async function groupImportance(model: Module, group: Group, criterion: Criterion, o: ImportanceOptions = {}): Promise<Float64Array> {
  const n = group.channels;
  switch (criterion) {
    case 'random': {
      const random = o.random ?? Math.random;
      return Float64Array.from({ length: n }, () => random());
    }
    case 'l1':
      return reduceAndNormalise(await sliceScores(group, async () => (v) => Math.abs(v), 'sum'), n);
    case 'l2':
      return reduceAndNormalise(await sliceScores(group, async () => (v) => v * v, 'sum'), n);
    case 'taylor': {
      const grads = o.gradients ?? await taylorGradients(model, groupLayers(group), o);
      return reduceAndNormalise(await sliceScores(group, async (layer) => {
        const g = grads.get(layer)!;
        return (v, i) => Math.abs(v * g[i]);
      }, 'sum'), n);
    }
    case 'lamp': {
      const vectors = await sliceScores(group, async () => (v) => v * v, 'l2');
      for (const bn of group.batchNorms) vectors.push(Float64Array.from(await bn.weight.data(), Math.abs));
      return lampScores(reduceAndNormalise(vectors, n), o.lampReferencePermutation ?? false);
    }
    case 'chip':
      return chipImportance(model, group, o);
  }
}

/** Indices of the `pruned` least important channels (ties: lower index first), and the kept ones sorted. */
export function splitByImportance(importance: ArrayLike<number>, kept: number): { pruned: number[]; keptIdx: number[] } {
  const n = importance.length;
  const byImportance = Array.from({ length: n }, (_, i) => i).sort((a, b) => importance[a] - importance[b] || a - b);
  const pruned = byImportance.slice(0, n - kept);
  const prunedSet = new Set(pruned);
  const keptIdx = Array.from({ length: n }, (_, i) => i).filter((i) => !prunedSet.has(i));
  return { pruned, keptIdx };
}
