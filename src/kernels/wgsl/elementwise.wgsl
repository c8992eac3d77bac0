// Elementwise kernels over flat float32 arrays. One invocation per element; the dispatch folds the
// workgroup count into x and y when it exceeds the per-dimension limit (index = x + y * width).
// Every entry uses the same bindings (a, b, out, params) so one launcher serves them all.
//
// Activations follow PyTorch exactly, including NaN: a NaN input gives a NaN output (WGSL's max/min/
// clamp may drop NaN, so it is tested by bit pattern), and each backward uses PyTorch's own comparisons,
// so the gradient at a kink and at NaN is PyTorch's (e.g. clamp passes the gradient at its bounds,
// hardtanh/ReLU6 do not; relu, hardtanh and hardswish pass it for NaN, clamp and hardsigmoid do not).

struct Params { n: u32, alpha: f32, beta: f32, inner: u32, count: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// By bit pattern: a compiler may assume v == v.
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// out = max(a, 0), NaN kept
@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(max(a[i], 0.0), a[i], isNan(a[i])); }
}

// out = 0 where a <= 0, else b (a = relu input, b = upstream gradient; a NaN input passes b, as PyTorch's
// threshold_backward)
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(b[i], 0.0, a[i] <= 0.0); }
}

// out = min(max(a, alpha), beta), NaN kept (torch.clamp, torch.nn.Hardtanh, ReLU6)
@compute @workgroup_size(WG)
fn clip(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(min(max(a[i], p.alpha), p.beta), a[i], isNan(a[i])); }
}

// torch.clamp's gradient: b where alpha <= a <= beta (bounds included), else 0
@compute @workgroup_size(WG)
fn clip_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(0.0, b[i], a[i] >= p.alpha && a[i] <= p.beta); }
}

// torch.nn.Hardtanh's (and ReLU6's) gradient: 0 where a <= alpha or a >= beta (bounds excluded), else b
@compute @workgroup_size(WG)
fn hardtanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(b[i], 0.0, a[i] <= p.alpha || a[i] >= p.beta); }
}

// out = max(0, min(1, alpha * a + beta)) (ONNX HardSigmoid; PyTorch's is alpha = 1/6, beta = 1/2), NaN kept
@compute @workgroup_size(WG)
fn hardsigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) {
    let t = p.alpha * a[i] + p.beta;
    out[i] = select(clamp(t, 0.0, 1.0), a[i], isNan(a[i]));
  }
}

// alpha * b where 0 < alpha * a + beta < 1 (PyTorch: -3 < a < 3, bounds excluded), else 0
@compute @workgroup_size(WG)
fn hardsigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) {
    let t = p.alpha * a[i] + p.beta;
    out[i] = select(0.0, p.alpha * b[i], t > 0.0 && t < 1.0);
  }
}

// out = a * min(max(a + 3, 0), 6) / 6 (torch.nn.Hardswish), NaN kept
@compute @workgroup_size(WG)
fn hardswish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) {
    let v = a[i];
    out[i] = select(v * min(max(v + 3.0, 0.0), 6.0) / 6.0, v, isNan(v));
  }
}

// PyTorch's hardswish_backward: 0 where a < -3, b * (a / 3 + 1/2) where a <= 3, else b (and NaN: b). This is
// its scalar and CUDA definition (1.5 at a = 3); its vectorised CPU path says 1 at exactly 3 (`>= 3`), so
// PyTorch on a CPU gives 1 or 1.5 there depending on the element's position.
@compute @workgroup_size(WG)
fn hardswish_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) {
    let v = a[i];
    var g = b[i];
    if (v < -3.0) { g = 0.0; } else if (v <= 3.0) { g = b[i] * (v / 3.0 + 0.5); }
    out[i] = g;
  }
}

// 1 / (1 + exp(-v)) without overflow: exp of a non-positive number only.
fn sigmoidOf(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

// out = sigmoid(a), NaN kept
@compute @workgroup_size(WG)
fn sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(sigmoidOf(a[i]), a[i], isNan(a[i])); }
}

// b * y * (1 - y) from the sigmoid's output y = a (as PyTorch's sigmoid_backward)
@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = b[i] * (1.0 - a[i]) * a[i]; }
}

// out = a * sigmoid(a) (torch.nn.SiLU, "swish"), NaN kept
@compute @workgroup_size(WG)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(a[i] * sigmoidOf(a[i]), a[i], isNan(a[i])); }
}

// b * s * (1 + a * (1 - s)) with s = sigmoid(a) (PyTorch's silu_backward)
@compute @workgroup_size(WG)
fn silu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) {
    let v = a[i];
    let s = select(sigmoidOf(v), v, isNan(v));
    out[i] = b[i] * s * (1.0 + v * (1.0 - s));
  }
}

// out = alpha * a + beta * b
@compute @workgroup_size(WG)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = p.alpha * a[i] + p.beta * b[i]; }
}

// out = a * b
@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = a[i] * b[i]; }
}

// out = a * b broadcast: a viewed as [outer, count, inner], b as [count] (squeeze-excitation gates
// [N, C, 1, 1] over [N, C, H, W] are count = N*C, inner = H*W; a per-channel [1, C, 1, 1] is count = C)
@compute @workgroup_size(WG)
fn mul_broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = a[i] * b[(i / p.inner) % p.count]; }
}

// out = alpha * a + beta
@compute @workgroup_size(WG)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = p.alpha * a[i] + p.beta; }
}

// out = alpha
@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = p.alpha; }
}

// out = a[0] broadcast (expanding the gradient of a scalar)
@compute @workgroup_size(WG)
fn broadcast_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = p.alpha * a[0]; }
}
