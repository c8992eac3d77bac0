/**
 * Autograd against central finite differences of the engine's own forward pass on small graphs.
 * Float32 forward passes limit the precision of the differences, so the step is 1e-2 and inputs
 * keep clear of relu kinks and max-pool ties; coordinates are sampled per tensor.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import { destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { gpu, randArray, rng } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

interface Leaf { values: Float32Array; shape: number[] }

/**
 * Checks d loss / d leaf for `samples` coordinates of every leaf. `build` maps leaf tensors to a
 * scalar loss; it is called once with gradients and 2 * samples * leaves times for differences.
 */
async function checkGradients(leaves: Record<string, Leaf>, build: (t: Record<string, Tensor>) => Tensor, samples = 6, h = 1e-2, atol = 1e-3, rtol = 2e-2) {
  const r = rng(42);
  const names = Object.keys(leaves);
  const tensors = Object.fromEntries(names.map((n) => {
    const t = fromArray(leaves[n].values, leaves[n].shape).keep();
    t.requiresGrad = true;
    return [n, t];
  }));
  tidy(() => ag.backward(build(tensors)));
  const analytic = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await tensors[n].grad!.data()] as const)));
  const evalLoss = async (name: string, i: number, delta: number) => {
    const v = Float32Array.from(leaves[name].values);
    v[i] += delta;
    const loss = ag.noGrad(() => tidy(() => {
      const inputs = { ...tensors, [name]: fromArray(v, leaves[name].shape) };
      return build(inputs);
    }));
    return (await loss.dataAndDispose())[0];
  };
  for (const n of names) {
    for (let s = 0; s < samples; s++) {
      const i = Math.floor(r() * leaves[n].values.length);
      const numeric = ((await evalLoss(n, i, h)) - (await evalLoss(n, i, -h))) / (2 * h);
      const a = analytic[n][i];
      expect(Math.abs(a - numeric), `d/d${n}[${i}]: autograd ${a}, finite difference ${numeric}`).toBeLessThanOrEqual(atol + rtol * Math.abs(numeric));
    }
  }
  for (const t of Object.values(tensors)) {
    t.grad?.dispose();
    t.dispose();
  }
}

const r = rng(9);
const L = (shape: number[], s = 1): Leaf => ({ values: randArray(r, shape.reduce((a, b) => a * b), s), shape });
const labels = (n: number, c: number) => fromArray(Float32Array.from({ length: n }, (_, i) => (i * 7) % c), [n]);

describe('autograd vs finite differences', () => {
  it('linear -> relu -> linear -> cross-entropy', async () => {
    await checkGradients(
      { x: L([4, 6]), w1: L([5, 6]), b1: L([5]), w2: L([3, 5]), b2: L([3]) },
      (t) => ag.crossEntropy(ag.linear(ag.relu(ag.linear(t.x, t.w1, t.b1)), t.w2, t.b2), labels(4, 3)),
    );
  });

  it('conv -> batch-norm (train) -> relu -> max-pool -> flatten -> linear -> cross-entropy', async () => {
    const state = {
      runningMean: fromArray(new Float32Array(3), [3]).keep(),
      runningVar: fromArray(new Float32Array(3).fill(1), [3]).keep(),
    };
    await checkGradients(
      { x: L([2, 2, 6, 6]), w: L([3, 2, 3, 3], 0.5), b: L([3]), gamma: L([3]), beta: L([3]), wl: L([4, 27]) },
      (t) => {
        const h = ag.conv2d(t.x, t.w, t.b, { stride: 1, padding: 1 });
        const n = ag.batchNorm2d(h, { gamma: t.gamma, beta: t.beta, ...state }, { training: true, momentum: 0 });
        const p = ag.maxPool2d(ag.relu(n), { kernel: 2, stride: 2 });
        return ag.crossEntropy(ag.linear(ag.flatten(p), t.wl, null), labels(2, 4));
      },
    );
    state.runningMean.dispose();
    state.runningVar.dispose();
  });

  it('residual add, strided conv, eval batch-norm, avg-pool, mean', async () => {
    const state = { runningMean: fromArray(randArray(r, 4), [4]).keep(), runningVar: fromArray(new Float32Array(4).fill(2), [4]).keep() };
    await checkGradients(
      { x: L([2, 3, 8, 8]), w1: L([4, 3, 3, 3], 0.5), w2: L([4, 4, 3, 3], 0.5), ws: L([4, 3, 1, 1]), gamma: L([4]), beta: L([4]) },
      (t) => {
        const main = ag.conv2d(ag.relu(ag.conv2d(t.x, t.w1, null, { stride: 2, padding: 1 })), t.w2, null, { stride: 1, padding: 1 });
        const skip = ag.conv2d(t.x, t.ws, null, { stride: 2, padding: 0 });
        const n = ag.batchNorm2d(ag.add(main, skip), { gamma: t.gamma, beta: t.beta, ...state }, { training: false });
        return ag.mean(ag.scale(ag.avgPool2d(n, { kernel: 4, stride: 4 }), 3));
      },
    );
    state.runningMean.dispose();
    state.runningVar.dispose();
  });

  it('ImageNet-style stem on a non-square input: 7x7/2/3 conv, padded max-pool, depthwise and grouped conv, adaptive avg-pool', async () => {
    await checkGradients(
      { x: L([2, 3, 13, 11]), w1: L([4, 3, 7, 7], 0.3), dw: L([4, 1, 3, 3], 0.5), wg: L([6, 2, 5, 5], 0.3), bg: L([6]), wl: L([3, 24]) },
      (t) => {
        const stem = ag.maxPool2d(ag.relu(ag.conv2d(t.x, t.w1, null, { stride: 2, padding: 3 })), { kernel: 3, stride: 2, padding: 1 });
        const depthwise = ag.conv2d(stem, t.dw, null, { stride: 1, padding: 1, groups: 4 });
        const grouped = ag.conv2d(depthwise, t.wg, t.bg, { stride: 1, padding: 2, groups: 2 });
        const pooled = ag.adaptiveAvgPool2d(grouped, [2, 2]);
        return ag.crossEntropy(ag.linear(ag.flatten(pooled), t.wl, null), labels(2, 3));
      },
    );
  });

  // Kinks (relu, relu6) would put finite differences across a jump of the gradient: the smooth ops only here;
  // ops.test.ts checks every kink against PyTorch's rule.
  it('MobileNetV3/EfficientNet block: hardswish, squeeze-excitation (sigmoid and hardsigmoid gates, broadcast mul), silu', async () => {
    await checkGradients(
      { x: L([2, 3, 6, 5]), w: L([4, 3, 3, 3], 0.5), w1: L([2, 4, 1, 1]), w2: L([4, 2, 1, 1]), wl: L([3, 4]) },
      (t) => {
        const h = ag.hardSwish(ag.conv2d(t.x, t.w, null, { stride: 1, padding: 1 }));
        const squeezed = ag.silu(ag.conv2d(ag.adaptiveAvgPool2d(h, [1, 1]), t.w1, null, { stride: 1, padding: 0 }));
        const gate = ag.conv2d(squeezed, t.w2, null, { stride: 1, padding: 0 });
        const excited = ag.mul(ag.mul(h, ag.sigmoid(gate)), ag.hardSigmoid(gate));
        const pooled = ag.adaptiveAvgPool2d(ag.silu(ag.scale(excited, 4)), [1, 1]);
        return ag.crossEntropy(ag.linear(ag.flatten(pooled), t.wl, null), labels(2, 3));
      },
    );
  });

  it('DenseNet/Inception block: concat of the input and two conv branches, split, concat again', async () => {
    await checkGradients(
      { x: L([2, 3, 5, 4]), w1: L([2, 3, 3, 3], 0.5), w2: L([4, 3, 1, 1]), wl: L([3, 9]) },
      (t) => {
        const dense = ag.concat([t.x, ag.conv2d(t.x, t.w1, null, { stride: 1, padding: 1 }), ag.conv2d(t.x, t.w2, null, { stride: 1, padding: 0 })]);
        const [a, b] = ag.split(dense, [4, 5]);
        const mixed = ag.concat([ag.scale(b, 2), a], 1);
        return ag.crossEntropy(ag.linear(ag.flatten(ag.adaptiveAvgPool2d(mixed, [1, 1])), t.wl, null), labels(2, 3));
      },
    );
  });

  it('a tensor used twice accumulates both gradients; matmul and sum', async () => {
    await checkGradients({ a: L([3, 4]), b: L([4, 5]) }, (t) => {
      const y = ag.matmul(t.a, t.b);
      return ag.sum(ag.add(y, ag.scale(y, 0.5)));
    });
  });

  it('backward accumulates into .grad across calls until zeroGrad', async () => {
    const x = fromArray([1, -2, 3], [3]).keep();
    x.requiresGrad = true;
    tidy(() => ag.backward(ag.sum(ag.scale(x, 2))));
    tidy(() => ag.backward(ag.sum(ag.scale(x, 3))));
    expect(Array.from(await x.grad!.data())).toEqual([5, 5, 5]);
    ag.zeroGrad([x]);
    expect(x.grad).toBeNull();
    x.dispose();
  });

  it('refuses backward on a graph with no trainable input', () => {
    tidy(() => {
      const y = ag.sum(fromArray([1, 2], [2]));
      expect(() => ag.backward(y)).toThrow(/does not depend on any tensor that requires a gradient/);
    });
  });
});
