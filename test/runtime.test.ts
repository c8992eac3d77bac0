/** The runtime: buffer pool reuse, command batching, scopes, readback and error reporting. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import { adapterOptionsFor, GpuError } from '../src/tensor/device.js';
import { ArgumentError, UnsupportedError } from '../src/errors.js';
import { Params, poolSizeClass, Runtime } from '../src/tensor/runtime.js';
import { conv2dForward, matmul } from '../src/kernels/gemm.js';
import { SGD } from '../src/nn/optim.js';
import { destroyRuntime, empty, fromArray, getRuntime, tidy } from '../src/tensor/tensor.js';
import { gpu, randArray, rng } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

describe('runtime', () => {
  it('reports the adapter', () => {
    expect(getRuntime().adapterDescription.length).toBeGreaterThan(0);
  });

  it('pool size classes waste at most 25% and are monotone', () => {
    let prev = 0;
    for (let b = 1; b < 1 << 22; b = Math.ceil(b * 1.37)) {
      const c = poolSizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeGreaterThanOrEqual(prev);
      if (b > 4096) expect(c / b).toBeLessThanOrEqual(1.25);
      prev = c;
    }
  });

  it('the buffer pool does not grow over 1000 repeated training steps', async () => {
    const rt = getRuntime();
    const r = rng(11);
    const w1 = fromArray(randArray(r, 8 * 3 * 3 * 3, 0.3), [8, 3, 3, 3]).keep();
    const w2 = fromArray(randArray(r, 10 * 8 * 4 * 4, 0.1), [10, 128]).keep();
    const state = {
      gamma: fromArray(new Float32Array(8).fill(1), [8]).keep(), beta: fromArray(new Float32Array(8), [8]).keep(),
      runningMean: fromArray(new Float32Array(8), [8]).keep(), runningVar: fromArray(new Float32Array(8).fill(1), [8]).keep(),
    };
    const params = [w1, w2, state.gamma, state.beta];
    params.forEach((p) => (p.requiresGrad = true));
    const opt = new SGD(params, { lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
    const x = fromArray(randArray(r, 4 * 3 * 8 * 8), [4, 3, 8, 8]).keep();
    const y = fromArray([1, 2, 3, 4], [4]).keep();
    const step = () => {
      tidy(() => {
        const h = ag.maxPool2d(ag.relu(ag.batchNorm2d(ag.conv2d(x, w1, null, { stride: 1, padding: 1 }), state, { training: true })), { kernel: 2, stride: 2 });
        ag.backward(ag.crossEntropy(ag.linear(ag.flatten(h), w2, null), y));
      });
      opt.step();
      opt.zeroGrad();
    };
    const losses: number[] = [];
    for (let i = 0; i < 20; i++) step();
    await rt.sync();
    const before = rt.poolStats();
    const submitsBefore = rt.submitCount, dispatchesBefore = rt.dispatchCount;
    for (let i = 0; i < 1000; i++) {
      step();
      if (i % 250 === 0) {
        losses.push((await tidy(() => ag.noGrad(() => ag.crossEntropy(ag.linear(ag.flatten(ag.maxPool2d(ag.relu(ag.batchNorm2d(ag.conv2d(x, w1, null, { stride: 1, padding: 1 }), state, { training: false })), { kernel: 2, stride: 2 })), w2, null), y))).dataAndDispose())[0]);
      }
    }
    await rt.sync();
    const after = rt.poolStats();
    expect(after.created, 'no new GPU buffers after warm-up').toBe(before.created);
    expect(after.bytes).toBe(before.bytes);
    expect(after.inUse).toBe(before.inUse);
    // Many dispatches per submission: batching works.
    expect((rt.dispatchCount - dispatchesBefore) / (rt.submitCount - submitsBefore)).toBeGreaterThan(10);
    // And the loop really trained.
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    [w1, w2, x, y, ...Object.values(state)].forEach((t) => t.dispose());
    opt.dispose();
  });

  it('tidy frees what it does not return, also when it throws', () => {
    const rt = getRuntime();
    const start = rt.poolStats().inUse;
    const kept = tidy(() => {
      const a = fromArray([1, 2, 3], [3]);
      ag.relu(a);
      return ag.scale(a, 2);
    });
    expect(rt.poolStats().inUse).toBe(start + 1);
    kept.dispose();
    expect(() => tidy(() => {
      empty([100]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(rt.poolStats().inUse).toBe(start);
  });

  it('reshape views share storage until the last one is disposed', async () => {
    const rt = getRuntime();
    const start = rt.poolStats().inUse;
    const a = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = ag.reshape(a, [3, 2]);
    a.dispose();
    expect(Array.from(await v.data())).toEqual([1, 2, 3, 4, 5, 6]);
    v.dispose();
    expect(rt.poolStats().inUse).toBe(start);
  });

  it('gives clear errors on bad input', async () => {
    expect(() => adapterOptionsFor(3)).toThrow(/gpu_id must be -1.*0.*1/);
    expect(() => fromArray([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\]/);
    tidy(() => {
      expect(() => matmul(empty([2, 3]), empty([4, 5]))).toThrow(/inner dimensions differ \(3 vs 4\)/);
      expect(() => conv2dForward(empty([1, 3, 4, 4]), empty([2, 5, 3, 3]), null, { stride: 1, padding: 1 })).toThrow(/3 channels but the weight expects 5/);
      expect(() => conv2dForward(empty([1, 3, 2, 2]), empty([2, 3, 5, 5]), null, { stride: 1, padding: 0 })).toThrow(/does not fit/);
      expect(() => ag.maxPool2d(empty([1, 1, 2, 2]), { kernel: 3, stride: 1 })).toThrow(/does not fit/);
      expect(() => ag.conv2d(empty([1, 6, 4, 4]), empty([4, 3, 3, 3]), null, { stride: 1, padding: 1, groups: 4 })).toThrow(/groups 4 must be a positive integer dividing/);
      expect(() => ag.conv2d(empty([1, 6, 4, 4]), empty([4, 2, 3, 3]), null, { stride: 1, padding: 1, groups: 2 })).toThrow(/6 channels but the weight expects 4 \(2 groups of 2\)/);
      expect(() => conv2dForward(empty([1, 1, 40, 40]), empty([1, 1, 33, 33]), null, { stride: 1, padding: 0 })).toThrow(UnsupportedError);
      expect(() => ag.maxPool2d(empty([1, 1, 4, 4]), { kernel: 3, stride: 2, padding: 2 })).toThrow(/padding must be an integer from 0 to half the kernel size 3, got 2/);
      expect(() => ag.avgPool2d(empty([1, 1, 4, 4]), { kernel: 2, stride: 1, padding: -1 })).toThrow(ArgumentError);
      expect(() => ag.adaptiveAvgPool2d(empty([1, 1, 4, 4]), [0, 2])).toThrow(/output size must be positive integers, got 0x2/);
      expect(() => ag.crossEntropy(empty([4, 10]), empty([3]))).toThrow(/3 labels for 4 rows/);
    });
    const t = fromArray([1], [1]);
    t.dispose();
    await expect(t.data()).rejects.toThrow(/disposed tensor/);
    expect(() => tidy(() => Promise.resolve(1))).toThrow(/synchronous/);
  });

  it('opens the fallback (-1), default (0) and low-power (1) adapters by gpu_id', async () => {
    for (const id of [-1, 0, 1]) {
      const rt = await Runtime.create(id);
      const buf = rt.acquire(16);
      rt.write(buf, new Float32Array([1, 2, 3, 4]));
      expect(Array.from(new Float32Array(await rt.read(buf, 16)))).toEqual([1, 2, 3, 4]);
      if (id === -1) expect(rt.isFallback).toBe(true);
      rt.destroy();
    }
  });

  it('reports a lost device as a clear exception', async () => {
    const rt = await Runtime.create(0);
    const buf = rt.acquire(16);
    rt.device.destroy();
    await rt.device.lost;
    expect(() => rt.dispatch({ name: 'x', code: '@compute @workgroup_size(1) fn main() {}', entryPoint: 'main' }, [{ buffer: buf, kind: 'write' }], new Params().u32(1).build(), [1]))
      .toThrow(/GPU device was lost/);
    await expect(rt.read(buf, 16)).rejects.toThrow(/GPU device was lost/);
  });

  it('surfaces WebGPU validation errors as exceptions at the next sync point', async () => {
    const rt = getRuntime();
    rt.dispatch({ name: 'broken', code: 'this is not wgsl', entryPoint: 'main' }, [], null, [1]);
    await expect(rt.sync()).rejects.toThrow(GpuError);
    await rt.sync(); // the error is reported once; the runtime keeps working
    expect(Array.from(await tidy(() => ag.scale(fromArray([1, 2], [2]), 3)).dataAndDispose())).toEqual([3, 6]);
  });
});
