/**
 * CIFAR-10 in the official binary layout: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G,
 * 1024 B, row-major 32x32). Parsing, normalisation and augmentation run on the CPU in plain loops
 * (a 128-image batch takes a few milliseconds), in Node and in browsers.
 */

import { DataError } from '../errors.js';
import type { Normalization } from './normalization.js';

export { DataError };
export { CIFAR10_STATS, IMAGENET_STATS, parseNormalization, type Normalization } from './normalization.js';

export const RECORD_BYTES = 3073;
export const IMAGE_BYTES = 3072;
export const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

export interface Cifar10Split {
  /** count * 3072 bytes, CHW per image. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

/** Parses and concatenates binary batch files. */
export function parseCifarBatches(files: { name: string; bytes: Uint8Array }[]): Cifar10Split {
  let count = 0;
  for (const f of files) {
    if (f.bytes.length === 0 || f.bytes.length % RECORD_BYTES !== 0) {
      throw new DataError(`${f.name}: ${f.bytes.length} bytes is not a whole number of ${RECORD_BYTES}-byte CIFAR-10 records.`);
    }
    count += f.bytes.length / RECORD_BYTES;
  }
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let i = 0;
  for (const f of files) {
    for (let at = 0; at < f.bytes.length; at += RECORD_BYTES, i++) {
      const label = f.bytes[at];
      if (label > 9) throw new DataError(`${f.name}: record ${at / RECORD_BYTES} has label ${label}; CIFAR-10 labels are 0-9.`);
      labels[i] = label;
      images.set(f.bytes.subarray(at + 1, at + RECORD_BYTES), i * IMAGE_BYTES);
    }
  }
  return { images, labels, count };
}

/** The first `n` images of a split (a view, no copy). */
export function subset(split: Cifar10Split, n: number): Cifar10Split {
  const count = Math.min(n, split.count);
  return { images: split.images.subarray(0, count * IMAGE_BYTES), labels: split.labels.subarray(0, count), count };
}

export interface BatchOptions {
  normalization: Normalization;
  /** Random horizontal flip, then random crop 32 with zero padding 4 (torchvision's order). */
  augment?: boolean;
  random?: () => number;
}

/**
 * Builds one batch: x as [B, 3, 32, 32] floats (x/255 normalised per channel), y as float class ids.
 * Padding pixels are black before normalisation, as torchvision pads the image before ToTensor.
 */
export function makeBatch(split: Cifar10Split, indices: ArrayLike<number>, o: BatchOptions): { x: Float32Array; y: Float32Array } {
  const B = indices.length;
  const x = new Float32Array(B * IMAGE_BYTES);
  const y = new Float32Array(B);
  const random = o.random ?? Math.random;
  const scale = o.normalization.std.map((s) => 1 / (255 * s));
  const shift = o.normalization.mean.map((m, c) => -m / o.normalization.std[c]);
  for (let b = 0; b < B; b++) {
    const idx = indices[b];
    if (!(idx >= 0 && idx < split.count)) throw new DataError(`Image index ${idx} is outside the split (${split.count} images).`);
    y[b] = split.labels[idx];
    const src = split.images.subarray(idx * IMAGE_BYTES, (idx + 1) * IMAGE_BYTES);
    const dst = b * IMAGE_BYTES;
    if (!o.augment) {
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < 1024; p++) x[dst + c * 1024 + p] = src[c * 1024 + p] * scale[c] + shift[c];
      }
      continue;
    }
    const flip = random() < 0.5;
    const dy = Math.floor(random() * 9) - 4;
    const dx = Math.floor(random() * 9) - 4;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 32; i++) {
        const sy = i + dy;
        for (let j = 0; j < 32; j++) {
          const sxc = j + dx; // column in the flipped image
          const inside = sy >= 0 && sy < 32 && sxc >= 0 && sxc < 32;
          const sx = flip ? 31 - sxc : sxc;
          const v = inside ? src[c * 1024 + sy * 32 + sx] : 0;
          x[dst + c * 1024 + i * 32 + j] = v * scale[c] + shift[c];
        }
      }
    }
  }
  return { x, y };
}

/** A permutation of 0..n-1 (Fisher-Yates) or the identity. */
export function order(n: number, shuffle: boolean, random: () => number = Math.random): Uint32Array {
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  if (shuffle) {
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
  }
  return idx;
}

/** Batches of indices over an order; the last one may be short (as PyTorch's DataLoader by default). */
export function* batchIndices(idx: Uint32Array, batchSize: number): Generator<Uint32Array> {
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new DataError(`batch size must be a positive integer, got ${batchSize}.`);
  for (let at = 0; at < idx.length; at += batchSize) yield idx.subarray(at, Math.min(at + batchSize, idx.length));
}
