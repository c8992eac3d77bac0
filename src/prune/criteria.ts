/**
 * Channel importance for a dependency group (spec section 3, Torch-Pruning's importance.py).
 *
 * Slices of channel c (features.ts): the row W[c] of every producer and the column W[:, c] of every
 * consumer. Per-layer score vectors are averaged over layers, then divided by their mean.
 *   l1      sum |slice|                       (BN skipped)
 *   l2      sum slice^2                       (BN skipped)
 *   taylor  sum |w * dL/dw|, gradients accumulated over `batches` calibration batches in eval mode (taylor.ts)
 *   lamp    ||slice||_2 plus |gamma_c| of each BN, then the LAMP step: sort descending, v_r / sum_{t<=r} v_t
 *           (`lampReferencePermutation` reproduces the reference's indexing bug, see the spec)
 *   chip    nuclear-norm drop of each conv output map when channel c is zeroed, averaged over samples (chip.ts)
 *   random  uniform random scores
 * l1, l2 and lamp sum their slices on the GPU (kernels/prune.ts: partial sums of 32 weights in float32,
 * as the reference's torch, added in float64; n numbers per layer come back, not the weights).
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { channelNormParts, channelNormsAdded } from '../kernels/prune.js';
import type { Prunable } from '../nn/kinds.js';
import type { Module } from '../nn/module.js';
import { chipImportance } from './chip.js';
import { forSlice, groupAxes, groupLayers } from './features.js';
import type { Group } from './groups.js';
import { taylorGradients } from './taylor.js';
import type { ImportanceOptions } from './calibration.js';

export const CRITERIA = ['l1', 'l2', 'taylor', 'lamp', 'chip', 'random'] as const;
export type Criterion = (typeof CRITERIA)[number];

/** The criterion if `name` is one of CRITERIA; an ArgumentError listing them otherwise. */
export function assertCriterion(name: string): Criterion {
  if (!(CRITERIA as readonly string[]).includes(name)) {
    throw new ArgumentError(`Unknown importance criterion "${name}"; choose one of: ${CRITERIA.join(', ')}.`);
  }
  return name as Criterion;
}

/** Per-layer score vectors over the group's slices, from a per-element score. */
async function sliceScores(group: Group, element: (layer: Prunable) => Promise<(v: number, i: number) => number>, reduce: 'sum' | 'l2'): Promise<Float64Array[]> {
  const n = group.channels;
  const vectors: Float64Array[] = [];
  for (const { layer, axis, channel } of groupAxes(group)) {
    const w = await layer.weight.data();
    const f = await element(layer);
    const s = new Float64Array(n);
    for (let c = 0; c < n; c++) forSlice(axis, channel(c), (i) => (s[c] += f(w[i], i)));
    vectors.push(reduce === 'l2' ? s.map(Math.sqrt) : s);
  }
  return vectors;
}

/** sliceScores of |w| (q 1) or w^2 (q 2) on the GPU, every layer's partial sums read back in one flush. */
async function deviceSliceScores(group: Group, q: 1 | 2, reduce: 'sum' | 'l2'): Promise<Float64Array[]> {
  const n = group.channels;
  const axes = groupAxes(group).map(({ layer, axis, channel }) => ({ axis, channel, parts: channelNormParts({ tensor: layer.weight, rows: axis.rows, inner: axis.inner }, axis.n, q) }));
  const read = await Promise.all(axes.map((a) => a.parts.dataAndDispose()));
  return axes.map(({ axis, channel }, i) => {
    const all = channelNormsAdded(read[i], axis.n);
    const s = Float64Array.from({ length: n }, (_, c) => all[channel(c)]);
    return reduce === 'l2' ? s.map(Math.sqrt) : s;
  });
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

/** Importance of every channel of `group` (higher = more important). */
export async function groupImportance(model: Module, group: Group, criterion: Criterion, o: ImportanceOptions = {}): Promise<Float64Array> {
  const n = group.channels;
  switch (criterion) {
    case 'random': {
      const random = o.random ?? Math.random;
      return Float64Array.from({ length: n }, () => random());
    }
    case 'l1':
      return reduceAndNormalise(await deviceSliceScores(group, 1, 'sum'), n);
    case 'l2':
      return reduceAndNormalise(await deviceSliceScores(group, 2, 'sum'), n);
    case 'taylor': {
      const grads = o.gradients ?? await taylorGradients(model, groupLayers(group), o);
      return reduceAndNormalise(await sliceScores(group, async (layer) => {
        const g = grads.get(layer)!;
        return (v, i) => Math.abs(v * g[i]);
      }, 'sum'), n);
    }
    case 'lamp': {
      const vectors = await deviceSliceScores(group, 2, 'l2');
      for (const { layer, offset } of group.normSlots) vectors.push(Float64Array.from((await layer.weight.data()).subarray(offset, offset + n), Math.abs));
      return lampScores(reduceAndNormalise(vectors, n), o.lampReferencePermutation ?? false);
    }
    case 'chip':
      return reduceAndNormalise(await chipImportance(model, group, o), n);
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
