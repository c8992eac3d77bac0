// 2-D pooling over NCHW planes (no dilation), forward and backward:
//   max and avg: k x k windows with a stride and implicit padding on each side, as PyTorch. Max pooling
//     never picks a padded cell (it is -inf). Avg pooling divides by the window's cells inside the padded
//     input (countPad = 1, AvgPool2d's default count_include_pad=True: k*k except for ceil_mode's last,
//     partial windows) or by its cells inside the input itself (countPad = 0), as PyTorch.
//     ceil_mode only changes OH and OW (computed by the launcher); windows are clipped here.
//   adaptive avg: output cell (i, j) averages input rows floor(i*H/OH) .. ceil((i+1)*H/OH) - 1 and the
//     same for columns (torch.nn.AdaptiveAvgPool2d); bins may differ in size and overlap.
// Backward passes gather: each input pixel visits the windows that contain it, so no atomics are needed.
// Max pooling routes the gradient to the first maximum of each window, as PyTorch does.

struct Params { planes: u32, H: u32, W: u32, OH: u32, OW: u32, k: u32, stride: u32, pad: u32, countPad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

// Output index i -> (plane, oy, ox).
fn outputCell(i: u32) -> vec3<u32> {
  let plane = i / (p.OH * p.OW);
  let r = i - plane * p.OH * p.OW;
  let oy = r / p.OW;
  return vec3<u32>(plane, oy, r - oy * p.OW);
}

// Input index i -> (plane, iy, ix).
fn inputCell(i: u32) -> vec3<u32> {
  let plane = i / (p.H * p.W);
  let idx = i - plane * p.H * p.W;
  let iy = idx / p.W;
  return vec3<u32>(plane, iy, idx - iy * p.W);
}

// The window (oy, ox) clipped to the input: [y0, y1) x [x0, x1). Never empty since pad <= k / 2 and a
// ceil_mode window starts inside the input or its left padding.
fn windowOf(oy: u32, ox: u32) -> vec4<u32> {
  let y = i32(oy * p.stride) - i32(p.pad);
  let x = i32(ox * p.stride) - i32(p.pad);
  return vec4<u32>(u32(max(y, 0)), u32(min(y + i32(p.k), i32(p.H))), u32(max(x, 0)), u32(min(x + i32(p.k), i32(p.W))));
}

// Index (within the plane) of the first maximum of window (oy, ox), padded cells excluded.
fn argmaxOf(plane: u32, oy: u32, ox: u32) -> u32 {
  let win = windowOf(oy, ox);
  var bestIdx = win.x * p.W + win.z;
  var best = x[plane * p.H * p.W + bestIdx];
  for (var iy = win.x; iy < win.y; iy++) {
    for (var ix = win.z; ix < win.w; ix++) {
      let idx = iy * p.W + ix;
      let v = x[plane * p.H * p.W + idx];
      if (v > best) {
        best = v;
        bestIdx = idx;
      }
    }
  }
  return bestIdx;
}

@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.OH * p.OW) { return; }
  let c = outputCell(i);
  out[i] = x[c.x * p.H * p.W + argmaxOf(c.x, c.y, c.z)];
}

// Range [lo, hi) of output windows along one axis that cover input coordinate v.
fn windows(v: u32, outSize: u32) -> vec2<u32> {
  let vp = v + p.pad; // coordinate in the padded input
  let lo = select(0u, (vp - p.k + 1u + p.stride - 1u) / p.stride, vp + 1u > p.k);
  let hi = min(vp / p.stride + 1u, outSize);
  return vec2<u32>(lo, hi);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.H * p.W) { return; }
  let c = inputCell(i);
  let idx = c.y * p.W + c.z;
  let ry = windows(c.y, p.OH);
  let rx = windows(c.z, p.OW);
  var g = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    for (var ox = rx.x; ox < rx.y; ox++) {
      if (argmaxOf(c.x, oy, ox) == idx) { g += dy[(c.x * p.OH + oy) * p.OW + ox]; }
    }
  }
  out[i] = g;
}

// PyTorch's avg-pool divisor: the window clipped to the padded input (count_include_pad), or to the input.
fn divisorOf(oy: u32, ox: u32) -> f32 {
  if (p.countPad == 0u) {
    let win = windowOf(oy, ox);
    return f32((win.y - win.x) * (win.w - win.z));
  }
  let y = i32(oy * p.stride) - i32(p.pad);
  let x = i32(ox * p.stride) - i32(p.pad);
  let h = min(y + i32(p.k), i32(p.H + p.pad)) - y;
  let w = min(x + i32(p.k), i32(p.W + p.pad)) - x;
  return f32(h * w);
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.OH * p.OW) { return; }
  let c = outputCell(i);
  let win = windowOf(c.y, c.z);
  var s = 0.0;
  for (var iy = win.x; iy < win.y; iy++) {
    for (var ix = win.z; ix < win.w; ix++) {
      s += x[(c.x * p.H + iy) * p.W + ix];
    }
  }
  out[i] = s / divisorOf(c.y, c.z);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.H * p.W) { return; }
  let c = inputCell(i);
  let ry = windows(c.y, p.OH);
  let rx = windows(c.z, p.OW);
  var g = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    for (var ox = rx.x; ox < rx.y; ox++) {
      g += dy[(c.x * p.OH + oy) * p.OW + ox] / divisorOf(oy, ox);
    }
  }
  out[i] = g;
}

// Adaptive bin o of `outSize` over an axis of `size`: [floor(o*size/outSize), ceil((o+1)*size/outSize)).
fn bin(o: u32, size: u32, outSize: u32) -> vec2<u32> {
  return vec2<u32>(o * size / outSize, ((o + 1u) * size + outSize - 1u) / outSize);
}

// Range [lo, hi) of adaptive bins that contain input coordinate v: start(o) <= v < end(o).
fn binsOf(v: u32, size: u32, outSize: u32) -> vec2<u32> {
  return vec2<u32>(v * outSize / size, ((v + 1u) * outSize - 1u) / size + 1u);
}

@compute @workgroup_size(256)
fn adaptive_avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.OH * p.OW) { return; }
  let c = outputCell(i);
  let by = bin(c.y, p.H, p.OH);
  let bx = bin(c.z, p.W, p.OW);
  var s = 0.0;
  for (var iy = by.x; iy < by.y; iy++) {
    for (var ix = bx.x; ix < bx.y; ix++) {
      s += x[(c.x * p.H + iy) * p.W + ix];
    }
  }
  out[i] = s / f32((by.y - by.x) * (bx.y - bx.x));
}

@compute @workgroup_size(256)
fn adaptive_avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= p.planes * p.H * p.W) { return; }
  let c = inputCell(i);
  let ry = binsOf(c.y, p.H, p.OH);
  let rx = binsOf(c.z, p.W, p.OW);
  var g = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    let by = bin(oy, p.H, p.OH);
    for (var ox = rx.x; ox < rx.y; ox++) {
      let bx = bin(ox, p.W, p.OW);
      g += dy[(c.x * p.OH + oy) * p.OW + ox] / f32((by.y - by.x) * (bx.y - bx.x));
    }
  }
  out[i] = g;
}
