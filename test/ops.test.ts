/**
 * The ops added for MobileNet/EfficientNet/DenseNet-style models, each against a float64 CPU reference
 * (test/reference.ts, PyTorch's semantics) on seeded random shapes, forward and backward through
 * autograd, plus the op names the pruner and ONNX code key on, and the one-line errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import { Hardsigmoid, Hardswish, Hardtanh, ReLU, ReLU6, Sigmoid, SiLU } from '../src/nn/layers.js';
import { ArgumentError, UnsupportedError } from '../src/errors.js';
import { destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { expectClose, gpu, randArray, randInt, REF_ACTIVATIONS, refMulBroadcast, rng } from './helpers.js';

beforeAll(gpu);
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
