/**
 * Groups pruned in equal blocks (a grouped conv reads or writes them, Torch-Pruning's channel groups):
 * channel c of block b is channel b * n / G + c. The choice is made on the block-reduced channels (the
 * importance averaged over blocks, features concatenated over blocks) and the same channels go in every
 * block, so each conv group keeps the same width; the k' x n' map becomes block-diagonal, one copy per block.
 */

/** Mean over the G blocks: n values -> n / G. */
export function meanOverBlocks(v: ArrayLike<number>, blocks: number): Float64Array {
  const m = v.length / blocks;
  const out = new Float64Array(m);
  for (let b = 0; b < blocks; b++) for (let c = 0; c < m; c++) out[c] += v[b * m + c] / blocks;
  return out;
}

/** Block-reduced indices in every block: [c] -> [c, m + c, 2m + c, ...], sorted. */
export function indicesInEveryBlock(idx: number[], m: number, blocks: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < blocks; b++) for (const c of idx) out.push(b * m + c);
  return out;
}

/** Features of the block-reduced channel c: the rows of c in every block, concatenated (n x D -> n/G x G*D). */
export function featuresOverBlocks(X: Float64Array, D: number, blocks: number): { X: Float64Array; D: number } {
  const m = X.length / D / blocks;
  const out = new Float64Array(X.length);
  for (let c = 0; c < m; c++) for (let b = 0; b < blocks; b++) out.set(X.subarray((b * m + c) * D, (b * m + c + 1) * D), (c * blocks + b) * D);
  return { X: out, D: D * blocks };
}

/** The k' x n' map repeated on the diagonal: (G k') x (G n'). */
export function blockDiagonal(map: Float64Array, k: number, m: number, blocks: number): Float64Array {
  const n = m * blocks;
  const out = new Float64Array(k * blocks * n);
  for (let b = 0; b < blocks; b++) for (let j = 0; j < k; j++) out.set(map.subarray(j * m, (j + 1) * m), (b * k + j) * n + b * m);
  return out;
}
