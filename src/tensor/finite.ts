import { DataError } from '../errors.js';

/**
 * Refuses weights holding NaN or infinity (unless allowed), naming the file, the tensor and the first bad
 * index: one NaN weight otherwise spreads silently through pruning and evaluation.
 */
export function checkFinite(values: ArrayLike<number>, name: string, source: string, allow = false): void {
  if (allow) return;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new DataError(`${source}: tensor "${name}" holds ${values[i]} at index ${i} (non-finite weights; allowNonFinite / --allow-non-finite loads them anyway).`);
    }
  }
}
