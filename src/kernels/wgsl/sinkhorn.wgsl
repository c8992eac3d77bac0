// Batched log-domain Sinkhorn (POT's sinkhorn_log): one workgroup solves one problem, every problem of
// the batch in a single dispatch. For problem p with cost C (n x k), marginals a, b and regulariser reg:
//   repeat: v_j = log b_j - LSE_i(-C_ij / reg + u_i);  u_i = log a_i - LSE_j(-C_ij / reg + v_j)
//   every CHECK iterations: err = || sum_i exp(-C_ij / reg + u_i + v_j) - b_j ||_2, stop when err < tol
// then plan_ij = exp(-C_ij / reg + u_i + v_j). Log-sum-exps are single-pass with a running maximum.
// u and v live in global memory; storageBarrier orders them between the workgroup's invocations.

struct Problem {
  n: u32, k: u32,
  cost: u32,       // offset of C in `data` (row-major n x k)
  loga: u32,       // offset of log a in `data`
  logb: u32,       // offset of log b in `data`
  u: u32, v: u32,  // offsets in `state`
  plan: u32,       // offset of the plan in `state`
  invReg: f32,
  tol: f32,
  maxIter: u32,
  pad: u32,
}

@group(0) @binding(0) var<storage, read> problems: array<Problem>;
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> report: array<f32>;  // per problem: [iterations, err]

const WG: u32 = 256u;
const CHECK: u32 = 10u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> errShared: f32;

// Running log-sum-exp: (max, sum of exp(x - max)).
fn lseAdd(acc: vec2<f32>, x: f32) -> vec2<f32> {
  if (x <= acc.x) { return vec2<f32>(acc.x, acc.y + exp(x - acc.x)); }
  return vec2<f32>(x, acc.y * exp(acc.x - x) + 1.0);
}

fn lseValue(acc: vec2<f32>) -> f32 {
  return acc.x + log(acc.y);
}

@compute @workgroup_size(WG)
fn solve(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let pr = problems[wg.x];
  let lid = l.x;
  let s = -pr.invReg;
  for (var i = lid; i < pr.n; i += WG) { state[pr.u + i] = 0.0; }
  storageBarrier();
  workgroupBarrier();
  var iter = 0u;
  var err = 0.0;
  loop {
    if (iter >= pr.maxIter) { break; }
    // v update: one column per invocation.
    for (var j = lid; j < pr.k; j += WG) {
      var acc = vec2<f32>(-3.40282346e38f, 0.0);
      for (var i = 0u; i < pr.n; i++) { acc = lseAdd(acc, s * data[pr.cost + i * pr.k + j] + state[pr.u + i]); }
      state[pr.v + j] = data[pr.logb + j] - lseValue(acc);
    }
    storageBarrier();
    workgroupBarrier();
    // u update: one row per invocation.
    for (var i = lid; i < pr.n; i += WG) {
      var acc = vec2<f32>(-3.40282346e38f, 0.0);
      for (var j = 0u; j < pr.k; j++) { acc = lseAdd(acc, s * data[pr.cost + i * pr.k + j] + state[pr.v + j]); }
      state[pr.u + i] = data[pr.loga + i] - lseValue(acc);
    }
    storageBarrier();
    workgroupBarrier();
    let checkNow = iter % CHECK == 0u;
    iter++;
    if (checkNow) {
      var sq = 0.0;
      for (var j = lid; j < pr.k; j += WG) {
        var colSum = 0.0;
        for (var i = 0u; i < pr.n; i++) { colSum += exp(s * data[pr.cost + i * pr.k + j] + state[pr.u + i] + state[pr.v + j]); }
        let d = colSum - exp(data[pr.logb + j]);
        sq += d * d;
      }
      partial[lid] = sq;
      workgroupBarrier();
      for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { partial[lid] += partial[lid + w]; }
        workgroupBarrier();
      }
      if (lid == 0u) { errShared = sqrt(partial[0]); }
      err = workgroupUniformLoad(&errShared);
      if (err < pr.tol) { break; }
    }
  }
  for (var idx = lid; idx < pr.n * pr.k; idx += WG) {
    let i = idx / pr.k;
    let j = idx - i * pr.k;
    state[pr.plan + idx] = exp(s * data[pr.cost + idx] + state[pr.u + i] + state[pr.v + j]);
  }
  if (lid == 0u) {
    report[wg.x * 2u] = f32(iter);
    report[wg.x * 2u + 1u] = err;
  }
}
