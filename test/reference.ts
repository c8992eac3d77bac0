/** Float64 CPU references and seeded random data, free of Node APIs (also bundled into the browser test page). */

import { seededRandom } from '../src/nn/init.js';

/** The engine's seeded generator (Mulberry32). */
export const rng = seededRandom;

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Uniform values in [-1, 1) as float32. */
export function randArray(r: () => number, n: number, scaleBy = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scaleBy;
  return out;
}

// ------------------------------------------------------------------ float64 CPU references

export function refMatmul(a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, transA = false, transB = false): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (transA ? a[k * M + m] : a[m * K + k]) * (transB ? b[n * K + k] : b[k * N + n]);
      c[m * N + n] = s;
    }
  }
  return c;
}

/**
 * C and O count all channels; with `groups` (default 1) the weight is [O, C / groups, KH, KW]. `stride` and
 * `pad` apply to both axes unless `strideW` (the width's stride), `pads` ([top, left, bottom, right]) or
 * `dil` ([height, width] dilation) say otherwise.
 */
export interface ConvShape {
  N: number; C: number; H: number; W: number; O: number; KH: number; KW: number; stride: number; pad: number; groups?: number;
  strideW?: number; pads?: [number, number, number, number]; dil?: [number, number];
}

/** [strideH, strideW, top, left, bottom, right, dilH, dilW] */
function convParams(s: ConvShape): number[] {
  return [s.stride, s.strideW ?? s.stride, ...(s.pads ?? [s.pad, s.pad, s.pad, s.pad]), ...(s.dil ?? [1, 1])];
}

export function convOut(s: ConvShape): [number, number] {
  const [sh, sw, pt, pl, pb, pr, dh, dw] = convParams(s);
  return [Math.floor((s.H + pt + pb - dh * (s.KH - 1) - 1) / sh) + 1, Math.floor((s.W + pl + pr - dw * (s.KW - 1) - 1) / sw) + 1];
}

/** Forward and both backward passes of conv2d in float64. */
export function refConv(s: ConvShape, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, dy?: ArrayLike<number>) {
  const [OH, OW] = convOut(s);
  const [sh, sw, pt, pl, , , dilH, dilW] = convParams(s);
  const y = new Float64Array(s.N * s.O * OH * OW);
  const dx = new Float64Array(s.N * s.C * s.H * s.W);
  const G = s.groups ?? 1;
  const Cg = s.C / G; // input channels each output channel sees
  const dw = new Float64Array(s.O * Cg * s.KH * s.KW);
  const db = new Float64Array(s.O);
  for (let n = 0; n < s.N; n++) {
    for (let o = 0; o < s.O; o++) {
      const c0 = Math.floor(o / (s.O / G)) * Cg; // first input channel of o's group
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const yi = ((n * s.O + o) * OH + oy) * OW + ox;
          const g = dy ? dy[yi] : 0;
          let acc = b ? b[o] : 0;
          db[o] += g;
          for (let cg = 0; cg < Cg; cg++) {
            const c = c0 + cg;
            for (let ky = 0; ky < s.KH; ky++) {
              const iy = oy * sh - pt + ky * dilH;
              if (iy < 0 || iy >= s.H) continue;
              for (let kx = 0; kx < s.KW; kx++) {
                const ix = ox * sw - pl + kx * dilW;
                if (ix < 0 || ix >= s.W) continue;
                const xi = ((n * s.C + c) * s.H + iy) * s.W + ix;
                const wi = ((o * Cg + cg) * s.KH + ky) * s.KW + kx;
                acc += x[xi] * w[wi];
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
            }
          }
          y[yi] = acc;
        }
      }
    }
  }
  return { y, dx, dw, db };
}

export function refBatchNorm(x: ArrayLike<number>, shape: number[], gamma: ArrayLike<number>, beta: ArrayLike<number>,
  runMean: ArrayLike<number>, runVar: ArrayLike<number>, dy: ArrayLike<number>, train: boolean, eps = 1e-5, momentum = 0.1) {
  const [N, C, H, W] = shape;
  const HW = H * W;
  const cnt = N * HW;
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const newMean = new Float64Array(C);
  const newVar = new Float64Array(C);
  const idx = (n: number, c: number, i: number) => (n * C + c) * HW + i;
  for (let c = 0; c < C; c++) {
    let mean = runMean[c];
    let v = runVar[c];
    if (train) {
      mean = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) mean += x[idx(n, c, i)];
      mean /= cnt;
      v = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) v += (x[idx(n, c, i)] - mean) ** 2;
      v /= cnt;
      newMean[c] = (1 - momentum) * runMean[c] + momentum * mean;
      newVar[c] = (1 - momentum) * runVar[c] + momentum * (v * cnt) / (cnt - 1);
    } else {
      newMean[c] = runMean[c];
      newVar[c] = runVar[c];
    }
    const invstd = 1 / Math.sqrt(v + eps);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < HW; i++) {
        const k = idx(n, c, i);
        const xhat = (x[k] - mean) * invstd;
        y[k] = xhat * gamma[c] + beta[c];
        dgamma[c] += dy[k] * xhat;
        dbeta[c] += dy[k];
      }
    }
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < HW; i++) {
        const k = idx(n, c, i);
        const xhat = (x[k] - mean) * invstd;
        dx[k] = train
          ? gamma[c] * invstd * (dy[k] - dbeta[c] / cnt - (xhat * dgamma[c]) / cnt)
          : gamma[c] * invstd * dy[k];
      }
    }
  }
  return { y, dx, dgamma, dbeta, newMean, newVar };
}

/** PyTorch's pooled size (pooling_output_shape): with ceil_mode the last window must start inside the input or its left padding. */
export function refPooledSize(size: number, k: number, stride: number, pad: number, ceilMode: boolean): number {
  let out = Math.floor((size + 2 * pad - k + (ceilMode ? stride - 1 : 0)) / stride) + 1;
  if (ceilMode && (out - 1) * stride >= size + pad) out--;
  return out;
}

/**
 * Max and average pooling with implicit padding on each side, as PyTorch: max-pool treats padded cells
 * as -inf; avg-pool sums the real cells and divides by the window clipped to the padded input
 * (count_include_pad, k*k except ceil_mode's partial windows) or to the input (countIncludePad false).
 */
export function refPool(kind: 'max' | 'avg', x: ArrayLike<number>, shape: number[], k: number, stride: number, dy: ArrayLike<number>, pad = 0, ceilMode = false, countIncludePad = true) {
  const [N, C, H, W] = shape;
  const OH = refPooledSize(H, k, stride, pad, ceilMode);
  const OW = refPooledSize(W, k, stride, pad, ceilMode);
  const y = new Float64Array(N * C * OH * OW);
  const dx = new Float64Array(x.length);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const yi = (pl * OH + oy) * OW + ox;
        let best = -Infinity;
        let bestIdx = -1;
        let s = 0;
        const cells: number[] = [];
        for (let ky = 0; ky < k; ky++) {
          for (let kx = 0; kx < k; kx++) {
            const iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
            if (iy < 0 || ix < 0 || iy >= H || ix >= W) continue; // padding: -inf for max, 0 for the sum
            const xi = (pl * H + iy) * W + ix;
            cells.push(xi);
            s += x[xi];
            if (x[xi] > best) { best = x[xi]; bestIdx = xi; }
          }
        }
        // avg_pool2d's divide_factor: hend = min(hstart + k, H + pad), before clipping to the input.
        const y0 = oy * stride - pad, x0 = ox * stride - pad;
        const padded = (Math.min(y0 + k, H + pad) - y0) * (Math.min(x0 + k, W + pad) - x0);
        const divisor = countIncludePad ? padded : cells.length;
        if (kind === 'max') {
          y[yi] = best;
          dx[bestIdx] += dy[yi];
        } else {
          y[yi] = s / divisor;
          for (const xi of cells) dx[xi] += dy[yi] / divisor;
        }
      }
    }
  }
  return { y, dx };
}

/** torch.nn.AdaptiveAvgPool2d to [OH, OW]: bin i spans rows floor(i*H/OH) .. ceil((i+1)*H/OH) - 1. */
export function refAdaptiveAvgPool(x: ArrayLike<number>, shape: number[], OH: number, OW: number, dy: ArrayLike<number>) {
  const [N, C, H, W] = shape;
  const y = new Float64Array(N * C * OH * OW);
  const dx = new Float64Array(x.length);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < OH; oy++) {
      const y0 = Math.floor((oy * H) / OH), y1 = Math.ceil(((oy + 1) * H) / OH);
      for (let ox = 0; ox < OW; ox++) {
        const x0 = Math.floor((ox * W) / OW), x1 = Math.ceil(((ox + 1) * W) / OW);
        const yi = (pl * OH + oy) * OW + ox;
        const count = (y1 - y0) * (x1 - x0);
        let s = 0;
        for (let iy = y0; iy < y1; iy++) {
          for (let ix = x0; ix < x1; ix++) {
            s += x[(pl * H + iy) * W + ix];
            dx[(pl * H + iy) * W + ix] += dy[yi] / count;
          }
        }
        y[yi] = s / count;
      }
    }
  }
  return { y, dx };
}

export function refCrossEntropy(logits: ArrayLike<number>, labels: ArrayLike<number>, B: number, C: number) {
  let loss = 0;
  const d = new Float64Array(B * C);
  for (let r = 0; r < B; r++) {
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, logits[r * C + j]);
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(logits[r * C + j] - m);
    const lse = m + Math.log(s);
    loss += lse - logits[r * C + labels[r]];
    for (let j = 0; j < C; j++) d[r * C + j] = (Math.exp(logits[r * C + j] - lse) - (j === labels[r] ? 1 : 0)) / B;
  }
  return { loss: loss / B, dlogits: d };
}

export function refSgd(p0: ArrayLike<number>, grads: ArrayLike<number>[], o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }) {
  const p = Float64Array.from(p0);
  const buf = new Float64Array(p.length);
  grads.forEach((g, step) => {
    for (let i = 0; i < p.length; i++) {
      let d = g[i] + o.weightDecay * p[i];
      if (o.momentum !== 0) {
        buf[i] = step === 0 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * d;
    }
  });
  return p;
}

// ------------------------------------------------------------------ activations (PyTorch's semantics, NaN included)

/**
 * Forward f and derivative df of each activation, one line each, written with PyTorch's own comparisons
 * (aten's CPU kernels), so kinks and NaN behave as there: e.g. clamp passes the gradient at its bounds,
 * hardtanh (ReLU6) does not; relu, hardtanh and hardswish pass it for NaN inputs, clamp and hardsigmoid give 0.
 */
export const sigmoid64 = (x: number) => 1 / (1 + Math.exp(-x));
export const REF_ACTIVATIONS: Record<string, { f: (x: number, a: number, b: number) => number; df: (x: number, a: number, b: number) => number }> = {
  relu: { f: (x) => (Number.isNaN(x) ? x : Math.max(x, 0)), df: (x) => (x <= 0 ? 0 : 1) },
  clip: { f: (x, lo, hi) => (Number.isNaN(x) ? x : Math.min(Math.max(x, lo), hi)), df: (x, lo, hi) => (x >= lo && x <= hi ? 1 : 0) },
  hardtanh: { f: (x, lo, hi) => (Number.isNaN(x) ? x : Math.min(Math.max(x, lo), hi)), df: (x, lo, hi) => (x <= lo || x >= hi ? 0 : 1) },
  hardSigmoid: { f: (x, a, b) => (Number.isNaN(x) ? x : Math.max(0, Math.min(1, a * x + b))), df: (x, a, b) => (a * x + b > 0 && a * x + b < 1 ? a : 0) },
  hardSwish: { f: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6, df: (x) => (x < -3 ? 0 : x <= 3 ? x / 3 + 0.5 : 1) },
  sigmoid: { f: (x) => sigmoid64(x), df: (x) => sigmoid64(x) * (1 - sigmoid64(x)) },
  silu: { f: (x) => x * sigmoid64(x), df: (x) => sigmoid64(x) * (1 + x * (1 - sigmoid64(x))) },
};

/** a * b under NumPy broadcasting of both shapes to `out` (right-aligned), and the gradients of both for upstream dy. */
export function refMulBroadcast(a: ArrayLike<number>, aShape: number[], b: ArrayLike<number>, bShape: number[], dy: ArrayLike<number>) {
  const rank = Math.max(aShape.length, bShape.length);
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const as = pad(aShape), bs = pad(bShape);
  const out = as.map((d, i) => Math.max(d, bs[i]));
  const n = out.reduce((x, y) => x * y, 1);
  const index = (s: number[], i: number) => {
    let flat = 0;
    for (let d = 0, rest = i, div = n; d < rank; d++) {
      div /= out[d];
      const c = Math.floor(rest / div);
      rest -= c * div;
      flat = flat * s[d] + (s[d] === 1 ? 0 : c);
    }
    return flat;
  };
  const y = new Float64Array(n), da = new Float64Array(a.length), db = new Float64Array(b.length);
  for (let i = 0; i < n; i++) {
    const ia = index(as, i), ib = index(bs, i);
    y[i] = a[ia] * b[ib];
    da[ia] += dy[i] * b[ib];
    db[ib] += dy[i] * a[ia];
  }
  return { y, da, db, shape: out };
}

/** torch.cat along `axis` in float64 (each input viewed as [outer, D_i, inner]). */
export function refConcat(xs: ArrayLike<number>[], shapes: number[][], axis: number): Float64Array {
  const outer = shapes[0].slice(0, axis).reduce((a, b) => a * b, 1), inner = shapes[0].slice(axis + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) xs.forEach((x, i) => out.push(...Array.from(x).slice(o * shapes[i][axis] * inner, (o + 1) * shapes[i][axis] * inner)));
  return Float64Array.from(out);
}

/** x[..., start:end, ...] along `axis` in float64. */
export function refSlice(x: ArrayLike<number>, shape: number[], axis: number, start: number, end: number): Float64Array {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1), inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) out.push(...Array.from(x).slice((o * shape[axis] + start) * inner, (o * shape[axis] + end) * inner));
  return Float64Array.from(out);
}
