// Reductions over the middle axis of a [outer, C, inner] view: out[c] = sum over (o, i) of f(x[o, c, i]).
// This covers per-channel sums of NCHW tensors (outer = N, inner = H*W), column sums of matrices
// (outer = rows, inner = 1) and full sums (C = 1). One workgroup per output element (folded into y past
// 65535; the early return is uniform per workgroup); each invocation
// accumulates a strided slice, then a tree reduction in workgroup memory combines them.

struct Params { outer: u32, C: u32, inner: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

fn combine(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

// out[c] = alpha * sum x[o, c, i]
@compute @workgroup_size(WG)
fn sum_axis(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let c = wg.x + wg.y * nwg.x;
  if (c >= p.C) { return; }
  let lid = lid3.x;
  let count = p.outer * p.inner;
  var acc = 0.0;
  for (var j = lid; j < count; j += WG) {
    let o = j / p.inner;
    acc += x[(o * p.C + c) * p.inner + (j - o * p.inner)];
  }
  partial[lid] = acc;
  let total = combine(lid);
  if (lid == 0u) { out[c] = p.alpha * total; }
}

// out[c] = alpha * sum x[o, c, i] * y[o, c, i]
@compute @workgroup_size(WG)
fn sum_prod_axis(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let c = wg.x + wg.y * nwg.x;
  if (c >= p.C) { return; }
  let lid = lid3.x;
  let count = p.outer * p.inner;
  var acc = 0.0;
  for (var j = lid; j < count; j += WG) {
    let o = j / p.inner;
    let idx = (o * p.C + c) * p.inner + (j - o * p.inner);
    acc += x[idx] * y[idx];
  }
  partial[lid] = acc;
  let total = combine(lid);
  if (lid == 0u) { out[c] = p.alpha * total; }
}
