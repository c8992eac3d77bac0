// The pruner's kernels, on the weights where they live:
//   map_sparse  applies a k x n channel map in CSR form along the middle axis of a tensor viewed as
//               [rows, n, inner]: out[r, j, t] = sum over row j's entries e of val[e] * W[r, col[e], t].
//               Only the map's non-zero entries are read, so a pruned channel's weights (even NaN or
//               Inf) never reach a kept one through a zero; a selection entry (one 1 in its row) copies
//               the weight's bits exactly (no 0 + 1 * w, which would turn -0 into +0).

struct Params {
  k: u32, n: u32, rows: u32, inner: u32,
  // invocations along x (over the rows * inner cells) and workgroups along y (over the map's rows)
  xCount: u32, yCount: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
// offsets [k + 1] (row j's entries are offsets[j] .. offsets[j + 1] - 1), then each entry's column
@group(0) @binding(1) var<storage, read> structure: array<u32>;
@group(0) @binding(2) var<storage, read> mapValues: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// x: a cell (r, t) of the view (consecutive lanes read consecutive addresses when inner > 1), y: map row
// j; both loop past the grid so any size fits one dispatch. Every lane of a workgroup walks the same
// entries (one j per workgroup row).
@compute @workgroup_size(64)
fn map_sparse(@builtin(global_invocation_id) gid: vec3<u32>) {
  let cells = p.rows * p.inner;
  for (var j = gid.y; j < p.k; j += p.yCount) {
    let first = structure[j];
    let last = structure[j + 1u];
    for (var cell = gid.x; cell < cells; cell += p.xCount) {
      let r = cell / p.inner;
      let t = cell - r * p.inner;
      let base = r * p.n * p.inner + t;
      var s = 0.0;
      if (first < last) {
        let v = mapValues[first];
        let w = src[base + structure[p.k + 1u + first] * p.inner];
        s = select(v * w, w, v == 1.0);
        for (var e = first + 1u; e < last; e++) {
          s += mapValues[e] * src[base + structure[p.k + 1u + e] * p.inner];
        }
      }
      dst[(r * p.k + j) * p.inner + t] = s;
    }
  }
}
