/**
 * Every kernel against a float64 CPU reference on at least 50 random shapes each, with odd sizes that
 * are not multiples of the tiles (GEMM tiles are 8 rows x 4*lanes columns). Seeded, so failures repeat.
 * Shapes are kept small: this runs on software Vulkan.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import * as ew from '../src/kernels/elementwise.js';
import { matmul } from '../src/kernels/gemm.js';
import { sgdStep } from '../src/kernels/norm_pool_loss.js';
import { destroyRuntime, fromArray, getRuntime, tidy, type Tensor } from '../src/tensor/tensor.js';
import {
  convOut, expectClose, type ConvShape, gpu, randArray, randInt, refBatchNorm, refConv, refCrossEntropy, refMatmul, refPool, refAdaptiveAvgPool, refSgd, rng,
} from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const CASES = 50;

function leaf(values: Float32Array, shape: number[]): Tensor {
  const t = fromArray(values, shape);
  t.requiresGrad = true;
  return t;
}

async function readAndFree(...ts: Tensor[]): Promise<Float32Array[]> {
  const out = await Promise.all(ts.map((t) => t.data()));
  ts.forEach((t) => t.dispose());
  return out;
}

describe('random shapes vs float64 CPU', () => {
  async function checkMatmul(cases: number, seed: number) {
    const r = rng(seed);
    for (let i = 0; i < cases; i++) {
      const M = randInt(r, 1, 70), K = randInt(r, 1, 90), N = randInt(r, 1, 140);
      const transA = r() < 0.3, transB = r() < 0.3, withBias = r() < 0.3;
      const batch = r() < 0.2 ? randInt(r, 2, 3) : 0;
      const a = randArray(r, (batch || 1) * M * K), b = randArray(r, (batch || 1) * K * N), bias = randArray(r, N);
      const aShape = transA ? [K, M] : [M, K], bShape = transB ? [N, K] : [K, N];
      const out = tidy(() => matmul(
        fromArray(a, batch ? [batch, ...aShape] : aShape), fromArray(b, batch ? [batch, ...bShape] : bShape),
        { transA, transB, bias: withBias ? fromArray(bias, [N]) : null },
      ));
      const got = await out.dataAndDispose();
      for (let bi = 0; bi < (batch || 1); bi++) {
        const ref = refMatmul(a.subarray(bi * M * K, (bi + 1) * M * K), b.subarray(bi * K * N, (bi + 1) * K * N), M, K, N, transA, transB);
        if (withBias) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) ref[m * N + n] += bias[n];
        expectClose(got.subarray(bi * M * N, (bi + 1) * M * N), ref, 1e-5, 1e-4, `matmul #${i} ${M}x${K}x${N} tA=${transA} tB=${transB} batch=${batch}`);
      }
    }
  }

  type ConvPicker = (r: () => number, i: number) => ConvShape;

  /** Tiny kernels as in VGG/ResNet CIFAR models: 1x1, 2x2, 3x3, stride 1-2, padding 0-1, dense. */
  const smallConv: ConvPicker = (r) => {
    const k = r() < 0.7 ? 3 : r() < 0.5 ? 1 : 2;
    return { N: randInt(r, 1, 3), C: randInt(r, 1, 9), H: randInt(r, k, 11), W: randInt(r, k, 11), O: randInt(r, 1, 13), KH: k, KW: k, stride: randInt(r, 1, 2), pad: k === 1 ? 0 : randInt(r, 0, 1) };
  };
  /** Kernels 4-11 (more than 32 taps from 6x6 on); every fifth case is the ImageNet stem, 7x7 stride 2 padding 3. */
  const largeConv: ConvPicker = (r, i) => {
    const stem = i % 5 === 0;
    const k = stem ? 7 : [4, 5, 6, 7, 9, 11][randInt(r, 0, 5)];
    const pad = stem ? 3 : randInt(r, 0, Math.floor(k / 2));
    const lo = Math.max(1, k - 2 * pad);
    return { N: randInt(r, 1, 2), C: randInt(r, 1, 4), H: randInt(r, lo, lo + 9), W: randInt(r, lo, lo + 9), O: randInt(r, 1, 18), KH: k, KW: k, stride: stem ? 2 : randInt(r, 1, 3), pad };
  };
  /** Groups 2 and 4 and depthwise (groups = in = out), kernels 1-7. */
  const groupedConv: ConvPicker = (r, i) => {
    const k = [1, 3, 3, 5, 7][randInt(r, 0, 4)];
    const depthwise = i % 3 === 0;
    const groups = depthwise ? randInt(r, 1, 20) : [2, 4][i % 2];
    const C = depthwise ? groups : groups * randInt(r, 1, 3), O = depthwise ? groups : groups * randInt(r, 1, 5);
    const pad = randInt(r, 0, Math.floor(k / 2)), lo = Math.max(1, k - 2 * pad);
    return { N: randInt(r, 1, 3), C, H: randInt(r, lo, lo + 8), W: randInt(r, lo, lo + 8), O, KH: k, KW: k, stride: randInt(r, 1, 2), pad, groups };
  };

  async function checkConv(cases: number, seed: number, pick: ConvPicker) {
    const r = rng(seed);
    for (let i = 0; i < cases; i++) {
      const s = pick(r, i);
      const k = s.KH, groups = s.groups ?? 1;
      const [OH, OW] = convOut(s);
      const x = randArray(r, s.N * s.C * s.H * s.W), w = randArray(r, s.O * (s.C / groups) * k * k), b = randArray(r, s.O), dy = randArray(r, s.N * s.O * OH * OW);
      const [X, Wt, B] = [leaf(x, [s.N, s.C, s.H, s.W]), leaf(w, [s.O, s.C / groups, k, k]), leaf(b, [s.O])];
      const y = tidy(() => {
        const y = ag.conv2d(X, Wt, B, { stride: s.stride, padding: s.pad, groups });
        ag.backward(y, fromArray(dy, y.shape));
        return y;
      });
      const ref = refConv(s, x, w, b, dy);
      const what = `conv #${i} ${JSON.stringify(s)}`;
      const [gy, gx, gw, gb] = await readAndFree(y, X.grad!, Wt.grad!, B.grad!);
      expectClose(gy, ref.y, 1e-5, 1e-4, `${what} y`);
      expectClose(gx, ref.dx, 1e-5, 1e-4, `${what} dx`);
      expectClose(gw, ref.dw, 1e-4, 1e-4, `${what} dw`);
      expectClose(gb, ref.db, 1e-4, 1e-4, `${what} db`);
      [X, Wt, B].forEach((t) => t.dispose());
    }
  }

  // Timeouts sized for a loaded 2-core machine, where two of these reached the old 120 s default.
  it(`matmul (plain, transposed, batched, bias) on ${CASES} shapes`, () => checkMatmul(CASES, 1), 300_000);
  it(`conv2d forward, dX, dW, db on ${CASES} shapes (1x1, 2x2, 3x3, stride 1-2, padding 0-1)`, () => checkConv(CASES, 2, smallConv), 300_000);
  // Each kernel size compiles its own pipelines (slow on lavapipe the first time): longer timeouts.
  it(`conv2d with kernels 4-11 (incl. 7x7 stride 2 padding 3), stride 1-3, on ${CASES} shapes`, () => checkConv(CASES, 8, largeConv), 300_000);
  it(`grouped conv2d (2, 4 groups, depthwise) forward, dX, dW, db on ${CASES} shapes`, () => checkConv(CASES, 9, groupedConv), 300_000);

  // The GEMM family has a subgroup path (used when the device has subgroups) and a portable one
  // (browsers without subgroups, e.g. SwiftShader).
  async function portable(check: () => Promise<void>) {
    const rt = getRuntime();
    const had = rt.subgroups;
    rt.subgroups = false;
    try {
      await check();
    } finally {
      rt.subgroups = had;
    }
  }
  it('the portable GEMM path (no subgroups) on 15 matmul and 15 small conv shapes', () => portable(async () => {
    await checkMatmul(15, 101);
    await checkConv(15, 102, smallConv);
  }), 300_000);
  // Each kernel size is its own pipeline, slow to compile on lavapipe: fewer cases here.
  it('the portable GEMM path on 10 large-kernel conv shapes', () => portable(() => checkConv(10, 103, largeConv)), 300_000);
  it('the portable GEMM path on 15 grouped conv shapes', () => portable(() => checkConv(15, 104, groupedConv)), 300_000);

  it(`batch-norm train and eval, forward and backward, on ${CASES} shapes`, async () => {
    const r = rng(3);
    for (let i = 0; i < CASES; i++) {
      const shape = [randInt(r, 1, 5), randInt(r, 1, 17), randInt(r, 1, 7), randInt(r, 1, 7)];
      const train = i % 2 === 0;
      if (train && shape[0] * shape[2] * shape[3] < 2) shape[0] = 2;
      const n = shape.reduce((a, b) => a * b), C = shape[1];
      const x = randArray(r, n, 3), dy = randArray(r, n), gamma = randArray(r, C), beta = randArray(r, C);
      const rm = randArray(r, C), rv = Float32Array.from(randArray(r, C), (v) => 0.5 + Math.abs(v));
      const X = leaf(x, shape);
      const state = { gamma: leaf(gamma, [C]), beta: leaf(beta, [C]), runningMean: fromArray(rm, [C]), runningVar: fromArray(rv, [C]) };
      const y = tidy(() => {
        const y = ag.batchNorm2d(X, state, { training: train });
        ag.backward(y, fromArray(dy, shape));
        return y;
      });
      const ref = refBatchNorm(x, shape, gamma, beta, rm, rv, dy, train);
      const what = `bn #${i} [${shape}] train=${train}`;
      const [gy, gx, gg, gbeta, m, v] = await readAndFree(y, X.grad!, state.gamma.grad!, state.beta.grad!, state.runningMean, state.runningVar);
      expectClose(gy, ref.y, 1e-5, 1e-4, `${what} y`);
      expectClose(gx, ref.dx, 1e-4, 1e-3, `${what} dx`);
      expectClose(gg, ref.dgamma, 1e-4, 1e-4, `${what} dgamma`);
      expectClose(gbeta, ref.dbeta, 1e-4, 1e-4, `${what} dbeta`);
      expectClose(m, ref.newMean, 1e-6, 1e-5, `${what} running mean`);
      expectClose(v, ref.newVar, 1e-5, 1e-4, `${what} running var`);
      [X, state.gamma, state.beta].forEach((t) => t.dispose());
    }
  });

  /** Pooling of `kind` on 2 * cases random shapes (max and avg alternate where both are asked for). */
  async function checkPool(kinds: ('max' | 'avg')[], cases: number, seed: number, padded: boolean) {
    const r = rng(seed);
    for (let i = 0; i < cases; i++) {
      const kind = kinds[i % kinds.length];
      // Every fourth padded case is the ImageNet stem's max-pool, 3x3 stride 2 padding 1.
      const stem = padded && i % 4 === 0;
      const k = stem ? 3 : randInt(r, 1, 5), stride = stem ? 2 : randInt(r, 1, 3);
      const pad = stem ? 1 : padded ? randInt(r, 0, Math.floor(k / 2)) : 0;
      const lo = Math.max(1, k - 2 * pad);
      const shape = [randInt(r, 1, 3), randInt(r, 1, 6), randInt(r, lo, 12), randInt(r, lo, 12)];
      const x = randArray(r, shape.reduce((a, b) => a * b));
      const X = leaf(x, shape);
      const op = kind === 'max' ? ag.maxPool2d : ag.avgPool2d;
      let dy: Float32Array = new Float32Array(0);
      const y = tidy(() => {
        const y = op(X, { kernel: k, stride, padding: pad });
        dy = randArray(r, y.size);
        ag.backward(y, fromArray(dy, y.shape));
        return y;
      });
      const ref = refPool(kind, x, shape, k, stride, dy, pad);
      const what = `${kind}pool #${i} [${shape}] k${k} s${stride} p${pad}`;
      const [gy, gx] = await readAndFree(y, X.grad!);
      expectClose(gy, ref.y, 1e-6, 1e-6, `${what} y`);
      expectClose(gx, ref.dx, 1e-6, 1e-5, `${what} dx`);
      X.dispose();
    }
  }

  it(`max and avg pooling forward and backward on ${CASES} shapes each`, () => checkPool(['max', 'avg'], 2 * CASES, 4, false));
  it(`padded max pooling (incl. 3x3 stride 2 padding 1) forward and backward on ${CASES} shapes`, () => checkPool(['max'], CASES, 10, true));
  it(`padded avg pooling (count_include_pad) forward and backward on ${CASES} shapes`, () => checkPool(['avg'], CASES, 11, true));

  it(`adaptive average pooling (uneven bins, global) forward and backward on ${CASES} shapes`, async () => {
    const r = rng(12);
    // Named cases first: 7 -> 3, 5 -> 2, 6x9 -> 4x4, global pooling of a non-square map, upsampling 3 -> 5.
    const fixed: [number, number, number, number][] = [[7, 7, 3, 3], [5, 5, 2, 2], [6, 9, 4, 4], [7, 5, 1, 1], [3, 3, 5, 5]];
    for (let i = 0; i < CASES; i++) {
      const [H, W, OH, OW] = fixed[i] ?? [randInt(r, 1, 13), randInt(r, 1, 13), randInt(r, 1, 7), randInt(r, 1, 7)];
      const shape = [randInt(r, 1, 3), randInt(r, 1, 5), H, W];
      const x = randArray(r, shape.reduce((a, b) => a * b));
      const X = leaf(x, shape);
      const dy = randArray(r, shape[0] * shape[1] * OH * OW);
      const y = tidy(() => {
        const y = ag.adaptiveAvgPool2d(X, [OH, OW]);
        ag.backward(y, fromArray(dy, y.shape));
        return y;
      });
      const ref = refAdaptiveAvgPool(x, shape, OH, OW, dy);
      const what = `adaptive #${i} [${shape}] -> ${OH}x${OW}`;
      const [gy, gx] = await readAndFree(y, X.grad!);
      expectClose(gy, ref.y, 1e-6, 1e-5, `${what} y`);
      expectClose(gx, ref.dx, 1e-6, 1e-5, `${what} dx`);
      X.dispose();
    }
  });

  it(`softmax cross-entropy and its gradient on ${CASES} shapes`, async () => {
    const r = rng(5);
    for (let i = 0; i < CASES; i++) {
      const B = randInt(r, 1, 70), C = randInt(r, 2, 150);
      const logits = randArray(r, B * C, 8);
      const labels = Float32Array.from({ length: B }, () => randInt(r, 0, C - 1));
      const L = leaf(logits, [B, C]);
      const loss = tidy(() => {
        const loss = ag.crossEntropy(L, fromArray(labels, [B]));
        ag.backward(loss);
        return loss;
      });
      const ref = refCrossEntropy(logits, labels, B, C);
      const [gl, gd] = await readAndFree(loss, L.grad!);
      expectClose(gl, [ref.loss], 1e-5, 1e-5, `ce #${i} ${B}x${C} loss`);
      expectClose(gd, ref.dlogits, 1e-6, 1e-4, `ce #${i} ${B}x${C} dlogits`);
      L.dispose();
    }
  });

  it(`elementwise ops and reductions on ${CASES} sizes`, async () => {
    const r = rng(6);
    for (let i = 0; i < CASES; i++) {
      const n = randInt(r, 1, 5000);
      const a = randArray(r, n), b = randArray(r, n);
      const alpha = r() * 4 - 2, beta = r() * 4 - 2;
      const outer = randInt(r, 1, 4), C = Math.max(1, Math.floor(n / outer / randInt(r, 1, 7)));
      const inner = Math.floor(n / outer / C);
      const got = await Promise.all(tidy(() => {
        const A = fromArray(a, [n]), Bt = fromArray(b, [n]);
        return [ew.relu(A), ew.reluBackward(A, Bt), ew.axpby(alpha, A, beta, Bt), ew.mul(A, Bt), ew.affine(A, alpha, beta),
          ew.fill([n], alpha), ew.sumAxis(A, outer, C, inner), ew.sumProdAxis(A, Bt, outer, C, inner, alpha), ew.sumAll(A)];
      }).map((t) => t.dataAndDispose()));
      const sumAxisRef = (f: (j: number) => number, s = 1) => Array.from({ length: C }, (_, c) => {
        let acc = 0;
        for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) acc += f((o * C + c) * inner + k);
        return s * acc;
      });
      const w = `elementwise #${i} n=${n}`;
      expectClose(got[0], Array.from(a, (v) => Math.max(v, 0)), 0, 0, `${w} relu`);
      expectClose(got[1], Array.from(a, (v, j) => (v > 0 ? b[j] : 0)), 0, 0, `${w} relu_backward`);
      expectClose(got[2], Array.from(a, (v, j) => alpha * v + beta * b[j]), 1e-6, 1e-6, `${w} axpby`);
      expectClose(got[3], Array.from(a, (v, j) => v * b[j]), 1e-7, 1e-6, `${w} mul`);
      expectClose(got[4], Array.from(a, (v) => alpha * v + beta), 1e-6, 1e-6, `${w} affine`);
      expectClose(got[5], new Array(n).fill(Math.fround(alpha)), 0, 0, `${w} fill`);
      expectClose(got[6], sumAxisRef((j) => a[j]), 1e-5, 1e-5, `${w} sumAxis [${outer},${C},${inner}]`);
      expectClose(got[7], sumAxisRef((j) => a[j] * b[j], alpha), 1e-5, 1e-5, `${w} sumProdAxis`);
      expectClose(got[8], [a.reduce((s, v) => s + v, 0)], 1e-4, 1e-5, `${w} sumAll`);
    }
  });

  it(`SGD (plain, momentum, nesterov, weight decay, dampening) on ${CASES} configurations`, async () => {
    const r = rng(7);
    for (let i = 0; i < CASES; i++) {
      const n = randInt(r, 1, 3000);
      const nesterov = r() < 0.4;
      const o = {
        lr: 0.001 + r() * 0.5, momentum: nesterov || r() < 0.7 ? r() : 0, dampening: nesterov ? 0 : r() < 0.3 ? r() * 0.5 : 0,
        weightDecay: r() < 0.5 ? r() * 1e-2 : 0, nesterov,
      };
      const p0 = randArray(r, n);
      const gs = [randArray(r, n), randArray(r, n), randArray(r, n)];
      const P = fromArray(p0, [n]).keep(), buf = fromArray(new Float32Array(n), [n]).keep();
      gs.forEach((g, step) => tidy(() => sgdStep(P, fromArray(g, [n]), buf, { ...o, first: step === 0 })));
      const [got] = await readAndFree(P);
      buf.dispose();
      expectClose(got, refSgd(p0, gs, o), 1e-6, 1e-5, `sgd #${i} ${JSON.stringify(o)}`);
    }
  });
});
