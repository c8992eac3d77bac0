// Softmax cross-entropy with integer class labels (stored as f32), mean over rows.
// forward: one workgroup per row computes the log-sum-exp (max-shifted) and the row loss;
//          `out` receives [rowLoss(B), lse(B)] so backward can reuse the log-sum-exp.
// backward: dlogits[r, j] = g * (softmax[r, j] - onehot[r, j]) / B, g = upstream scalar gradient.

struct Params { B: u32, C: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<f32>;
@group(0) @binding(2) var<storage, read> saved: array<f32>;   // backward: [rowLoss, lse]; forward: unused
@group(0) @binding(3) var<storage, read> gradOut: array<f32>; // backward: upstream scalar gradient
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> part: array<f32, WG>;

fn reduceMax(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] = max(part[lid], part[lid + s]); }
    workgroupBarrier();
  }
  let r = part[0];
  workgroupBarrier();
  return r;
}

fn reduceSum(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  let r = part[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let r = wg.x + wg.y * 65535u;
  if (r >= p.B) { return; }  // uniform per workgroup, so barriers stay in uniform control flow
  let lid = l.x;
  let base = r * p.C;
  var m = -3.40282346e38f;
  for (var j = lid; j < p.C; j += WG) { m = max(m, logits[base + j]); }
  part[lid] = m;
  let rowMax = reduceMax(lid);
  var s = 0.0;
  for (var j = lid; j < p.C; j += WG) { s += exp(logits[base + j] - rowMax); }
  part[lid] = s;
  let lse = rowMax + log(reduceSum(lid));
  if (lid == 0u) {
    let label = u32(labels[r]);
    out[r] = lse - logits[base + label];
    out[p.B + r] = lse;
  }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.B * p.C) { return; }
  let r = i / p.C;
  let j = i - r * p.C;
  let onehot = select(0.0, 1.0, u32(labels[r]) == j);
  out[i] = gradOut[0] * (exp(logits[i] - saved[p.B + r]) - onehot) / f32(p.B);
}
