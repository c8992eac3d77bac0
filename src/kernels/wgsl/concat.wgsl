// Concat, slice and split along one axis. Every tensor is viewed as [outer, D, inner] around that axis
// (channels of NCHW: outer = N, inner = H*W), so one pair of entries serves every axis and rank.
//   copy_block: out[o, dstOff + c, i] = src[o, srcOff + c, i] for c < count, the rest of out untouched
//               (concat writes each input's block into one output; slice copies one block out).
//   pad_block:  out[o, c, i] = src[o, c - dstOff, i] inside [dstOff, dstOff + count), else 0
//               (the gradient of a slice: the slice's gradient placed back at its offset, zeros around it).

struct Params { n: u32, inner: u32, count: u32, srcD: u32, srcOff: u32, dstD: u32, dstOff: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

// n = outer * count * inner invocations, one per copied element.
@compute @workgroup_size(256)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flatIndex(gid, nwg);
  if (idx >= p.n) { return; }
  let block = p.count * p.inner;
  let o = idx / block;
  let r = idx - o * block;
  out[(o * p.dstD + p.dstOff) * p.inner + r] = src[(o * p.srcD + p.srcOff) * p.inner + r];
}

// n = outer * dstD * inner invocations, one per output element; src is [outer, count, inner].
@compute @workgroup_size(256)
fn pad_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flatIndex(gid, nwg);
  if (idx >= p.n) { return; }
  let row = idx / p.inner;
  let i = idx - row * p.inner;
  let o = row / p.dstD;
  let c = row - o * p.dstD;
  let inside = c >= p.dstOff && c < p.dstOff + p.count;
  let at = select(0u, (o * p.count + c - p.dstOff) * p.inner + i, inside);
  out[idx] = select(0.0, src[at], inside);
}
