// SGD step with PyTorch's semantics (torch.optim.SGD, dampening included):
//   d = g + weight_decay * w
//   buf = d on the first step, else momentum * buf + (1 - dampening) * d
//   d = d + momentum * buf (nesterov) or buf (plain momentum); with momentum 0, d stays as it is
//   w = w - lr * d

struct Params { n: u32, lr: f32, momentum: f32, dampening: f32, weightDecay: f32, nesterov: u32, first: u32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var d = grad[i] + p.weightDecay * param[i];
  if (p.momentum != 0.0) {
    var b = d;
    if (p.first == 0u) { b = p.momentum * buf[i] + (1.0 - p.dampening) * d; }
    buf[i] = b;
    d = select(b, d + p.momentum * b, p.nesterov != 0u);
  }
  param[i] = param[i] - p.lr * d;
}
