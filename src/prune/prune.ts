/**
 * Structured pruning and Intra-Fusion (spec sections 1-4), mirroring the reference's
 * `MetaPruner(model, importance, pruning_ratio, optimal_transport, dimensionality_preserving).step(group_idxs)`:
 *
 *   1. fold every batch-norm into its conv (always, for default pruning and Intra-Fusion alike);
 *   2. for each requested group, in order and on the weights earlier groups already changed:
 *      keep k = floor(n * (1 - sparsity)) channels, prune the n - k least important;
 *   3. build the k x n map M: a 0/1 selection of the kept channels (default pruning), or the
 *      optimal-transport fusion map (Intra-Fusion, when `optimalTransport` is given);
 *   4. apply M to every layer of the group: producers W' = M W and b' = M b, consumers W'[:, j] =
 *      sum_i M[j, i] W[:, i], batch-norms index-selected (they are the identity after folding).
 *
 * The model is changed in place; reload or rebuild it to prune again from the original weights.
 */
import { matmul } from '../kernels/gemm.js';
import { ArgumentError } from '../errors.js';
import { fromArray, Tensor, tidy } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d, Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { OptimalTransport } from '../ot/transport.js';
import { foldBatchNorms } from './fold.js';
import { dependencyGroups, type Group } from './graph.js';
import { assertCriterion, groupFeatures, groupImportance, splitByImportance, type Criterion, type ImportanceOptions } from './importance.js';

export interface PruneOptions extends ImportanceOptions {
  importanceCriteria: Criterion | string;
  /** Fraction of each group's channels to remove, in [0, 1). */
  sparsity: number;
  /** Groups to prune (index 0 nearest the output); default: every group, one after another. */
  groupIdxs?: number[];
  /** Intra-Fusion when given; default pruning otherwise. */
  optimalTransport?: OptimalTransport | null;
  /** Keep layer shapes: zero pruned rows/columns (default) or place fused rows at the kept indices (IF). */
  dimensionalityPreserving?: boolean;
  /** Fold batch-norms first (default true, as the reference always does). */
  foldBatchNorm?: boolean;
  onProgress?: (message: string) => void;
}

export interface PrunedGroup {
  index: number;
  description: string;
  channels: number;
  kept: number;
  keptIdx: number[];
  prunedIdx: number[];
  importance: Float64Array;
  /** k x n map that was applied. */
  map: Float64Array;
  /** Intra-Fusion only. */
  transport?: { plan: Float64Array; cost: Float64Array; iterations?: number; converged?: boolean; marginalError?: number };
  seconds: { importance: number; transport: number; apply: number };
}

export function keptCount(n: number, sparsity: number): number {
  return Math.floor(n * (1 - sparsity));
}

function validate(o: PruneOptions, groupCount: number): number[] {
  assertCriterion(o.importanceCriteria);
  if (!(o.sparsity >= 0 && o.sparsity < 1)) throw new ArgumentError(`prune: sparsity must be in [0, 1), got ${o.sparsity}.`);
  const idxs = o.groupIdxs ?? Array.from({ length: groupCount }, (_, i) => i);
  for (const g of idxs) {
    if (!Number.isInteger(g) || g < 0 || g >= groupCount) {
      throw new ArgumentError(`prune: group index ${g} does not exist; this model has groups 0..${groupCount - 1}.`);
    }
  }
  return idxs;
}

/**
 * M applied along the middle axis of t viewed as [rows, n, inner] (rows = 1: plain M @ t[n, inner]),
 * on the GPU, reshaped to `newShape`. The result is kept.
 */
function fuse(t: Tensor, M: Tensor, rows: number, n: number, inner: number, newShape: number[]): Tensor {
  return tidy(() => {
    const src = new Tensor(rows === 1 ? [n, inner] : [rows, n, inner], t);
    return new Tensor(newShape, matmul(M, src)).keep();
  });
}

async function applyMap(group: Group, map: Float64Array, keptIdx: number[], dimPreserving: boolean): Promise<void> {
  const n = group.channels;
  const k = keptIdx.length;
  // In dimensionality-preserving mode the map is n x n: the k rows at the kept indices, zeros elsewhere.
  const rowsOut = dimPreserving ? n : k;
  const full = new Float32Array(rowsOut * n);
  for (let j = 0; j < k; j++) {
    const row = dimPreserving ? keptIdx[j] : j;
    for (let i = 0; i < n; i++) full[row * n + i] = map[j * n + i];
  }
  const M = fromArray(full, [rowsOut, n]).keep();
  try {
    for (const layer of group.producers) {
      const w = layer.weight;
      const inner = w.size / n;
      layer.replaceTensor('weight', fuse(w, M, 1, n, inner, [rowsOut, ...w.shape.slice(1)]));
      if (layer.bias) layer.replaceTensor('bias', fuse(layer.bias, M, 1, n, 1, [rowsOut]));
      if (layer instanceof Conv2d) layer.outChannels = rowsOut;
      else layer.outFeatures = rowsOut;
    }
    for (const { layer, factor } of group.consumers) {
      const w = layer.weight;
      const rows = w.shape[0];
      const inner = layer instanceof Conv2d ? layer.kernelSize * layer.kernelSize : factor;
      const shape = layer instanceof Conv2d ? [rows, rowsOut, layer.kernelSize, layer.kernelSize] : [rows, rowsOut * factor];
      layer.replaceTensor('weight', fuse(w, M, rows, n, inner, shape));
      if (layer instanceof Conv2d) layer.inChannels = rowsOut;
      else if (layer instanceof Linear) layer.inFeatures = rowsOut * factor;
    }
    if (!dimPreserving) {
      for (const bn of group.batchNorms) await selectBatchNorm(bn, keptIdx);
    }
  } finally {
    M.dispose();
  }
}

async function selectBatchNorm(bn: BatchNorm2d, keptIdx: number[]): Promise<void> {
  for (const name of ['weight', 'bias', 'running_mean', 'running_var'] as const) {
    const values = await bn[name].data();
    bn.replaceTensor(name, fromArray(Float32Array.from(keptIdx, (i) => values[i]), [keptIdx.length]));
  }
  bn.numFeatures = keptIdx.length;
}

/** Prunes (or, with optimal transport, fuses) the requested groups of `model` in place. */
export async function prune(model: Module, o: PruneOptions): Promise<PrunedGroup[]> {
  const criterion = assertCriterion(o.importanceCriteria);
  const progress = o.onProgress ?? (() => {});
  let groups = dependencyGroups(model);
  const idxs = validate(o, groups.length);
  if (o.foldBatchNorm ?? true) {
    const folded = await foldBatchNorms(model);
    progress(`folded ${folded} batch-norms`);
  }
  const report: PrunedGroup[] = [];
  for (const g of idxs) {
    groups = dependencyGroups(model); // channel counts change as earlier groups are pruned
    const group = groups[g];
    const n = group.channels;
    const k = keptCount(n, o.sparsity);
    if (k < 1) throw new ArgumentError(`prune: sparsity ${o.sparsity} leaves no channel of group ${g} (${n} channels).`);
    const t0 = performance.now();
    const importance = await groupImportance(model, group, criterion, o);
    const { pruned, keptIdx } = splitByImportance(importance, k);
    const t1 = performance.now();
    let map: Float64Array;
    let transport: PrunedGroup['transport'];
    if (o.optimalTransport) {
      const { X, D } = await groupFeatures(group);
      const [m] = await o.optimalTransport.maps([{ X, D, keptIdx, importance }]);
      map = m.M;
      transport = { plan: m.plan, cost: m.cost, iterations: m.iterations, converged: m.converged, marginalError: m.marginalError };
      if (m.converged === false) progress(`warning: Sinkhorn stopped at ${m.iterations} iterations for group ${g} without reaching its marginal tolerance (error ${m.marginalError?.toExponential(2)})`);
    } else {
      map = new Float64Array(k * n);
      keptIdx.forEach((i, j) => (map[j * n + i] = 1));
    }
    const t2 = performance.now();
    await applyMap(group, map, keptIdx, o.dimensionalityPreserving ?? false);
    const t3 = performance.now();
    const description = group.describe();
    progress(`${o.optimalTransport ? 'fused' : 'pruned'} ${description}: kept ${k} of ${n}`);
    report.push({
      index: g, description, channels: n, kept: k, keptIdx, prunedIdx: pruned, importance, map, transport,
      seconds: { importance: (t1 - t0) / 1e3, transport: (t2 - t1) / 1e3, apply: (t3 - t2) / 1e3 },
    });
  }
  return report;
}
