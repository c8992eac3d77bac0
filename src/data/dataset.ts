/**
 * One small dataset interface for everything that feeds images to a model: evaluation, the taylor and chip
 * criteria, fine-tuning and the demo page. A dataset is a fixed list of samples; `batch(indices)` returns
 * them as model input (normalised float32, [n, C, H, W]) with their labels. Readers (CIFAR-10, an image
 * folder, a tensor file) live beside this file; this core is browser-safe.
 */
import { DataError } from '../errors.js';
import { batchIndices, makeBatch, order, CLASSES as CIFAR10_CLASSES, type Cifar10Split } from './cifar10.js';
import type { Normalization } from './normalization.js';

/** One sample's shape as the model sees it: channels, height, width. */
export type ImageShape = [number, number, number];

export interface Batch {
  /** [n, C, H, W] row-major, normalised as the model expects. */
  x: Float32Array;
  /** Class indices (as floats, what the cross-entropy kernel takes); -1 where a sample has no label. */
  y: Float32Array;
}

export interface BatchOptions {
  /** The dataset's training augmentation, where it has one (CIFAR-10: flip and padded crop); others ignore it. */
  augment?: boolean;
  random?: () => number;
}

export interface Dataset {
  /** For messages: the folder or file it came from. */
  readonly name: string;
  readonly count: number;
  readonly shape: ImageShape;
  /** Class names by label index, where the data names them (image folder sub-folders, CIFAR-10). */
  readonly classes?: readonly string[];
  /** True when samples are stored sorted by class (an image folder): a subset is then spread over the whole list. */
  readonly sortedByClass?: boolean;
  batch(indices: ArrayLike<number>, o?: BatchOptions): Promise<Batch>;
}

/** Whether a value is a Dataset (as opposed to a raw CIFAR-10 split). */
export function isDataset(d: unknown): d is Dataset {
  return typeof d === 'object' && d !== null && typeof (d as Dataset).batch === 'function' && Array.isArray((d as Dataset).shape);
}

/** CIFAR-10 (or any split in its binary layout) behind the interface. */
export function cifar10Dataset(split: Cifar10Split, normalization: Normalization, name = 'CIFAR-10'): Dataset {
  return {
    name, count: split.count, shape: [3, 32, 32], classes: CIFAR10_CLASSES,
    batch: async (indices, o = {}) => makeBatch(split, indices, { normalization: { mean: normalization.mean as [number, number, number], std: normalization.std as [number, number, number] }, augment: o.augment, random: o.random }),
  };
}

/**
 * Indices of the samples an evaluation of at most `limit` samples uses: the first `limit` in order, or, for data
 * sorted by class, `limit` evenly spaced ones so every class is represented.
 */
export function evaluationIndices(data: Dataset, limit?: number): Uint32Array {
  const n = Math.min(limit ?? data.count, data.count);
  if (n === data.count || !data.sortedByClass) return order(n, false);
  return Uint32Array.from({ length: n }, (_, i) => Math.floor((i * data.count) / n));
}

/** A view of the first samples of `evaluationIndices(data, limit)` as a dataset of its own. */
export function evaluationSubset(data: Dataset, limit: number): Dataset {
  if (limit >= data.count) return data;
  const idx = evaluationIndices(data, limit);
  return {
    name: `${data.name} (${idx.length} of ${data.count})`, count: idx.length, shape: data.shape, classes: data.classes,
    batch: (indices, o) => data.batch(Array.from(indices, (i) => {
      if (!(i >= 0 && i < idx.length)) throw new DataError(`Sample index ${i} is outside the subset (${idx.length} samples).`);
      return idx[i];
    }), o),
  };
}

/** Batches over `indices` (default: all samples in order); the last one may be short. */
export async function* batches(data: Dataset, o: BatchOptions & { batchSize: number; indices?: Uint32Array }): AsyncGenerator<Batch & { count: number; indices: Uint32Array }> {
  for (const idx of batchIndices(o.indices ?? order(data.count, false), o.batchSize)) {
    const b = await data.batch(idx, o);
    yield { ...b, count: idx.length, indices: idx };
  }
}
