/**
 * Launchers for prune.wgsl: channel maps (selections, fusion maps) applied to a layer's tensors.
 *
 * A map is k x n: output channel j = sum_i M[j, i] * channel i. Selections (default pruning) have one 1
 * per row, exact transport maps about n + k non-zero entries, folding maps n: they go to the GPU in CSR
 * form and only their entries are read (a gather), so a pruned channel never reaches a kept one through
 * a zero (0 x NaN = NaN) and a selected row keeps its exact bits. Dense maps (Sinkhorn's) are applied
 * as one matmul, which is faster for them and where every output reads every input anyway.
 */
import { ArgumentError } from '../errors.js';
import { Params } from '../tensor/runtime.js';
import { empty, fromArray, getRuntime, Tensor, tidy } from '../tensor/tensor.js';
import { matmul } from './gemm.js';
import source from './wgsl/prune.wgsl';

/** A k x n channel map on the GPU: CSR (`structure`: u32 row offsets [k + 1] then columns; `values`) or dense. */
export interface DeviceMap {
  k: number;
  n: number;
  csr: { structure: Tensor; values: Tensor } | null;
  dense: Tensor | null;
}

/**
 * Uploads a k x n map (row-major). CSR when it has at most one entry per row on average or at most a
 * quarter of its entries non-zero (every selection is CSR); dense otherwise. The caller disposes it
 * (disposeMap); the tensors are kept out of any tidy scope.
 */
export function uploadMap(M: ArrayLike<number>, k: number, n: number): DeviceMap {
  if (!(Number.isInteger(k) && Number.isInteger(n) && k >= 1 && n >= 1) || M.length !== k * n) {
    throw new ArgumentError(`uploadMap: ${M.length} values do not form a ${k} x ${n} map.`);
  }
  let nnz = 0;
  for (let i = 0; i < k * n; i++) if (M[i] !== 0) nnz++;
  if (nnz > Math.max(k, (k * n) / 4)) {
    return { k, n, csr: null, dense: fromArray(M instanceof Float32Array ? M : Float32Array.from(M), [k, n]).keep() };
  }
  const structure = new Uint32Array(k + 1 + Math.max(nnz, 1));
  const values = new Float32Array(Math.max(nnz, 1));
  let e = 0;
  for (let j = 0; j < k; j++) {
    structure[j] = e;
    for (let i = 0; i < n; i++) {
      const v = M[j * n + i];
      if (v !== 0) {
        structure[k + 1 + e] = i;
        values[e++] = v;
      }
    }
  }
  structure[k] = e;
  // The u32 words travel as the bits of a Float32Array (fromArray copies a Float32Array's bytes as they are).
  const csr = { structure: fromArray(new Float32Array(structure.buffer), [structure.length]).keep(), values: fromArray(values, [values.length]).keep() };
  return { k, n, csr, dense: null };
}

/** The k x n selection of channels `keptIdx` (output j = channel keptIdx[j]), as a CSR map. */
export function selectionMap(keptIdx: readonly number[], n: number): DeviceMap {
  const M = new Float32Array(keptIdx.length * n);
  keptIdx.forEach((i, j) => {
    if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new ArgumentError(`selectionMap: channel ${i} is not one of the ${n} channels.`);
    M[j * n + i] = 1;
  });
  return uploadMap(M, keptIdx.length, n);
}

export function disposeMap(map: DeviceMap): void {
  for (const t of [map.csr?.structure, map.csr?.values, map.dense]) t?.dispose();
}

/** out [rows, k, inner] = the map applied along the middle axis of x viewed as [rows, n, inner]. */
export function applyMap(map: DeviceMap, x: Tensor, rows: number, inner: number): Tensor {
  if (rows * map.n * inner !== x.size) throw new ArgumentError(`applyMap: a [${rows}, ${map.n}, ${inner}] view does not fit a tensor of ${x.size} elements.`);
  if (map.dense) {
    const M = map.dense;
    return tidy(() => new Tensor([rows, map.k, inner], matmul(M, new Tensor(rows === 1 ? [map.n, inner] : [rows, map.n, inner], x))));
  }
  const rt = getRuntime();
  const out = empty([rows, map.k, inner]);
  const max = rt.device.limits.maxComputeWorkgroupsPerDimension;
  const xGroups = Math.min(Math.ceil((rows * inner) / 64), max);
  const yGroups = Math.min(map.k, max);
  rt.dispatch(
    { name: 'prune', code: source, entryPoint: 'map_sparse' },
    [{ buffer: x.buffer, kind: 'read' }, { buffer: map.csr!.structure.buffer, kind: 'read' }, { buffer: map.csr!.values.buffer, kind: 'read' }, { buffer: out.buffer, kind: 'write' }],
    new Params().u32(map.k).u32(map.n).u32(rows).u32(inner).u32(xGroups * 64).u32(yGroups).build(),
    [xGroups, yGroups],
  );
  return out;
}
