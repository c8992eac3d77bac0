// Elementwise kernels over flat float32 arrays. One invocation per element; the dispatch folds the
// workgroup count into x and y when it exceeds the per-dimension limit (index = x + y * width).
// Every entry uses the same bindings (a, b, out, params) so one launcher serves them all.

struct Params { n: u32, alpha: f32, beta: f32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// out = max(a, 0)
@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = max(a[i], 0.0); }
}

// out = b where a > 0, else 0 (a = relu input, b = upstream gradient)
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i < p.n) { out[i] = select(0.0, b[i], a[i] > 0.0); }
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
