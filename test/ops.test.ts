/**
 * The ops added for MobileNet/EfficientNet/DenseNet-style models, each against a float64 CPU reference
 * (test/reference.ts, PyTorch's semantics) on seeded random shapes, forward and backward through
 * autograd, plus the op names the pruner and ONNX code key on, and the one-line errors.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import { Conv2d, Hardsigmoid, Hardswish, Hardtanh, ReLU, ReLU6, Sigmoid, SiLU } from '../src/nn/layers.js';
import { ArgumentError, UnsupportedError } from '../src/errors.js';
import { destroyRuntime, fromArray, getRuntime, tidy, type Tensor } from '../src/tensor/tensor.js';
import { convOut, type ConvShape, expectClose, gpu, randArray, randInt, REF_ACTIVATIONS, refConcat, refConv, refMulBroadcast, refPool, refSlice, rng } from './helpers.js';

beforeAll(gpu);

/** PyTorch's answers on the tricky points (test/fixtures/pytorch_ops.py; null stands for NaN). */
const torchFixture = JSON.parse(readFileSync(new URL('./fixtures/pytorch-ops.json', import.meta.url), 'utf8')) as {
  values: (number | null)[];
  activations: { op: string; params: { min?: number; max?: number }; y: (number | null)[]; dx: (number | null)[] }[];
  pools: {
    kind: 'max' | 'avg'; shape: number[]; kernel: number; stride: number; padding: number; ceilMode: boolean; countIncludePad: boolean;
    x: number[]; dy: number[]; outShape: number[]; y: number[]; dx: number[];
  }[];
};
const nanOf = (v: number | null) => (v === null ? NaN : v);
afterAll(destroyRuntime);

function leaf(values: Float32Array, shape: number[]): Tensor {
  const t = fromArray(values, shape).keep();
  t.requiresGrad = true;
  return t;
}

/** Runs `f` forward and backward with upstream `dy`; returns y, its recorded op name and the leaves' gradients. */
async function forwardBackward(leaves: Tensor[], f: () => Tensor, dyOf: (size: number) => Float32Array) {
  let op: string | undefined;
  const y = tidy(() => {
    const y = f();
    op = y.node?.op;
    ag.backward(y, fromArray(dyOf(y.size), y.shape));
    return y;
  });
  const shape = [...y.shape];
  const out = await y.dataAndDispose();
  const grads = await Promise.all(leaves.map((t) => t.grad!.data()));
  leaves.forEach((t) => {
    t.grad!.dispose();
    t.dispose();
  });
  return { y: out, shape, op, grads };
}

describe('activations vs float64 PyTorch semantics (NaN, kinks, saturation)', () => {
  type Act = { name: string; op: string; ref: string; params: (r: () => number) => [number, number]; run: (x: Tensor, a: number, b: number) => Tensor };
  const bounds = (r: () => number): [number, number] => {
    const lo = r() < 0.2 ? -Infinity : -4 * r(), hi = r() < 0.2 ? Infinity : 4 * r();
    return [Math.fround(lo), Math.fround(hi)];
  };
  const none = (): [number, number] => [0, 0];
  const ACTS: Act[] = [
    { name: 'relu', op: 'relu', ref: 'relu', params: none, run: (x) => ag.relu(x) },
    { name: 'ReLU module', op: 'relu', ref: 'relu', params: none, run: (x) => new ReLU().call(x) },
    { name: 'clip (torch.clamp)', op: 'clip', ref: 'clip', params: bounds, run: (x, lo, hi) => ag.clip(x, lo, hi) },
    { name: 'ReLU6 module', op: 'clip', ref: 'hardtanh', params: () => [0, 6], run: (x) => new ReLU6().call(x) },
    { name: 'Hardtanh module', op: 'clip', ref: 'hardtanh', params: bounds, run: (x, lo, hi) => new Hardtanh(lo, hi).call(x) },
    { name: 'Hardsigmoid module (PyTorch x/6 + 1/2)', op: 'hardSigmoid', ref: 'hardSigmoid', params: () => [Math.fround(1 / 6), 0.5], run: (x) => new Hardsigmoid().call(x) },
    {
      name: 'hardSigmoid (ONNX alpha, beta)', op: 'hardSigmoid', ref: 'hardSigmoid',
      params: (r) => [Math.fround((r() < 0.5 ? -1 : 1) * (0.1 + r())), Math.fround(2 * r() - 1)], run: (x, a, b) => ag.hardSigmoid(x, a, b),
    },
    { name: 'Hardswish module', op: 'hardSwish', ref: 'hardSwish', params: none, run: (x) => new Hardswish().call(x) },
    { name: 'Sigmoid module', op: 'sigmoid', ref: 'sigmoid', params: none, run: (x) => new Sigmoid().call(x) },
    { name: 'SiLU module', op: 'silu', ref: 'silu', params: none, run: (x) => new SiLU().call(x) },
  ];
  for (const [k, act] of ACTS.entries()) {
    it(`${act.name} forward and backward on 12 sizes`, async () => {
      const r = rng(100 + k);
      for (let i = 0; i < 12; i++) {
        const n = randInt(r, 1, 3000);
        const [a, b] = act.params(r);
        const x = randArray(r, n, 8);
        // The kinks of every op, its bounds, saturation and NaN, at random places.
        const special = [NaN, 0, -0, -3, 3, 6, a, b, 100, -100, 1e-3, -1e-3];
        for (let s = 0; s < Math.min(n, 24); s++) x[randInt(r, 0, n - 1)] = special[s % special.length];
        const X = leaf(x, [n]);
        let dy: Float32Array = new Float32Array(0);
        const got = await forwardBackward([X], () => act.run(X, a, b), (size) => (dy = randArray(r, size)));
        const { f, df } = REF_ACTIVATIONS[act.ref];
        const what = `${act.name} #${i} n=${n} params ${a}, ${b}`;
        expect(got.op, `${what}: recorded op`).toBe(act.op);
        expectClose(got.y, Array.from(x, (v) => f(v, a, b)), 1e-6, 1e-5, `${what} y`);
        expectClose(got.grads[0], Array.from(x, (v, j) => dy[j] * df(v, a, b)), 1e-6, 1e-5, `${what} dx`);
      }
    });
  }

  it("equal PyTorch's own forward and gradient on the fixture's kinks, bounds and NaN", async () => {
    const run: Record<string, (x: Tensor, p: { min?: number; max?: number }) => Tensor> = {
      relu: (x) => ag.relu(x), clamp: (x, p) => ag.clip(x, p.min, p.max), relu6: (x) => new ReLU6().call(x), hardtanh: (x, p) => ag.hardtanh(x, p.min, p.max),
      hardsigmoid: (x) => ag.hardSigmoid(x), hardswish: (x) => ag.hardSwish(x), sigmoid: (x) => ag.sigmoid(x), silu: (x) => ag.silu(x),
    };
    const x = Float32Array.from(torchFixture.values, nanOf);
    for (const a of torchFixture.activations) {
      const X = leaf(x, [x.length]);
      const got = await forwardBackward([X], () => run[a.op](X, a.params), (n) => new Float32Array(n).fill(1));
      expectClose(got.y, a.y.map(nanOf), 1e-6, 1e-6, `${a.op} y vs PyTorch`);
      expectClose(got.grads[0], a.dx.map(nanOf), 1e-6, 1e-6, `${a.op} dx vs PyTorch`);
    }
  });

  it('bad bounds and parameters are one-line errors', () => {
    tidy(() => {
      const x = fromArray([1, 2], [2]);
      expect(() => ag.clip(x, 2, 1)).toThrow(ArgumentError);
      expect(() => ag.clip(x, NaN, 1)).toThrow(/clip: bounds \[NaN, 1\] must be numbers with min <= max/);
      expect(() => new Hardtanh(1, -1)).toThrow(/Hardtanh: bounds/);
      expect(() => ag.hardSigmoid(x, 0, 0.5)).toThrow(/hardSigmoid: alpha must be a non-zero finite number/);
    });
  });
});

describe('mul: same shapes and broadcast (squeeze-excitation gates), gradients to both operands', () => {
  it('on 40 random shape pairs', async () => {
    const r = rng(200);
    for (let i = 0; i < 40; i++) {
      const [N, C, H, W] = [randInt(r, 1, 3), randInt(r, 1, 12), randInt(r, 1, 9), randInt(r, 1, 9)];
      const patterns = [[N, C, H, W], [N, C, 1, 1], [1, C, 1, 1], [C, 1, 1], [1], [1, 1, H, W], [N, 1, 1, 1], [C, H, W]];
      const big = [N, C, H, W], small = patterns[i % patterns.length];
      const swap = r() < 0.5; // the broadcast operand first or second
      const [aShape, bShape] = swap ? [small, big] : [big, small];
      const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
      const a = randArray(r, size(aShape)), b = randArray(r, size(bShape));
      const A = leaf(a, aShape), B = leaf(b, bShape);
      let dy: Float32Array = new Float32Array(0);
      const got = await forwardBackward([A, B], () => ag.mul(A, B), (n) => (dy = randArray(r, n)));
      const ref = refMulBroadcast(a, aShape, b, bShape, dy);
      const what = `mul #${i} [${aShape}] * [${bShape}]`;
      expect(got.op).toBe('mul');
      expect(got.shape, what).toEqual(ref.shape);
      expectClose(got.y, ref.y, 1e-6, 1e-5, `${what} y`);
      expectClose(got.grads[0], ref.da, 1e-5, 1e-4, `${what} da`);
      expectClose(got.grads[1], ref.db, 1e-5, 1e-4, `${what} db`);
    }
  });

  it('shapes that do not broadcast, or broadcast along a non-block of dims, are one-line errors', () => {
    tidy(() => {
      const x = fromArray(new Float32Array(24), [2, 3, 2, 2]);
      expect(() => ag.mul(x, fromArray(new Float32Array(6), [2, 3]))).toThrow(ArgumentError);
      expect(() => ag.mul(x, fromArray(new Float32Array(6), [2, 3]))).toThrow(/mul: shapes \[2,3,2,2\] and \[2,3\] do not broadcast/);
      expect(() => ag.mul(x, fromArray(new Float32Array(4), [2, 1, 2, 1]))).toThrow(UnsupportedError);
    });
  });
});

describe('concat, slice and split along an axis (DenseNet, SqueezeNet, GoogLeNet), forward and backward', () => {
  const size = (s: number[]) => s.reduce((p, q) => p * q, 1);

  it('concat of 1-5 inputs on 40 random shapes (channels mostly; other axes, ranks 2-4, a constant input)', async () => {
    const r = rng(300);
    for (let i = 0; i < 40; i++) {
      const rank = i % 5 === 4 ? randInt(r, 2, 3) : 4;
      const base = [randInt(r, 1, 3), randInt(r, 1, 9), randInt(r, 1, 7), randInt(r, 1, 7)].slice(0, rank);
      const axis = i % 4 === 3 ? randInt(r, 0, rank - 1) : 1;
      const shapes = Array.from({ length: randInt(r, 1, 5) }, () => base.map((d, k) => (k === axis ? randInt(r, 1, 6) : d)));
      const xs = shapes.map((s) => randArray(r, size(s)));
      const constant = shapes.length > 1 && r() < 0.3 ? 0 : -1; // input 0 without a gradient
      const X = xs.map((x, k) => (k === constant ? fromArray(x, shapes[k]).keep() : leaf(x, shapes[k])));
      let dy: Float32Array = new Float32Array(0);
      const negative = r() < 0.3; // axis counted from the end
      const got = await forwardBackward(X.filter((_, k) => k !== constant), () => ag.concat(X, negative ? axis - rank : axis), (n) => (dy = randArray(r, n)));
      if (constant === 0) X[0].dispose();
      const what = `concat #${i} ${shapes.map((s) => `[${s}]`).join(' ')} axis ${axis}`;
      expect(got.op).toBe('concat');
      expectClose(got.y, refConcat(xs, shapes, axis), 0, 0, `${what} y`);
      let offset = 0;
      const gradShape = base.map((d, k) => (k === axis ? shapes.reduce((s, sh) => s + sh[axis], 0) : d));
      shapes.forEach((s, k) => {
        const want = refSlice(dy, gradShape, axis, offset, (offset += s[axis]));
        if (k !== constant) expectClose(got.grads[k - (constant === 0 ? 1 : 0)], want, 0, 0, `${what} dx${k}`);
      });
    }
  });

  it('split into 1-4 parts, recombined by concat in another order, on 30 random shapes', async () => {
    const r = rng(301);
    for (let i = 0; i < 30; i++) {
      const shape = [randInt(r, 1, 3), randInt(r, 1, 12), randInt(r, 1, 6), randInt(r, 1, 6)];
      const axis = i % 3 === 2 ? randInt(r, 0, 3) : 1;
      const parts = Math.min(shape[axis], randInt(r, 1, 4));
      const cuts = new Set<number>();
      while (cuts.size < parts - 1) cuts.add(randInt(r, 1, shape[axis] - 1));
      const bounds = [0, ...[...cuts].sort((a, b) => a - b), shape[axis]];
      const sizes = bounds.slice(1).map((b, k) => b - bounds[k]);
      const x = randArray(r, size(shape));
      const X = leaf(x, shape);
      const order = sizes.map((_, k) => k).reverse();
      let dy: Float32Array = new Float32Array(0);
      const got = await forwardBackward([X], () => {
        const pieces = ag.split(X, sizes, axis);
        expect(pieces.every((p) => p.node?.op === 'slice')).toBe(true);
        return ag.concat(order.map((k) => pieces[k]), axis);
      }, (n) => (dy = randArray(r, n)));
      const what = `split #${i} [${shape}] axis ${axis} sizes [${sizes}]`;
      const pieces = sizes.map((_, k) => refSlice(x, shape, axis, bounds[k], bounds[k + 1]));
      const pieceShapes = sizes.map((d) => shape.map((s, k) => (k === axis ? d : s)));
      expectClose(got.y, refConcat(order.map((k) => pieces[k]), order.map((k) => pieceShapes[k]), axis), 0, 0, `${what} y`);
      // The gradient of x is dy's pieces put back in their original order.
      const dyShape = [...got.shape];
      let off = 0;
      const dyPieces: Float64Array[] = [];
      for (const k of order) dyPieces[k] = refSlice(dy, dyShape, axis, off, (off += sizes[k]));
      expectClose(got.grads[0], refConcat(dyPieces, pieceShapes, axis), 0, 0, `${what} dx`);
    }
  });

  it('a single slice: forward, zero-padded gradient, recorded attrs', async () => {
    const r = rng(302);
    const x = randArray(r, 2 * 7 * 3 * 2);
    const X = leaf(x, [2, 7, 3, 2]);
    let attrs: unknown;
    let dy: Float32Array = new Float32Array(0);
    const got = await forwardBackward([X], () => {
      const y = ag.slice(X, 2, 5);
      attrs = y.node?.attrs;
      return y;
    }, (n) => (dy = randArray(r, n)));
    expect(attrs).toEqual({ axis: 1, start: 2, end: 5 });
    expectClose(got.y, refSlice(x, [2, 7, 3, 2], 1, 2, 5), 0, 0, 'slice y');
    const want = new Float64Array(x.length);
    for (let n = 0; n < 2; n++) for (let c = 2; c < 5; c++) for (let k = 0; k < 6; k++) want[(n * 7 + c) * 6 + k] = dy[(n * 3 + c - 2) * 6 + k];
    expectClose(got.grads[0], want, 0, 0, 'slice dx');
  });

  it('bad axes, shapes and ranges are one-line errors', () => {
    tidy(() => {
      const a = fromArray(new Float32Array(12), [1, 3, 2, 2]), b = fromArray(new Float32Array(8), [1, 2, 2, 2]);
      expect(() => ag.concat([])).toThrow(/concat: no tensors/);
      expect(() => ag.concat([a, fromArray(new Float32Array(6), [1, 3, 2, 1])])).toThrow(/concat: shapes \[1,3,2,2\], \[1,3,2,1\] differ outside axis 1/);
      expect(() => ag.concat([a, b], 4)).toThrow(/concat: axis 4 is out of range for rank 4/);
      expect(() => ag.concat([a, b], 2)).toThrow(ArgumentError);
      expect(() => ag.slice(a, 2, 2)).toThrow(/slice: range \[2, 2\) is empty or outside axis 1/);
      expect(() => ag.slice(a, 0, 4)).toThrow(ArgumentError);
      expect(() => ag.split(a, [1, 1])).toThrow(/split: sizes \[1,1\] must be positive integers summing to 3/);
    });
  });
});

describe('max and avg pooling with ceil_mode, padding and count_include_pad, forward and backward', () => {
  it("equal PyTorch's on the fixture (torchvision's GoogLeNet, SqueezeNet, DenseNet pools and the ceil rule's edges)", async () => {
    for (const c of torchFixture.pools) {
      const X = leaf(Float32Array.from(c.x), c.shape);
      const g = { kernel: c.kernel, stride: c.stride, padding: c.padding, ceilMode: c.ceilMode, countIncludePad: c.countIncludePad };
      const got = await forwardBackward([X], () => (c.kind === 'max' ? ag.maxPool2d(X, g) : ag.avgPool2d(X, g)), () => Float32Array.from(c.dy));
      const what = `${c.kind}pool [${c.shape}] ${JSON.stringify(g)}`;
      expect(got.shape, `${what} shape`).toEqual(c.outShape);
      expectClose(got.y, c.y, 1e-6, 1e-5, `${what} y`);
      expectClose(got.grads[0], c.dx, 1e-6, 1e-5, `${what} dx`);
    }
  });

  it('on 60 random shapes vs the float64 reference (attrs recorded)', async () => {
    const r = rng(400);
    for (let i = 0; i < 60; i++) {
      const kind = i % 2 === 0 ? 'max' : 'avg';
      const k = randInt(r, 1, 5), stride = randInt(r, 1, 3), padding = randInt(r, 0, Math.floor(k / 2));
      const ceilMode = i % 4 < 3, countIncludePad = r() < 0.5;
      const lo = Math.max(1, k - 2 * padding);
      const shape = [randInt(r, 1, 2), randInt(r, 1, 4), randInt(r, lo, 11), randInt(r, lo, 11)];
      const x = randArray(r, shape.reduce((a, b) => a * b));
      const X = leaf(x, shape);
      const g = { kernel: k, stride, padding, ceilMode, countIncludePad };
      let dy: Float32Array = new Float32Array(0);
      let attrs: unknown;
      const got = await forwardBackward([X], () => {
        const y = kind === 'max' ? ag.maxPool2d(X, g) : ag.avgPool2d(X, g);
        attrs = y.node?.attrs;
        return y;
      }, (n) => (dy = randArray(r, n)));
      const ref = refPool(kind, x, shape, k, stride, dy, padding, ceilMode, countIncludePad);
      const what = `${kind}pool #${i} [${shape}] ${JSON.stringify(g)}`;
      expect(attrs).toEqual({ kernel: k, stride, padding, ceilMode: ceilMode ? 1 : 0, countIncludePad: countIncludePad ? 1 : 0 });
      expectClose(got.y, ref.y, 1e-6, 1e-5, `${what} y`);
      expectClose(got.grads[0], ref.dx, 1e-6, 1e-5, `${what} dx`);
    }
  });
});

describe('conv2d with non-square kernels, strides, asymmetric pads, dilation and any groups (forward, dX, dW, db)', () => {
  // A fixed menu of kernel shapes and dilations, since each pair compiles its own pipelines (seconds each on
  // lavapipe): Inception's 1x7, DeepLab-style 3x3 dilated 2, and two mirrored non-square kernels with
  // non-square dilation, which catch any height/width mix-up (with strides per axis and asymmetric pads).
  const COMBOS: [[number, number], [number, number]][] = [[[1, 7], [1, 1]], [[3, 3], [2, 2]], [[2, 3], [2, 1]], [[3, 2], [1, 3]]];
  function pick(r: () => number, i: number): ConvShape {
    const [[KH, KW], dil] = COMBOS[i % COMBOS.length];
    const groups = [1, 1, 2, 3, 4][randInt(r, 0, 4)], depthwise = r() < 0.15;
    const C = depthwise ? randInt(r, 1, 6) : groups * randInt(r, 1, 3), O = depthwise ? C : groups * randInt(r, 1, 4);
    // Pads up to the dilated kernel's reach, asymmetric in half the cases (ONNX [top, left, bottom, right]).
    const padH = () => randInt(r, 0, Math.floor((dil[0] * (KH - 1)) / 2) + 1), padW = () => randInt(r, 0, Math.floor((dil[1] * (KW - 1)) / 2) + 1);
    const pads: [number, number, number, number] = r() < 0.5 ? [padH(), padW(), padH(), padW()] : (() => { const h = padH(), w = padW(); return [h, w, h, w]; })();
    const stride = randInt(r, 1, 3), strideW = r() < 0.5 ? stride : randInt(r, 1, 3);
    // Small outputs (mostly under 64 columns: one lane-count variant of each pipeline).
    const H = Math.max(1, dil[0] * (KH - 1) + 1 - pads[0] - pads[2]) + randInt(r, 0, 4), W = Math.max(1, dil[1] * (KW - 1) + 1 - pads[1] - pads[3]) + randInt(r, 0, 4);
    return { N: randInt(r, 1, 2), C, H, W, O, KH, KW, stride, strideW, pad: 0, pads, dil, groups: depthwise ? C : groups };
  }

  async function checkConvGeometry(cases: number, seed: number) {
    const r = rng(seed);
    for (let i = 0; i < cases; i++) {
      const s = pick(r, i);
      const groups = s.groups ?? 1;
      const [OH, OW] = convOut(s);
      const wShape = [s.O, s.C / groups, s.KH, s.KW];
      const x = randArray(r, s.N * s.C * s.H * s.W), w = randArray(r, wShape.reduce((a, b) => a * b)), b = randArray(r, s.O), dy = randArray(r, s.N * s.O * OH * OW);
      const [X, Wt, B] = [leaf(x, [s.N, s.C, s.H, s.W]), leaf(w, wShape), leaf(b, [s.O])];
      const geometry = { stride: [s.stride, s.strideW!] as [number, number], padding: s.pads!, dilation: s.dil!, groups };
      let attrs: unknown;
      const got = await forwardBackward([X, Wt, B], () => {
        const y = ag.conv2d(X, Wt, B, geometry);
        attrs = y.node?.attrs;
        return y;
      }, () => dy);
      const ref = refConv(s, x, w, b, dy);
      const what = `conv #${i} ${JSON.stringify(s)}`;
      expect(got.shape, what).toEqual([s.N, s.O, OH, OW]);
      expect(attrs, what).toEqual({
        strideH: s.stride, strideW: s.strideW, padTop: s.pads![0], padLeft: s.pads![1], padBottom: s.pads![2], padRight: s.pads![3],
        dilationH: s.dil![0], dilationW: s.dil![1], groups,
      });
      expectClose(got.y, ref.y, 1e-5, 1e-4, `${what} y`);
      expectClose(got.grads[0], ref.dx, 1e-5, 1e-4, `${what} dx`);
      expectClose(got.grads[1], ref.dw, 1e-4, 1e-4, `${what} dw`);
      expectClose(got.grads[2], ref.db, 1e-4, 1e-4, `${what} db`);
    }
  }

  it('on 40 random shapes (subgroup path where the device has subgroups)', () => checkConvGeometry(40, 500), 400_000);
  it('on 16 random shapes on the portable path (no subgroups)', async () => {
    const rt = getRuntime();
    const had = rt.subgroups;
    rt.subgroups = false;
    try {
      await checkConvGeometry(16, 501);
    } finally {
      rt.subgroups = had;
    }
  }, 400_000);

  it('Conv2d spells out its geometry; the single-number accessors refuse a conv they cannot describe', () => {
    const c = new Conv2d(4, 6, [1, 7], [1, 2], [0, 3], false, 2, [1, 2]);
    expect([c.kernelShape, c.strides, c.pads, c.dilations]).toEqual([[1, 7], [1, 2], [0, 3, 0, 3], [1, 2]]);
    expect(c.weight.shape).toEqual([6, 2, 1, 7]);
    expect(() => c.kernelSize).toThrow(UnsupportedError);
    expect(() => c.padding).toThrow(/padding of a 1x7 conv with strides \[1,2\], pads \[0,3,0,3\], dilations \[1,2\] is not one number/);
    const square = new Conv2d(3, 3, 3, 2, 1);
    expect([square.kernelSize, square.stride, square.padding, square.pads]).toEqual([3, 2, 1, [1, 1, 1, 1]]);
    expect(() => new Conv2d(3, 3, 3, 1, 1, true, 1, 2).kernelSize).toThrow(/dilations \[2,2\]/);
    [c, square].forEach((m) => m.parameters().forEach((p) => p.dispose()));
  });

  it('bad strides, pads, dilations and kernels that do not fit are one-line errors', () => {
    tidy(() => {
      const x = fromArray(new Float32Array(2 * 5 * 5), [1, 2, 5, 5]), w = fromArray(new Float32Array(3 * 2 * 3 * 3), [3, 2, 3, 3]);
      expect(() => ag.conv2d(x, w, null, { stride: 1, padding: 0, dilation: 0 })).toThrow(/conv2d: strides \[1,1\] and dilations \[0,0\] must be positive integers/);
      expect(() => ag.conv2d(x, w, null, { stride: [1, 0], padding: 0 })).toThrow(ArgumentError);
      expect(() => ag.conv2d(x, w, null, { stride: 1, padding: [1, 1, 1] as unknown as [number, number] })).toThrow(/padding must be a number, \[height, width\] or \[top, left, bottom, right\]/);
      expect(() => ag.conv2d(x, w, null, { stride: 1, padding: [-1, 0] })).toThrow(/non-negative integers/);
      expect(() => ag.conv2d(x, w, null, { stride: 1, padding: 0, dilation: 3 })).toThrow(/conv2d: a 3x3 kernel dilated \[3, 3\] does not fit a 5x5 input with pads \[0,0,0,0\]/);
    });
    expect(() => new Conv2d(2, 2, [3, 0])).toThrow(/Conv2d: kernel size must be positive integers, got 3x0/);
  });
});
