/** Small models built from the public modules, and float64 helpers, for tests of the method on CPU-checkable sizes. */
import { Module } from '../src/nn/module.js';
import { AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../src/nn/layers.js';
import type { Tensor } from '../src/tensor/tensor.js';

/**
 * VGG-like: conv(3->4) bn relu pool, conv(4->6) bn relu pool, conv(6->8) bn relu pool, pool, so the last
 * map is 8 x 2 x 2 and the classifier Linear(32, 10) reads 4 columns per channel (flatten factor 4).
 * Groups: 0 = conv 8 -> classifier, 1 = conv 6 -> conv 8, 2 = conv 4 -> conv 6.
 */
export class TinyVGG extends Module {
  readonly features: Sequential;
  readonly classifier: Linear;
  constructor() {
    super();
    const block = (i: number, o: number) => [new Conv2d(i, o, 3, 1, 1, true), new BatchNorm2d(o), new ReLU(), new MaxPool2d(2, 2)];
    this.features = this.addChild('features', new Sequential(...block(3, 4), ...block(4, 6), ...block(6, 8), new MaxPool2d(2, 2)));
    this.classifier = this.addChild('classifier', new Linear(32, 10));
  }
  forward(x: Tensor): Tensor {
    return this.classifier.call(new Flatten().call(this.features.call(x)));
  }
}

/** conv(3->4, 3x3, pad 1) -> relu -> global average pool -> flatten -> Linear(4, 10): one group of 4 channels. */
export class ConvPoolLinear extends Module {
  readonly conv: Conv2d;
  readonly body: Sequential;
  readonly fc: Linear;
  constructor() {
    super();
    this.conv = this.addChild('conv', new Conv2d(3, 4, 3, 1, 1, true));
    this.body = this.addChild('body', new Sequential(new ReLU(), new AvgPool2d(32, 32), new Flatten()));
    this.fc = this.addChild('fc', new Linear(4, 10));
  }
  forward(x: Tensor): Tensor {
    return this.fc.call(this.body.call(this.conv.call(x)));
  }
}

/** A tiny CIFAR-10 split in the official layout: `count` images of seeded bytes with labels 0..9. */
export function syntheticSplit(count: number, seed = 1): { images: Uint8Array; labels: Uint8Array; count: number } {
  const images = Uint8Array.from({ length: count * 3072 }, (_, i) => (i * 37 + seed * 101 + ((i * i) % 251)) % 256);
  const labels = Uint8Array.from({ length: count }, (_, i) => (i * 7 + seed) % 10);
  return { images, labels, count };
}

/** Float64 conv2d, NCHW x [O, C, K, K] with bias, stride and zero padding. */
export function conv2d64(x: Float64Array, [N, C, H, W]: number[], w: ArrayLike<number>, b: ArrayLike<number> | null, O: number, K: number, stride: number, pad: number): { y: Float64Array; H: number; W: number } {
  const Ho = Math.floor((H + 2 * pad - K) / stride) + 1;
  const Wo = Math.floor((W + 2 * pad - K) / stride) + 1;
  const y = new Float64Array(N * O * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const out = (n * O + o) * Ho * Wo;
      if (b) y.fill(b[o], out, out + Ho * Wo);
      for (let c = 0; c < C; c++) {
        const inp = (n * C + c) * H * W;
        for (let ky = 0; ky < K; ky++) {
          for (let kx = 0; kx < K; kx++) {
            const wv = w[((o * C + c) * K + ky) * K + kx];
            for (let oy = 0; oy < Ho; oy++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= H) continue;
              for (let ox = 0; ox < Wo; ox++) {
                const ix = ox * stride + kx - pad;
                if (ix >= 0 && ix < W) y[out + oy * Wo + ox] += wv * x[inp + iy * W + ix];
              }
            }
          }
        }
      }
    }
  }
  return { y, H: Ho, W: Wo };
}

/** Nuclear norm of a rows x cols matrix by one-sided Jacobi (Hestenes): orthogonalise rows, sum their norms. */
export function nuclearNorm(A: ArrayLike<number>, rows: number, cols: number): number {
  const a = Float64Array.from(A);
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < rows - 1; p++) {
      for (let q = p + 1; q < rows; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < cols; i++) {
          alpha += a[p * cols + i] ** 2;
          beta += a[q * cols + i] ** 2;
          gamma += a[p * cols + i] * a[q * cols + i];
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < cols; i++) {
          const ap = a[p * cols + i];
          const aq = a[q * cols + i];
          a[p * cols + i] = c * ap - s * aq;
          a[q * cols + i] = s * ap + c * aq;
        }
      }
    }
    if (!rotated) break;
  }
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < cols; i++) s += a[r * cols + i] ** 2;
    sum += Math.sqrt(s);
  }
  return sum;
}

/** Divides by the mean, as the importance criteria normalise. */
export function byMean(v: ArrayLike<number>): number[] {
  const mean = Array.from(v).reduce((a, b) => a + b, 0) / v.length;
  return Array.from(v, (x) => x / mean);
}

/** Spec section 4 steps 2-4: rows L2-normalised, C_ij = ||X_i - X_{K_j}||_p (n x k). */
export function referenceCost(X: Float64Array, D: number, kept: number[], p: number): number[] {
  const n = X.length / D;
  const norm = Array.from({ length: n }, (_, i) => Math.hypot(...X.subarray(i * D, (i + 1) * D)));
  const cost: number[] = [];
  for (let i = 0; i < n; i++) {
    for (const j of kept) {
      let s = 0;
      for (let d = 0; d < D; d++) s += Math.abs(X[i * D + d] / norm[i] - X[j * D + d] / norm[j]) ** p;
      cost.push(s ** (1 / p));
    }
  }
  return cost;
}

/** M[j][i] = T[i][j] / sum_j T[i][j] (k x n). */
export function referenceMap(plan: ArrayLike<number>, n: number, k: number): number[] {
  const M = new Array(k * n).fill(0);
  for (let i = 0; i < n; i++) {
    let a = 0;
    for (let j = 0; j < k; j++) a += plan[i * k + j];
    for (let j = 0; j < k; j++) M[j * n + i] = plan[i * k + j] / a;
  }
  return M;
}

/** Float64 log-domain Sinkhorn to a tight tolerance (POT's sinkhorn_log). */
export function referenceSinkhorn(a: number[], b: number[], cost: number[], reg: number): number[] {
  const n = a.length;
  const k = b.length;
  const f = new Array(n).fill(0);
  const g = new Array(k).fill(0);
  const lse = (v: number[]) => {
    const m = Math.max(...v);
    return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
  };
  for (let it = 0; it < 20000; it++) {
    for (let i = 0; i < n; i++) f[i] = reg * Math.log(a[i]) - reg * lse(g.map((gj, j) => (gj - cost[i * k + j]) / reg));
    for (let j = 0; j < k; j++) g[j] = reg * Math.log(b[j]) - reg * lse(f.map((fi, i) => (fi - cost[i * k + j]) / reg));
  }
  return Array.from({ length: n * k }, (_, idx) => Math.exp((f[Math.floor(idx / k)] + g[idx % k] - cost[idx]) / reg));
}
