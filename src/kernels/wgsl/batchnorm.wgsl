// Batch normalisation over NCHW (per channel c, statistics over N, H, W), in three steps:
//   stats:  train -> batch mean and 1/sqrt(var + eps) (biased var), running stats updated with the
//           unbiased var as PyTorch does; eval -> the same two numbers from the running stats.
//   apply:  y = (x - mean) * invstd * gamma + beta
//   backward: reduce dgamma = sum(dy * xhat), dbeta = sum(dy); then
//           train: dx = gamma * invstd * (dy - dbeta / n - xhat * dgamma / n)
//           eval:  dx = gamma * invstd * dy   (the statistics are constants)
// `stats` holds [mean(C), invstd(C)]. `chanA`/`chanB` are a per-channel pair: the running mean and
// variance in `stats_main`, dgamma and dbeta in the backward entries.

struct Params { N: u32, C: u32, HW: u32, eps: f32, momentum: f32, train: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> aux: array<f32>;          // dy (backward) or unused
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> chanA: array<f32>;
@group(0) @binding(6) var<storage, read_write> chanB: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;    // y or dx
@group(0) @binding(8) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> partA: array<f32, WG>;
var<workgroup> partB: array<f32, WG>;

fn at(c: u32, j: u32) -> u32 {
  let n = j / p.HW;
  return (n * p.C + c) * p.HW + (j - n * p.HW);
}

fn reduce2(lid: u32) {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partA[lid] += partA[lid + s];
      partB[lid] += partB[lid + s];
    }
    workgroupBarrier();
  }
}

// One workgroup per channel. Two passes (mean, then centred squares) for accuracy.
@compute @workgroup_size(WG)
fn stats_main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let c = wg.x;
  let lid = l.x;
  if (p.train == 0u) {
    if (lid == 0u) {
      stats[c] = chanA[c];
      stats[p.C + c] = inverseSqrt(chanB[c] + p.eps);
    }
    return;
  }
  let count = p.N * p.HW;
  var s = 0.0;
  for (var j = lid; j < count; j += WG) { s += x[at(c, j)]; }
  partA[lid] = s;
  partB[lid] = 0.0;
  reduce2(lid);
  let mean = partA[0] / f32(count);
  workgroupBarrier();
  var q = 0.0;
  for (var j = lid; j < count; j += WG) {
    let d = x[at(c, j)] - mean;
    q += d * d;
  }
  partA[lid] = q;
  reduce2(lid);
  if (lid == 0u) {
    let varBiased = partA[0] / f32(count);
    stats[c] = mean;
    stats[p.C + c] = inverseSqrt(varBiased + p.eps);
    let unbiased = varBiased * f32(count) / f32(max(count, 2u) - 1u);
    chanA[c] = (1.0 - p.momentum) * chanA[c] + p.momentum * mean;
    chanB[c] = (1.0 - p.momentum) * chanB[c] + p.momentum * unbiased;
  }
}

@compute @workgroup_size(256)
fn apply_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.N * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  out[i] = (x[i] - stats[c]) * stats[p.C + c] * gamma[c] + beta[c];
}

// One workgroup per channel: dgamma and dbeta.
@compute @workgroup_size(WG)
fn backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let c = wg.x;
  let lid = l.x;
  let mean = stats[c];
  let invstd = stats[p.C + c];
  var sg = 0.0;
  var sb = 0.0;
  for (var j = lid; j < p.N * p.HW; j += WG) {
    let idx = at(c, j);
    let dy = aux[idx];
    sg += dy * (x[idx] - mean) * invstd;
    sb += dy;
  }
  partA[lid] = sg;
  partB[lid] = sb;
  reduce2(lid);
  if (lid == 0u) {
    chanA[c] = partA[0];
    chanB[c] = partB[0];
  }
}

// dx, reading dgamma (chanA) and dbeta (chanB) from backward_reduce.
@compute @workgroup_size(256)
fn backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.N * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  let invstd = stats[p.C + c];
  let scale = gamma[c] * invstd;
  if (p.train == 0u) {
    out[i] = scale * aux[i];
    return;
  }
  let n = f32(p.N * p.HW);
  let xhat = (x[i] - stats[c]) * invstd;
  out[i] = scale * (aux[i] - chanB[c] / n - xhat * chanA[c] / n);
}

// Inference epilogue table for gemm.wgsl (BN_EVAL): out = [bias | mean | invstd | gamma | beta] per
// channel, invstd as stats_main computes it in eval mode. x holds the conv's bias (aux unused);
// p.train = 0 means the conv has no bias (zeros). One invocation per channel.
@compute @workgroup_size(64)
fn eval_table(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  out[c] = select(0.0, x[c], p.train != 0u);
  out[p.C + c] = chanA[c];
  out[2u * p.C + c] = inverseSqrt(chanB[c] + p.eps);
  out[3u * p.C + c] = gamma[c];
  out[4u * p.C + c] = beta[c];
}
