// GEMM family: C[M, N] = A[M, K] @ B[K, N] (+ bias), where A, B and C are views chosen by MODE:
//   MODE 0  matmul          A, B row-major (optionally transposed), batched over workgroup z
//   MODE 1  conv2d-like     A = weights, B = im2col(input) (implicit), C = output, N = batch*OH*OW.
//                           Forward: A = W [Co, Ci*KH*KW]. With FLIP_W it computes the input gradient
//                           of a stride-1 conv: dX = conv(dY, W transposed and rotated 180 degrees).
//   MODE 2  conv2d dX, any stride: gathers dY per input pixel (the general but slower path)
//   MODE 3  conv2d dW        A = dY viewed [Co, batch*OH*OW], B = im2col(X)^T, C = dW [Co, Ci*KH*KW]
//
// Grouped convolution (MODE 1-3): workgroup z is the group, and M, cin, cout count the channels of one
// group, so each group is its own GEMM inside one dispatch; tensors hold `groups` times those channels.
//
// Register blocking for CPU-backed WebGPU (lavapipe, SwiftShader), where an invocation is one SIMD lane
// and what costs is the number of per-lane (gathered) loads: an invocation owns 16 rows x 4 columns of C
// (sixteen vec4 accumulators), so each k step costs 4 gathered B values and 2 gathered A values for
// 64 FMAs. A reaches every lane through subgroupBroadcast (lane i loads rows i and 8 + i), or, without
// subgroups, through loads whose address is uniform across lanes. Nothing goes through workgroup
// memory: on a CPU it is the same memory, and barriers cost.
//
// Out-of-range rows and columns are clamped to valid addresses, computed, and never stored, so the inner
// loops carry no bounds checks.

#if SUBGROUPS
enable subgroups;
#endif

struct Params {
  M: u32, N: u32, K: u32,
  strideA: u32, strideB: u32, strideC: u32,   // MODE 0: per-batch element strides (0 broadcasts)
  // MODE 1-3: input [batch, cin, h, w], output [batch, cout, oh, ow] of the convolution being computed
  batch: u32, cin: u32, h: u32, w: u32,
  cout: u32, oh: u32, ow: u32,
  strideH: u32, strideW: u32,
  padT: u32, padL: u32,      // top and left padding; the bottom and right ones only shape oh and ow
  groups: u32,
}

override MODE: u32 = 0;
override TRANS_A: bool = false;   // MODE 0: A stored as [K, M]
override TRANS_B: bool = false;   // MODE 0: B stored as [N, K]
override HAS_BIAS: bool = false;  // MODE 0: bias[n]; MODE 1: bias[m]
override FLIP_W: bool = false;    // MODE 1: A[m, (c, ky, kx)] = W[c, m, KH-1-ky, KW-1-kx]
override KH: u32 = 3;             // MODE 1-3: kernel size, constant so the tap loops unroll
override KW: u32 = 3;
// Inference epilogue of a MODE 1 forward conv (eval mode: conv + batch-norm + ReLU + 2x2 max-pool as one
// dispatch). With BN_EVAL the bias binding holds [bias | mean | invstd | gamma | beta] per output channel
// (batchnorm.wgsl eval_table builds it) and the output is the eval batch-norm of conv + bias, computed
// exactly as batchnorm.wgsl's apply_main does. RELU then clamps as elementwise.wgsl's relu. With POOL2
// an invocation's 4 columns are one 2x2 window of the conv output (even OH and OW) and it stores their
// max as pool.wgsl's max_forward would. Each column's sum runs over k in the same order as without the
// epilogue, so the result equals the unfused layers' bit for bit.
override BN_EVAL: bool = false;
override RELU: bool = false;
override POOL2: bool = false;
override DH: u32 = 1;             // MODE 1-3: dilation, constant so tap offsets fold into the unrolled loops
override DW: u32 = 1;
override WG: u32 = 32;

const ROWS: u32 = 16u;

@group(0) @binding(0) var<storage, read> A: array<f32>;
#if VEC_B
// MODE 0 with N % 4 == 0 and B not transposed: an invocation's 4 columns are one aligned vec4.
@group(0) @binding(1) var<storage, read> B4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<private> acc: array<vec4<f32>, 16>;
var<private> lane: u32;

// ------------------------------------------------------------------ the k step

// Adds a[m0 + i] * b to row i for the 16 rows. a0 holds rows 0-7 and a1 rows 8-15, one per lane
// (subgroups), or the rows are fetched by `aRow` with lane-uniform addresses.
#if SUBGROUPS
fn step(a0: f32, a1: f32, b: vec4<f32>) {
  acc[0] += subgroupBroadcast(a0, 0u) * b;
  acc[1] += subgroupBroadcast(a0, 1u) * b;
  acc[2] += subgroupBroadcast(a0, 2u) * b;
  acc[3] += subgroupBroadcast(a0, 3u) * b;
  acc[4] += subgroupBroadcast(a0, 4u) * b;
  acc[5] += subgroupBroadcast(a0, 5u) * b;
  acc[6] += subgroupBroadcast(a0, 6u) * b;
  acc[7] += subgroupBroadcast(a0, 7u) * b;
  acc[8] += subgroupBroadcast(a1, 0u) * b;
  acc[9] += subgroupBroadcast(a1, 1u) * b;
  acc[10] += subgroupBroadcast(a1, 2u) * b;
  acc[11] += subgroupBroadcast(a1, 3u) * b;
  acc[12] += subgroupBroadcast(a1, 4u) * b;
  acc[13] += subgroupBroadcast(a1, 5u) * b;
  acc[14] += subgroupBroadcast(a1, 6u) * b;
  acc[15] += subgroupBroadcast(a1, 7u) * b;
}
#endif

// Element offset of A's row m (clamped into range) at reduction index k, for the current MODE;
// `batch` is the matmul batch (MODE 0) or the group (MODE 1-3). In MODE 1-2 k is split into
// (channel, tap); in MODE 0 and 3 `tap` is unused.
fn aIndex(batch: u32, m: u32, k: u32, tap: u32) -> u32 {
  let mc = min(m, p.M - 1u);
  if (MODE == 0u) {
    if (TRANS_A) { return batch * p.strideA + k * p.M + mc; }
    return batch * p.strideA + mc * p.K + k;
  }
  if (MODE == 1u) {
    // W[group's out channel, in channel within the group, tap]
    if (FLIP_W) { return ((batch * p.cin + k) * p.M + mc) * KH * KW + (KH * KW - 1u - tap); }
    return ((batch * p.M + mc) * p.cin + k) * KH * KW + tap;
  }
  if (MODE == 2u) {
    // A[ci, (co, tap)] = W[co, ci, tap]
    return ((batch * p.cout + k) * p.M + mc) * KH * KW + tap;
  }
  // MODE 3: k = (img, q) flattened by the caller into img * cout * groups * OHW + q
  return k + (batch * p.M + mc) * p.oh * p.ow;
}

fn accumulate(batch: u32, m0: u32, k: u32, tap: u32, b: vec4<f32>) {
#if SUBGROUPS
  let r = lane % 8u;
  step(A[aIndex(batch, m0 + r, k, tap)], A[aIndex(batch, m0 + 8u + r, k, tap)], b);
#else
  for (var i = 0u; i < ROWS; i++) {
    acc[i] += A[aIndex(batch, m0 + i, k, tap)] * b;
  }
#endif
}

// ------------------------------------------------------------------ MODE 0: matmul

fn bIndex0(batch: u32, k: u32, n: u32) -> u32 {
  if (TRANS_B) { return batch * p.strideB + n * p.K + k; }
  return batch * p.strideB + k * p.N + n;
}

fn loadB0(batch: u32, k: u32, n0: u32) -> vec4<f32> {
#if VEC_B
  return B4[bIndex0(batch, k, min(n0, p.N - 4u)) / 4u];
#else
  let last = p.N - 1u;
  return vec4<f32>(B[bIndex0(batch, k, min(n0, last))], B[bIndex0(batch, k, min(n0 + 1u, last))],
                   B[bIndex0(batch, k, min(n0 + 2u, last))], B[bIndex0(batch, k, min(n0 + 3u, last))]);
#endif
}

fn matmul(batch: u32, m0: u32, n0: u32) {
  var k = 0u;
  for (; k + 1u < p.K; k += 2u) {
    let b0 = loadB0(batch, k, n0);
    let b1 = loadB0(batch, k + 1u, n0);
    accumulate(batch, m0, k, 0u, b0);
    accumulate(batch, m0, k + 1u, 0u, b1);
  }
  if (k < p.K) { accumulate(batch, m0, k, 0u, loadB0(batch, k, n0)); }
}

#if !VEC_B
// ------------------------------------------------------------------ MODE 1: implicit-GEMM convolution

// One output column: its image offset (group's first channel) and which kernel rows and kernel columns
// fall inside the (zero-padded) input. A tap is valid when both its row and its column are: two masks
// of KH and KW bits instead of one of KH*KW bits, which would overflow a u32 beyond 5x5.
struct ConvCol { base: i32, rows: u32, cols: u32 }

fn convCol(group: u32, n: u32) -> ConvCol {
  let q = p.oh * p.ow;
  let nc = min(n, p.N - 1u);
  var img = nc / q;
  let r = nc - img * q;
  var oy = r / p.ow;
  var ox = r - oy * p.ow;
  if (POOL2) {
    // n = 4 * (pooled pixel) + window position; pooled pixels run over [img, OH / 2, OW / 2].
    let pw = p.ow / 2u;
    let pq = q / 4u;
    let pn = nc / 4u;
    let wpos = nc % 4u;
    img = pn / pq;
    let pr = pn - img * pq;
    let py = pr / pw;
    oy = 2u * py + wpos / 2u;
    ox = 2u * (pr - py * pw) + wpos % 2u;
  }
  let y0 = i32(oy * p.strideH) - i32(p.padT);
  let x0 = i32(ox * p.strideW) - i32(p.padL);
  var rows = 0u;
  for (var ky = 0u; ky < KH; ky++) {
    let y = y0 + i32(ky * DH);
    if (y >= 0 && y < i32(p.h)) { rows |= 1u << ky; }
  }
  var cols = 0u;
  for (var kx = 0u; kx < KW; kx++) {
    let x = x0 + i32(kx * DW);
    if (x >= 0 && x < i32(p.w)) { cols |= 1u << kx; }
  }
  let channel0 = (img * p.groups + group) * p.cin;
  return ConvCol(i32(channel0 * p.h * p.w) + y0 * i32(p.w) + x0, rows, cols);
}

fn tapValue(col: ConvCol, offset: i32, ky: u32, kx: u32) -> f32 {
  let valid = ((col.rows >> ky) & (col.cols >> kx) & 1u) != 0u;
  let v = B[u32(select(0, col.base + offset, valid))];
  return select(0.0, v, valid);
}

fn conv(group: u32, m0: u32, n0: u32) {
  let c0 = convCol(group, n0);
  let c1 = convCol(group, n0 + 1u);
  let c2 = convCol(group, n0 + 2u);
  let c3 = convCol(group, n0 + 3u);
  let plane = i32(p.h * p.w);
  for (var c = 0u; c < p.cin; c++) {
    for (var ky = 0u; ky < KH; ky++) {
      for (var kx = 0u; kx < KW; kx++) {
        let off = i32(c) * plane + i32(ky * DH) * i32(p.w) + i32(kx * DW);
        let b = vec4<f32>(tapValue(c0, off, ky, kx), tapValue(c1, off, ky, kx), tapValue(c2, off, ky, kx), tapValue(c3, off, ky, kx));
        accumulate(group, m0, c, ky * KW + kx, b);
      }
    }
  }
}

// ------------------------------------------------------------------ MODE 2: dX for any stride

// dY[img, co, oy, ox] with oy*s = y + pad - ky*d, when that lands on the output grid.
fn gatherDy(group: u32, n: u32, co: u32, ky: u32, kx: u32) -> f32 {
  let hw = p.h * p.w;
  let nc = min(n, p.N - 1u);
  let img = nc / hw;
  let r = nc - img * hw;
  let y = r / p.w;
  let x = r - y * p.w;
  let ys = i32(y + p.padT) - i32(ky * DH);
  let xs = i32(x + p.padL) - i32(kx * DW);
  let sy = i32(p.strideH);
  let sx = i32(p.strideW);
  let oy = ys / sy;
  let ox = xs / sx;
  let ok = ys >= 0 && xs >= 0 && oy * sy == ys && ox * sx == xs && oy < i32(p.oh) && ox < i32(p.ow);
  let channel = (img * p.groups + group) * p.cout + co;
  let idx = select(0u, (channel * p.oh + u32(oy)) * p.ow + u32(ox), ok);
  return select(0.0, B[idx], ok);
}

fn convDataStrided(group: u32, m0: u32, n0: u32) {
  for (var co = 0u; co < p.cout; co++) {
    for (var ky = 0u; ky < KH; ky++) {
      for (var kx = 0u; kx < KW; kx++) {
        let b = vec4<f32>(gatherDy(group, n0, co, ky, kx), gatherDy(group, n0 + 1u, co, ky, kx),
                          gatherDy(group, n0 + 2u, co, ky, kx), gatherDy(group, n0 + 3u, co, ky, kx));
        accumulate(group, m0, co, ky * KW + kx, b);
      }
    }
  }
}

// ------------------------------------------------------------------ MODE 3: dW

// One weight column n = (ci, ky, kx): its offset inside an image and its tap position.
struct WCol { off: i32, ky: i32, kx: i32 }

fn wCol(group: u32, n: u32) -> WCol {
  let nc = min(n, p.N - 1u);
  let ci = group * p.cin + nc / (KH * KW);
  let tap = nc % (KH * KW);
  let ky = i32((tap / KW) * DH) - i32(p.padT);
  let kx = i32((tap % KW) * DW) - i32(p.padL);
  return WCol(i32(ci * p.h * p.w) + ky * i32(p.w) + kx, ky, kx);
}

fn wValue(col: WCol, rowBase: i32, y0: i32, x0: i32) -> f32 {
  let y = y0 + col.ky;
  let x = x0 + col.kx;
  let ok = y >= 0 && x >= 0 && y < i32(p.h) && x < i32(p.w);
  return select(0.0, B[u32(select(0, rowBase + col.off, ok))], ok);
}

fn convWeight(group: u32, m0: u32, n0: u32) {
  let w0 = wCol(group, n0);
  let w1 = wCol(group, n0 + 1u);
  let w2 = wCol(group, n0 + 2u);
  let w3 = wCol(group, n0 + 3u);
  let q = p.oh * p.ow;
  let coutAll = p.cout * p.groups;
  let cinAll = p.cin * p.groups;
  for (var img = 0u; img < p.batch; img++) {
    for (var oy = 0u; oy < p.oh; oy++) {
      for (var ox = 0u; ox < p.ow; ox++) {
        let y0 = i32(oy * p.strideH);
        let x0 = i32(ox * p.strideW);
        let rowBase = i32(img * cinAll * p.h * p.w) + y0 * i32(p.w) + x0;
        let b = vec4<f32>(wValue(w0, rowBase, y0, x0), wValue(w1, rowBase, y0, x0), wValue(w2, rowBase, y0, x0), wValue(w3, rowBase, y0, x0));
        accumulate(group, m0, img * coutAll * q + oy * p.ow + ox, 0u, b);
      }
    }
  }
}
#endif

// ------------------------------------------------------------------ store

fn store(batch: u32, m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  if (MODE == 0u) {
    var o = v;
    if (HAS_BIAS) { o += bias[n]; }
    C[batch * p.strideC + m * p.N + n] = o;
  } else if (MODE == 1u || MODE == 2u) {
    // C[m = channel of group `batch`, n = (img, pixel)] -> out[img, channel, pixel]
    let q = select(p.oh * p.ow, p.h * p.w, MODE == 2u);
    let img = n / q;
    let channel = batch * p.M + m;
    C[(img * p.M * p.groups + channel) * q + (n - img * q)] = epilogue(channel, v);
  } else {
    C[(batch * p.M + m) * p.N + n] = v;
  }
}

// By bit pattern: a compiler may assume v == v.
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// MODE 1-2: bias, then (inference, MODE 1) eval batch-norm and ReLU, for output channel `channel`.
fn epilogue(channel: u32, v: f32) -> f32 {
  var o = v;
  if (HAS_BIAS) { o += bias[channel]; }
  if (BN_EVAL) {
    let C = p.M * p.groups;
    o = (o - bias[C + channel]) * bias[2u * C + channel] * bias[3u * C + channel] + bias[4u * C + channel];
  }
  if (RELU) { o = select(max(o, 0.0), o, isNan(o)); }
  return o;
}

// POOL2: the max of an invocation's 2x2 window (its 4 columns) per row, stored at the pooled pixel.
fn storePooled(batch: u32, m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.M || n0 >= p.N) { return; }
  let channel = batch * p.M + m;
  let pq = p.oh * p.ow / 4u;
  let pn = n0 / 4u;
  let img = pn / pq;
  // Window order and comparison as pool.wgsl's max_forward (the first value, then each one greater).
  var o = epilogue(channel, v.x);
  for (var i = 1u; i < 4u; i++) {
    let e = epilogue(channel, v[i]);
    if (e > o) { o = e; }
  }
  C[(img * p.M * p.groups + channel) * pq + (pn - img * pq)] = o;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) sgLane: u32
#endif
        ) {
#if SUBGROUPS
  lane = sgLane;
#endif
  let batch = wg.z;
  let m0 = wg.y * ROWS;
  let n0 = (wg.x * WG + lid.x) * 4u;
  if (MODE == 0u) { matmul(batch, m0, n0); }
#if !VEC_B
  if (MODE == 1u) { conv(batch, m0, n0); }
  if (MODE == 2u) { convDataStrided(batch, m0, n0); }
  if (MODE == 3u) { convWeight(batch, m0, n0); }
#endif
  if (POOL2) {
    for (var i = 0u; i < ROWS; i++) { storePooled(batch, m0 + i, n0, acc[i]); }
    return;
  }
  for (var i = 0u; i < ROWS; i++) {
    let v = acc[i];
    store(batch, m0 + i, n0, v.x);
    store(batch, m0 + i, n0 + 1u, v.y);
    store(batch, m0 + i, n0 + 2u, v.z);
    store(batch, m0 + i, n0 + 3u, v.w);
  }
}
