// 2-D max and average pooling over NCHW planes (no padding, no dilation), forward and backward.
// Backward passes gather: each input pixel visits the windows that contain it, so no atomics are needed.
// Max pooling routes the gradient to the first maximum of each window, as PyTorch does.

struct Params { planes: u32, H: u32, W: u32, OH: u32, OW: u32, k: u32, stride: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

// Index (within the plane) of the first maximum of window (oy, ox).
fn argmaxOf(plane: u32, oy: u32, ox: u32) -> u32 {
  var best = -3.40282346e38f;
  var bestIdx = 0u;
  var first = true;
  for (var ky = 0u; ky < p.k; ky++) {
    for (var kx = 0u; kx < p.k; kx++) {
      let idx = (oy * p.stride + ky) * p.W + ox * p.stride + kx;
      let v = x[plane * p.H * p.W + idx];
      if (first || v > best) {
        best = v;
        bestIdx = idx;
        first = false;
      }
    }
  }
  return bestIdx;
}

@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.OH * p.OW) { return; }
  let plane = i / (p.OH * p.OW);
  let r = i - plane * p.OH * p.OW;
  let oy = r / p.OW;
  let ox = r - oy * p.OW;
  out[i] = x[plane * p.H * p.W + argmaxOf(plane, oy, ox)];
}

// Range of output windows along one axis that cover input coordinate v.
fn windows(v: u32, outSize: u32) -> vec2<u32> {
  let lo = select(0u, (v - p.k + 1u + p.stride - 1u) / p.stride, v + 1u > p.k);
  let hi = min(v / p.stride + 1u, outSize);
  return vec2<u32>(lo, hi);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.H * p.W) { return; }
  let plane = i / (p.H * p.W);
  let idx = i - plane * p.H * p.W;
  let iy = idx / p.W;
  let ix = idx - iy * p.W;
  let ry = windows(iy, p.OH);
  let rx = windows(ix, p.OW);
  var g = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    for (var ox = rx.x; ox < rx.y; ox++) {
      if (argmaxOf(plane, oy, ox) == idx) { g += dy[(plane * p.OH + oy) * p.OW + ox]; }
    }
  }
  out[i] = g;
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.OH * p.OW) { return; }
  let plane = i / (p.OH * p.OW);
  let r = i - plane * p.OH * p.OW;
  let oy = r / p.OW;
  let ox = r - oy * p.OW;
  var s = 0.0;
  for (var ky = 0u; ky < p.k; ky++) {
    for (var kx = 0u; kx < p.k; kx++) {
      s += x[(plane * p.H + oy * p.stride + ky) * p.W + ox * p.stride + kx];
    }
  }
  out[i] = s / f32(p.k * p.k);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.H * p.W) { return; }
  let plane = i / (p.H * p.W);
  let idx = i - plane * p.H * p.W;
  let iy = idx / p.W;
  let ix = idx - iy * p.W;
  let ry = windows(iy, p.OH);
  let rx = windows(ix, p.OW);
  var g = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    for (var ox = rx.x; ox < rx.y; ox++) {
      g += dy[(plane * p.OH + oy) * p.OW + ox];
    }
  }
  out[i] = g / f32(p.k * p.k);
}
