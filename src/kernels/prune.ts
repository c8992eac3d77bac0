/**
 * Launchers for prune.wgsl, the pruner's kernels on the weights where they live: channel maps
 * (selections, fusion maps) applied to a layer's tensors, channel importance sums (l1, l2, lamp) and
 * Intra-Fusion's transport cost (features gathered and normalised on the device; only n x k returns).
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
import { preprocess } from './preprocess.js';
import source from './wgsl/prune.wgsl';

const codeCache = new Map<string, string>();
/** prune.wgsl with the cost variant (XT read as vec4, subgroups when the device has them) or the rest. */
function code(cost: boolean, subgroups: boolean): string {
  const key = `${cost}/${subgroups}`;
  let c = codeCache.get(key);
  if (!c) codeCache.set(key, (c = preprocess(source, { COST: cost, SUBGROUPS: subgroups && cost })));
  return c;
}

const params = (o: { n?: number; nPad?: number; k?: number; D?: number; rows?: number; inner?: number; d0?: number; p?: number; xCount?: number; yCount?: number }) =>
  new Params().u32(o.n ?? 0).u32(o.nPad ?? 0).u32(o.k ?? 0).u32(o.D ?? 0).u32(o.rows ?? 0).u32(o.inner ?? 0).u32(o.d0 ?? 0).f32(o.p ?? 1).u32(o.xCount ?? 0).u32(o.yCount ?? 0).build();

/** One weight tensor viewed as [rows, n, inner]: channel c owns t[:, c, :] (rows * inner features). */
export interface FeatureAxis {
  tensor: Tensor;
  rows: number;
  inner: number;
}

function checkView(what: string, a: FeatureAxis, n: number): void {
  if (a.rows * n * a.inner !== a.tensor.size) throw new ArgumentError(`${what}: a [${a.rows}, ${n}, ${a.inner}] view does not fit a tensor of ${a.tensor.size} elements.`);
}

/** Rows per dispatch dimension (gather's y; z counts the blocks beyond). */
const ROW_LIMIT = 65535;

/**
 * out[r, c, t] = x[r, c, t] * scale[c] for x viewed as [rows, n, inner], written to `out` (another tensor
 * of x's size): batch-norm folding scales a conv's output rows on the GPU, without a host round trip.
 */
export function scaleChannels(x: Tensor, out: Tensor, scale: Float32Array, rows: number, inner: number): void {
  const n = scale.length;
  if (rows * n * inner !== x.size || out.size !== x.size) throw new ArgumentError(`scaleChannels: a [${rows}, ${n}, ${inner}] view does not fit tensors of ${x.size} and ${out.size} elements.`);
  if (rows > ROW_LIMIT) throw new ArgumentError(`scaleChannels: ${rows} rows exceed one dispatch's ${ROW_LIMIT}.`);
  if (x.buffer === out.buffer) throw new ArgumentError('scaleChannels: the output must be another tensor than the input.');
  if (x.size === 0) return;
  const rt = getRuntime();
  const scales = fromArray(scale, [n]);
  const xCount = Math.min(Math.ceil(inner / 64), ROW_LIMIT) * 64;
  const yCount = Math.min(n, ROW_LIMIT);
  rt.dispatch(
    { name: 'prune', code: code(false, false), entryPoint: 'scale_channels' },
    [{ buffer: x.buffer, kind: 'read' }, { buffer: rt.dummy(0), kind: 'read' }, { buffer: scales.buffer, kind: 'read' }, { buffer: out.buffer, kind: 'write' }],
    params({ n, rows, inner, xCount, yCount }),
    [xCount / 64, yCount, rows],
  );
  scales.dispose();
}

/** Inner indices per partial sum in channel_norm (CHUNK in prune.wgsl). */
const NORM_CHUNK = 32;

/**
 * Per channel c of `axis.tensor` viewed as [rows, n, inner]: the partial sums of |w| (q 1) or w^2 (q 2)
 * over runs of 32 weights, [rows * ceil(inner / 32), n] on the GPU (channelNormsAdded sums them).
 */
export function channelNormParts(axis: FeatureAxis, n: number, q: 1 | 2): Tensor {
  checkView('channelNorms', axis, n);
  const rt = getRuntime();
  const chunks = Math.ceil(axis.inner / NORM_CHUNK);
  if (chunks > ROW_LIMIT) throw new ArgumentError(`channelNorms: ${axis.inner} weights per slice row exceed one dispatch (${ROW_LIMIT * NORM_CHUNK}).`);
  const parts = empty([axis.rows * chunks, n]);
  // One dispatch per block of up to 65,535 rows (z), the block's first row in d0.
  for (let r0 = 0; r0 < axis.rows; r0 += ROW_LIMIT) {
    rt.dispatch(
      { name: 'prune', code: code(false, false), entryPoint: 'channel_norm', constants: { Q: q } },
      [{ buffer: axis.tensor.buffer, kind: 'read' }, { buffer: rt.dummy(0), kind: 'read' }, { buffer: rt.dummy(1), kind: 'read' }, { buffer: parts.buffer, kind: 'write' }],
      params({ n, rows: axis.rows, inner: axis.inner, d0: r0 }),
      [Math.ceil(n / 64), chunks, Math.min(ROW_LIMIT, axis.rows - r0)],
    );
  }
  return parts;
}

/** The partial sums of channelNormParts (read back) added per channel in float64. */
export function channelNormsAdded(parts: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < parts.length; i += n) for (let c = 0; c < n; c++) out[c] += parts[i + c];
  return out;
}

/**
 * XT [D, nPad] on the GPU: feature d of channel c at d * nPad + column(c) (nPad = n rounded up to 4;
 * padding unset); `column` is the identity unless deviceFeatures was given an order.
 */
export interface DeviceFeatures {
  XT: Tensor;
  n: number;
  nPad: number;
  D: number;
  column(c: number): number;
}

/** u32 values on the GPU: their words travel as the bits of a Float32Array (fromArray copies its bytes as they are). */
const u32Tensor = (v: ArrayLike<number>) => fromArray(new Float32Array(Uint32Array.from(v).buffer), [v.length]);

/**
 * Concatenates the axes' channel slices into XT (feature order: axis by axis, then r, then t, as
 * groupFeatures on the host) and L2-normalises every channel's features. `order` (a permutation of the
 * n channels) puts channel order[q] in column q, so that the sources of a cost (lpCost's first rows) are
 * contiguous columns; default: channel c in column c. The caller disposes XT.
 */
export function deviceFeatures(n: number, axes: FeatureAxis[], order?: readonly number[]): DeviceFeatures {
  if (!(n >= 1)) throw new ArgumentError(`deviceFeatures: a group needs at least one channel, got ${n}.`);
  const D = axes.reduce((d, a) => d + a.rows * a.inner, 0);
  if (D < 1) throw new ArgumentError('deviceFeatures: the group has no features.');
  for (const a of axes) checkView('deviceFeatures', a, n);
  const columnOf = new Int32Array(n).fill(-1);
  if (order) {
    if (order.length !== n) throw new ArgumentError(`deviceFeatures: the order lists ${order.length} channels, the group has ${n}.`);
    order.forEach((c, q) => {
      if (!(Number.isInteger(c) && c >= 0 && c < n) || columnOf[c] >= 0) throw new ArgumentError(`deviceFeatures: the order is not a permutation of the ${n} channels (channel ${c} at position ${q}).`);
      columnOf[c] = q;
    });
  } else {
    columnOf.forEach((_, c) => (columnOf[c] = c));
  }
  const rt = getRuntime();
  const nPad = Math.ceil(n / 4) * 4;
  const XT = empty([D, nPad]);
  const columns = u32Tensor(columnOf);
  let d0 = 0;
  for (const a of axes) {
    rt.dispatch(
      { name: 'prune', code: code(false, false), entryPoint: 'gather' },
      [{ buffer: a.tensor.buffer, kind: 'read' }, { buffer: columns.buffer, kind: 'read' }, { buffer: rt.dummy(1), kind: 'read' }, { buffer: XT.buffer, kind: 'write' }],
      params({ n, nPad, D, rows: a.rows, inner: a.inner, d0 }),
      [Math.ceil(n / 64), Math.min(a.rows, ROW_LIMIT), Math.ceil(a.rows / ROW_LIMIT)],
    );
    d0 += a.rows * a.inner;
  }
  columns.dispose();
  rt.dispatch(
    { name: 'prune', code: code(false, false), entryPoint: 'normalize' },
    [{ buffer: rt.dummy(0), kind: 'read' }, { buffer: rt.dummy(1), kind: 'read' }, { buffer: rt.dummy(2), kind: 'read' }, { buffer: XT.buffer, kind: 'write' }],
    params({ n, nPad, D }),
    [Math.ceil(n / 64)],
  );
  return { XT, n, nPad, D, column: (c) => columnOf[c] };
}

/**
 * Lanes per cost workgroup (WG in prune.wgsl). One size for every group: small groups waste a few lanes,
 * and each other size would be one more pipeline to compile (seconds each on a CPU-backed adapter).
 */
const COST_LANES = 32;

/**
 * C[r, j] = ||x_{source r} - x_{kept[j]}||_p over normalised features (sources x k, float32, on the GPU).
 * The sources are the channels in XT's first `sources` columns (all n by default; see deviceFeatures'
 * order). p = 1 and p = 2 have their own fast paths; any other p >= 1 uses pow.
 */
export function lpCost(f: DeviceFeatures, keptIdx: readonly number[], p: number, sources = f.n): Tensor {
  const k = keptIdx.length;
  if (k < 1) throw new ArgumentError('lpCost: no kept channel.');
  for (const j of keptIdx) if (!(Number.isInteger(j) && j >= 0 && j < f.n)) throw new ArgumentError(`lpCost: kept channel ${j} is not one of the ${f.n} channels.`);
  if (!(p >= 1)) throw new ArgumentError(`lpCost: p must be >= 1, got ${p}.`);
  if (!(Number.isInteger(sources) && sources >= 1 && sources <= f.n)) throw new ArgumentError(`lpCost: sources must be 1..${f.n}, got ${sources}.`);
  const rt = getRuntime();
  const kept = u32Tensor(keptIdx.map((j) => f.column(j)));
  const C = empty([sources, k]);
  rt.dispatch(
    { name: 'prune', code: code(true, rt.subgroups), entryPoint: 'cost', constants: { P_MODE: p === 1 ? 1 : p === 2 ? 2 : 0 } },
    [{ buffer: f.XT.buffer, kind: 'read' }, { buffer: kept.buffer, kind: 'read' }, { buffer: rt.dummy(0), kind: 'read' }, { buffer: C.buffer, kind: 'write' }],
    // The kernel's n is its row count (the sources); XT's stride stays nPad.
    params({ n: sources, nPad: f.nPad, k, D: f.D, p }),
    [Math.ceil(Math.ceil(sources / 4) / COST_LANES), Math.ceil(k / 16)],
  );
  kept.dispose();
  return C;
}

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
  const csr = { structure: u32Tensor(structure).keep(), values: fromArray(values, [values.length]).keep() };
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
    { name: 'prune', code: code(false, false), entryPoint: 'map_sparse' },
    [{ buffer: x.buffer, kind: 'read' }, { buffer: map.csr!.structure.buffer, kind: 'read' }, { buffer: map.csr!.values.buffer, kind: 'read' }, { buffer: out.buffer, kind: 'write' }],
    params({ k: map.k, n: map.n, rows, inner, xCount: xGroups * 64, yCount: yGroups }),
    [xGroups, yGroups],
  );
  return out;
}
