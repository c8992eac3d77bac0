// GEMM family: C[M, N] = A[M, K] @ B[K, N] (+ bias), where A, B and C are views chosen by MODE:
//   MODE 0  matmul         A, B row-major (optionally transposed), batched over workgroup z
//   MODE 1  conv2d forward  A = W [Co, Ci*KH*KW], B = im2col(X), C = Y, N = batch*OH*OW (implicit GEMM)
//   MODE 2  conv2d dX       A = W^T viewed [Ci, Co*KH*KW], B = gathered dY, C = dX, N = batch*H*W
//   MODE 3  conv2d dW       A = dY viewed [Co, batch*OH*OW], B = im2col(X)^T, C = dW, N = Ci*KH*KW
//
// Register blocking: a workgroup owns 8 rows x (4*WG) columns of C; each invocation owns 8 rows x 4
// columns (eight vec4 accumulators). Nothing is staged in workgroup memory: on CPU implementations
// (lavapipe, SwiftShader) it is the same memory, and invocations are SIMD lanes, so what costs is the
// number of per-lane (gathered) loads. Each k step does 4 gathered B loads for 32 FMAs per lane; the
// 8 A values are either uniform loads (same address on every lane) or, with subgroups, one load per
// lane shared through subgroupBroadcast, which is the fastest path measured on lavapipe.

#if SUBGROUPS
enable subgroups;
#endif

struct Params {
  M: u32, N: u32, K: u32,
  strideA: u32, strideB: u32, strideC: u32,   // MODE 0: per-batch element strides (0 broadcasts)
  // MODE 1-3: convolution geometry
  batch: u32, cin: u32, h: u32, w: u32,
  cout: u32, oh: u32, ow: u32,
  kh: u32, kw: u32, stride: u32, pad: u32,
}

override MODE: u32 = 0;
override TRANS_A: bool = false;   // MODE 0: A stored as [K, M]
override TRANS_B: bool = false;   // MODE 0: B stored as [N, K]
override HAS_BIAS: bool = false;  // MODE 0: bias[n]; MODE 1: bias[m] (per output channel)
override WG: u32 = 64;

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

fn loadA(batch: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  if (MODE == 0u) {
    let base = batch * p.strideA;
    if (TRANS_A) { return A[base + k * p.M + m]; }
    return A[base + m * p.K + k];
  }
  if (MODE == 1u) { return A[m * p.K + k]; }
  if (MODE == 2u) {
    // A[ci, (co, r)] = W[co, ci, r] with r = kh*KW + kw
    let kk = p.kh * p.kw;
    let co = k / kk;
    return A[(co * p.cin + m) * kk + (k - co * kk)];
  }
  // MODE 3: A[co, (b, q)] = dY[b, co, q], q = oh*OW + ow
  let q = p.oh * p.ow;
  let b = k / q;
  return A[(b * p.cout + m) * q + (k - b * q)];
}

// Per-column data that does not change along k, computed once per invocation.
struct Col { ok: bool, a: i32, b: i32, c: i32 }

fn colInfo(n: u32) -> Col {
  var col = Col(n < p.N, 0, 0, 0);
  if (MODE == 0u) { col.a = i32(n); }
  if (MODE == 1u || MODE == 2u) {
    // n = (image, y, x) of the output (MODE 1) or of the input (MODE 2)
    let hw = select(p.h * p.w, p.oh * p.ow, MODE == 1u);
    let wd = select(p.w, p.ow, MODE == 1u);
    let img = n / hw;
    let r = n - img * hw;
    let y = r / wd;
    let x = r - y * wd;
    col.a = i32(img);
    if (MODE == 1u) {
      col.b = i32(y * p.stride) - i32(p.pad);
      col.c = i32(x * p.stride) - i32(p.pad);
    } else {
      col.b = i32(y + p.pad);
      col.c = i32(x + p.pad);
    }
  }
  if (MODE == 3u) {
    // n = (ci, ky, kx) of the weight
    let kk = p.kh * p.kw;
    let ci = n / kk;
    let r = n - ci * kk;
    col.a = i32(ci);
    col.b = i32(r / p.kw) - i32(p.pad);
    col.c = i32(r % p.kw) - i32(p.pad);
  }
  return col;
}

// Per-k data shared by every column (uniform across invocations).
struct Row { a: u32, b: i32, c: i32 }

fn rowInfo(k: u32) -> Row {
  if (MODE == 1u) {
    let kk = p.kh * p.kw;
    let ci = k / kk;
    let r = k - ci * kk;
    let ky = r / p.kw;
    return Row(ci, i32(ky), i32(r - ky * p.kw));
  }
  if (MODE == 2u) {
    let kk = p.kh * p.kw;
    let co = k / kk;
    let r = k - co * kk;
    let ky = r / p.kw;
    return Row(co, i32(ky), i32(r - ky * p.kw));
  }
  if (MODE == 3u) {
    let q = p.oh * p.ow;
    let img = k / q;
    let r = k - img * q;
    let y = r / p.ow;
    return Row(img, i32(y * p.stride), i32((r - y * p.ow) * p.stride));
  }
  return Row(k, 0, 0);
}

#if VEC_B
fn loadB4(batch: u32, k: u32, n0: u32) -> vec4<f32> {
  if (n0 >= p.N) { return vec4<f32>(0.0); }
  return B4[(batch * p.strideB + k * p.N + n0) / 4u];
}
#else
fn loadB(batch: u32, k: u32, row: Row, col: Col) -> f32 {
  if (!col.ok || k >= p.K) { return 0.0; }
  if (MODE == 0u) {
    let n = u32(col.a);
    if (TRANS_B) { return B[batch * p.strideB + n * p.K + k]; }
    return B[batch * p.strideB + k * p.N + n];
  }
  if (MODE == 1u) {
    // X[img, ci, oy*s - pad + ky, ox*s - pad + kx]
    let y = col.b + row.b;
    let x = col.c + row.c;
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) { return 0.0; }
    return B[((u32(col.a) * p.cin + row.a) * p.h + u32(y)) * p.w + u32(x)];
  }
  if (MODE == 2u) {
    // dY[img, co, oy, ox] with oy*s = y + pad - ky, when that lands on the output grid
    let ys = col.b - row.b;
    let xs = col.c - row.c;
    if (ys < 0 || xs < 0) { return 0.0; }
    let s = i32(p.stride);
    let oy = ys / s;
    let ox = xs / s;
    if (oy * s != ys || ox * s != xs || oy >= i32(p.oh) || ox >= i32(p.ow)) { return 0.0; }
    return B[((u32(col.a) * p.cout + row.a) * p.oh + u32(oy)) * p.ow + u32(ox)];
  }
  // MODE 3: X[img, ci, oy*s - pad + ky, ox*s - pad + kx]
  let y = row.b + col.b;
  let x = row.c + col.c;
  if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) { return 0.0; }
  return B[((row.a * p.cin + u32(col.a)) * p.h + u32(y)) * p.w + u32(x)];
}
#endif

fn storeC(batch: u32, m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  if (MODE == 0u) {
    var o = v;
    if (HAS_BIAS) { o += bias[n]; }
    C[batch * p.strideC + m * p.N + n] = o;
    return;
  }
  if (MODE == 1u) {
    // C[m = co, n = (img, q)] -> Y[img, co, q]
    let q = p.oh * p.ow;
    let img = n / q;
    var o = v;
    if (HAS_BIAS) { o += bias[m]; }
    C[(img * p.cout + m) * q + (n - img * q)] = o;
    return;
  }
  if (MODE == 2u) {
    let q = p.h * p.w;
    let img = n / q;
    C[(img * p.cin + m) * q + (n - img * q)] = v;
    return;
  }
  C[m * p.N + n] = v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) lane: u32
#endif
        ) {
  let batch = wg.z;
  let m0 = wg.y * 8u;
  let n0 = (wg.x * WG + lid.x) * 4u;
#if !VEC_B
  let c0 = colInfo(n0);
  let c1 = colInfo(n0 + 1u);
  let c2 = colInfo(n0 + 2u);
  let c3 = colInfo(n0 + 3u);
#endif
  var acc: array<vec4<f32>, 8>;
  for (var k = 0u; k < p.K; k++) {
#if VEC_B
    let b = loadB4(batch, k, n0);
#else
    let row = rowInfo(k);
    let b = vec4<f32>(loadB(batch, k, row, c0), loadB(batch, k, row, c1), loadB(batch, k, row, c2), loadB(batch, k, row, c3));
#endif
#if SUBGROUPS
    // Lane i loads row m0+i of A; every lane then reads all 8 values from registers.
    let av = select(0.0, loadA(batch, m0 + lane, k), lane < 8u);
    acc[0] += subgroupBroadcast(av, 0u) * b;
    acc[1] += subgroupBroadcast(av, 1u) * b;
    acc[2] += subgroupBroadcast(av, 2u) * b;
    acc[3] += subgroupBroadcast(av, 3u) * b;
    acc[4] += subgroupBroadcast(av, 4u) * b;
    acc[5] += subgroupBroadcast(av, 5u) * b;
    acc[6] += subgroupBroadcast(av, 6u) * b;
    acc[7] += subgroupBroadcast(av, 7u) * b;
#else
    for (var i = 0u; i < 8u; i++) {
      acc[i] += loadA(batch, m0 + i, k) * b;
    }
#endif
  }
  for (var i = 0u; i < 8u; i++) {
    let v = acc[i];
    storeC(batch, m0 + i, n0, v.x);
    storeC(batch, m0 + i, n0 + 1u, v.y);
    storeC(batch, m0 + i, n0 + 2u, v.z);
    storeC(batch, m0 + i, n0 + 3u, v.w);
  }
}
