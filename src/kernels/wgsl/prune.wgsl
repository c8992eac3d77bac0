// The pruner's kernels, on the weights where they live (only per-channel results are read back). A
// weight tensor is viewed as [rows, n, inner]: channel c owns t[:, c, :].
//   map_sparse    applies a k x n channel map in CSR form along the middle axis: out[r, j, t] = sum over
//                 row j's entries e of val[e] * W[r, col[e], t]. Only the map's non-zero entries are read,
//                 so a pruned channel's weights (even NaN or Inf) never reach a kept one through a zero; a
//                 selection entry (one 1 in its row) copies the weight (no 0 + 1 * w, which turns -0 into +0).
//   scale_channels  dst[r, c, t] = src[r, c, t] * scale[c] (batch-norm folding: a conv's rows times
//                 gamma / sqrt(var + eps))
//   channel_norm  importance slices: partial sums over t[:, c, :] of |w| (Q 1) or w^2 (Q 2)
//   gather        copies one weight axis into the OT feature matrix XT [D, nPad] (transposed: feature d of
//                 every channel is one contiguous row, so lanes owning consecutive channels load
//                 consecutive addresses); channel c goes to column index[c] (the cost's sources first)
//   normalize     divides every channel's column of XT by its L2 norm (0 stays 0)
//   cost          C[i, j] = ||x_i - x_{kept[j]}||_p for the first n columns i of XT (the sources) and every
//                 kept column j (n x k, row-major)
//
// The cost is register-blocked as gemm.wgsl: an invocation owns 4 channels (one vec4 of XT) x 16 kept
// channels (16 vec4 accumulators); the kept channels' values are the same for every lane of a workgroup,
// so they arrive through subgroupBroadcast (or, without subgroups, lane-uniform loads). Out-of-range
// channels are clamped (computed, never stored). float32 throughout, as the reference's torch.cdist.

#if SUBGROUPS
enable subgroups;
#endif

struct Params {
  n: u32, nPad: u32, k: u32, D: u32,
  // the [rows, n, inner] view; gather: the first feature row it fills
  rows: u32, inner: u32, d0: u32,
  p: f32,
  // map_sparse: invocations along x (over the rows * inner cells) and workgroups along y (over map rows)
  xCount: u32, yCount: u32,
}

override P_MODE: u32 = 1u;   // 1: L1, 2: L2, 0: any p >= 1 (pow)
override Q: u32 = 1u;        // channel_norm: 1 sums |w|, 2 sums w^2
const WG: u32 = 32u;          // cost: lanes per workgroup (COST_LANES in prune.ts)

#if COST
// The cost reads XT as vec4 (nPad is a multiple of 4): one aligned load per lane and feature.
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
fn srcAt(i: u32) -> f32 { return src4[i / 4u][i % 4u]; }
#else
@group(0) @binding(0) var<storage, read> src: array<f32>;
#endif
// map_sparse: the CSR structure (row offsets [k + 1], then each entry's column); gather: each channel's
// column of XT; cost: the kept channels' columns
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> mapValues: array<f32>;   // map_sparse; scale_channels: the scales
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

#if !COST
// x: a cell (r, t) of the view (consecutive lanes read consecutive addresses when inner > 1), y: map row
// j; both loop past the grid so any size fits one dispatch. Every lane of a workgroup walks the same
// entries (one j per workgroup row).
@compute @workgroup_size(64)
fn map_sparse(@builtin(global_invocation_id) gid: vec3<u32>) {
  let cells = p.rows * p.inner;
  for (var j = gid.y; j < p.k; j += p.yCount) {
    let first = index[j];
    let last = index[j + 1u];
    for (var cell = gid.x; cell < cells; cell += p.xCount) {
      let r = cell / p.inner;
      let t = cell - r * p.inner;
      let base = r * p.n * p.inner + t;
      var s = 0.0;
      if (first < last) {
        let v = mapValues[first];
        let w = src[base + index[p.k + 1u + first] * p.inner];
        s = select(v * w, w, v == 1.0);
        for (var e = first + 1u; e < last; e++) {
          s += mapValues[e] * src[base + index[p.k + 1u + e] * p.inner];
        }
      }
      dst[(r * p.k + j) * p.inner + t] = s;
    }
  }
}

// x: inner index t, y: channel c, z: row r; x and y loop past the grid (xCount, yCount invocations).
@compute @workgroup_size(64)
fn scale_channels(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var c = gid.y; c < p.n; c += p.yCount) {
    let s = mapValues[c];
    let base = (gid.z * p.n + c) * p.inner;
    for (var t = gid.x; t < p.inner; t += p.xCount) { dst[base + t] = src[base + t] * s; }
  }
}

// x: channel c, y: chunk of CHUNK consecutive inner indices, z: row r - d0 (one dispatch per block of
// rows). dst[(r * chunks + y) * n + c] = the chunk's sum of |w|^Q. Short float32 sums; the host adds the
// partial sums in float64.
const CHUNK: u32 = 32u;

@compute @workgroup_size(64)
fn channel_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.n) { return; }
  let r = p.d0 + gid.z;
  let chunks = (p.inner + CHUNK - 1u) / CHUNK;
  let first = (r * p.n + c) * p.inner;
  var s = 0.0;
  for (var t = gid.y * CHUNK; t < min(p.inner, (gid.y + 1u) * CHUNK); t++) {
    let v = src[first + t];
    if (Q == 1u) { s += abs(v); } else { s += v * v; }
  }
  dst[(r * chunks + gid.y) * p.n + c] = s;
}

// x: channel c, y: row r (+ z * 65535 past the per-dimension limit); each invocation copies the inner
// run of its (r, c): XT[d0 + r * inner + t, index[c]] = W[(r * n + c) * inner + t]. No integer division
// (a scalarised, slow instruction on CPU-backed WebGPU).
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = gid.y + gid.z * 65535u;
  if (c >= p.n || r >= p.rows) { return; }
  let first = (r * p.n + c) * p.inner;
  let row0 = p.d0 + r * p.inner;
  let col = index[c];
  for (var t = 0u; t < p.inner; t++) { dst[(row0 + t) * p.nPad + col] = src[first + t]; }
}

// One invocation per channel column; in place (dst is XT).
@compute @workgroup_size(64)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.n) { return; }
  var s = 0.0;
  for (var d = 0u; d < p.D; d++) {
    let v = dst[d * p.nPad + c];
    s += v * v;
  }
  let inv = select(0.0, inverseSqrt(s), s > 0.0);
  for (var d = 0u; d < p.D; d++) { dst[d * p.nPad + c] *= inv; }
}

#else

const ROWS: u32 = 16u;
var<private> acc: array<vec4<f32>, 16>;

fn term(x: vec4<f32>, y: f32) -> vec4<f32> {
  let d = abs(x - vec4<f32>(y));
  if (P_MODE == 1u) { return d; }
  if (P_MODE == 2u) { return d * d; }
  return pow(d, vec4<f32>(p.p));
}

#if SUBGROUPS
// Lane l loads kept channel j0 + l % 8 (y0) and j0 + 8 + l % 8 (y1); every lane then sees all 16.
fn step(x: vec4<f32>, y0: f32, y1: f32) {
  acc[0] += term(x, subgroupBroadcast(y0, 0u));
  acc[1] += term(x, subgroupBroadcast(y0, 1u));
  acc[2] += term(x, subgroupBroadcast(y0, 2u));
  acc[3] += term(x, subgroupBroadcast(y0, 3u));
  acc[4] += term(x, subgroupBroadcast(y0, 4u));
  acc[5] += term(x, subgroupBroadcast(y0, 5u));
  acc[6] += term(x, subgroupBroadcast(y0, 6u));
  acc[7] += term(x, subgroupBroadcast(y0, 7u));
  acc[8] += term(x, subgroupBroadcast(y1, 0u));
  acc[9] += term(x, subgroupBroadcast(y1, 1u));
  acc[10] += term(x, subgroupBroadcast(y1, 2u));
  acc[11] += term(x, subgroupBroadcast(y1, 3u));
  acc[12] += term(x, subgroupBroadcast(y1, 4u));
  acc[13] += term(x, subgroupBroadcast(y1, 5u));
  acc[14] += term(x, subgroupBroadcast(y1, 6u));
  acc[15] += term(x, subgroupBroadcast(y1, 7u));
}
#endif

fn finish(s: f32) -> f32 {
  if (P_MODE == 1u) { return s; }
  if (P_MODE == 2u) { return sqrt(s); }
  return pow(s, 1.0 / p.p);
}

// src4 = XT [D, nPad] (normalised), index = the k kept channels, dst = C [n, k].
@compute @workgroup_size(WG)
fn cost(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) lane: u32
#endif
        ) {
  let i0 = (wg.x * WG + lid.x) * 4u;
  let j0 = wg.y * ROWS;
  let i4 = min(i0, p.nPad - 4u) / 4u;   // nPad is a multiple of 4
#if SUBGROUPS
  let r = lane % 8u;
  let col0 = index[min(j0 + r, p.k - 1u)];
  let col1 = index[min(j0 + 8u + r, p.k - 1u)];
#else
  var cols: array<u32, 16>;
  for (var r = 0u; r < ROWS; r++) { cols[r] = index[min(j0 + r, p.k - 1u)]; }
#endif
  for (var d = 0u; d < p.D; d++) {
    let row = d * p.nPad;
    let x = src4[row / 4u + i4];
#if SUBGROUPS
    step(x, srcAt(row + col0), srcAt(row + col1));
#else
    for (var r = 0u; r < ROWS; r++) { acc[r] += term(x, srcAt(row + cols[r])); }
#endif
  }
  for (var r = 0u; r < ROWS; r++) {
    let j = j0 + r;
    if (j >= p.k) { continue; }
    let v = acc[r];
    let vals = array<f32, 4>(v.x, v.y, v.z, v.w);
    for (var q = 0u; q < 4u; q++) {
      let i = i0 + q;
      if (i < p.n) { dst[i * p.k + j] = finish(vals[q]); }
    }
  }
}
#endif
