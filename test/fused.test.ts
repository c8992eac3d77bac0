/**
 * Fused inference: in eval mode a Sequential's conv + eval BN + ReLU + 2x2 max-pool run as one GEMM
 * dispatch; the outputs must equal the unfused layers' bit for bit, on random shapes (strided, unpadded,
 * asymmetric pads, 1x1, dilated, grouped, bias-free, odd outputs where the pool stays unfused), and on
 * VGG11-BN's logits. Each case also checks that fusion really ran (fewer dispatches).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { BatchNorm2d, Conv2d, MaxPool2d, ReLU, Sequential, setFusedInference } from '../src/nn/layers.js';
import { createModel } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { noGrad } from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, getRuntime, tidy } from '../src/tensor/tensor.js';
import { gpu, randArray } from './helpers.js';

beforeAll(gpu);
afterAll(() => {
  setFusedInference(true);
  destroyRuntime();
});

/** Output bits and dispatch count of one eval forward pass, fused or not. */
async function forward(model: Module, x: Float32Array, shape: number[], fused: boolean) {
  const was = setFusedInference(fused);
  const rt = getRuntime();
  const before = rt.dispatchCount;
  try {
    const y = await noGrad(() => tidy(() => model.call(fromArray(x, shape)))).dataAndDispose();
    return { bits: new Uint32Array(y.buffer), dispatches: rt.dispatchCount - before };
  } finally {
    setFusedInference(was);
  }
}

function randomBn(c: number, r: () => number): BatchNorm2d {
  const bn = new BatchNorm2d(c);
  assign(bn.running_mean, randArray(r, c, 0.5));
  assign(bn.running_var, Float32Array.from({ length: c }, () => 0.1 + r()));
  assign(bn.weight, randArray(r, c, 1.5));
  assign(bn.bias, randArray(r, c, 0.5));
  return bn;
}

interface Case {
  what: string; cin: number; cout: number; k: number | [number, number]; stride: number | [number, number];
  pad: number | [number, number, number, number]; h: number; w: number;
  groups?: number; dilation?: number; bias?: boolean; bn?: boolean; relu?: boolean; pool?: boolean;
}

const cases: Case[] = [
  { what: '3x3 pad 1, BN, ReLU, pool', cin: 5, cout: 19, k: 3, stride: 1, pad: 1, h: 8, w: 6 },
  { what: 'strided 3x3, BN, ReLU', cin: 4, cout: 17, k: 3, stride: 2, pad: 1, h: 9, w: 7, pool: false },
  { what: 'unpadded 3x3, pool', cin: 6, cout: 9, k: 3, stride: 1, pad: 0, h: 10, w: 6 },
  { what: 'odd output: the pool stays unfused', cin: 3, cout: 7, k: 3, stride: 1, pad: 0, h: 9, w: 8 },
  { what: '1x1, BN, ReLU, pool', cin: 33, cout: 20, k: 1, stride: 1, pad: 0, h: 4, w: 4 },
  { what: 'asymmetric kernel and pads, dilated', cin: 4, cout: 6, k: [3, 1], stride: [1, 2], pad: [2, 0, 1, 1], h: 7, w: 8, dilation: 2, pool: false },
  { what: 'grouped (2), BN, ReLU, pool', cin: 8, cout: 12, k: 3, stride: 1, pad: 1, h: 6, w: 6, groups: 2 },
  { what: 'bias-free conv, BN, pool (no ReLU)', cin: 5, cout: 16, k: 3, stride: 1, pad: 1, h: 4, w: 6, bias: false, relu: false },
  { what: 'conv + pool only', cin: 2, cout: 3, k: 2, stride: 1, pad: [0, 0, 1, 1], h: 6, w: 6, bn: false, relu: false },
];

describe('fused conv + BN + ReLU + max-pool inference', () => {
  it('equals the unfused layers bit for bit on random shapes, and fuses', async () => {
    const r = seededRandom(3);
    for (const c of cases) {
      const layers: Module[] = [new Conv2d(c.cin, c.cout, c.k, c.stride, c.pad, c.bias ?? true, c.groups ?? 1, c.dilation ?? 1)];
      if (c.bn ?? true) layers.push(randomBn(c.cout, r));
      if (c.relu ?? true) layers.push(new ReLU());
      layers.push(new MaxPool2d(2, 2));
      if (c.pool === false) layers.pop();
      const model = new Sequential(...layers).eval();
      const shape = [3, c.cin, c.h, c.w];
      const x = randArray(r, shape.reduce((a, b) => a * b), 2);
      const fused = await forward(model, x, shape, true);
      const plain = await forward(model, x, shape, false);
      expect(fused.bits, c.what).toEqual(plain.bits);
      expect(fused.dispatches, `${c.what}: fused`).toBeLessThan(plain.dispatches);
      model.dispose();
    }
  }, 400_000);

  it('VGG11-BN logits (trained-like BN statistics) equal the unfused model\'s bit for bit', async () => {
    setInitSeed(9);
    const model = createModel('vgg11_bn').eval();
    const r = seededRandom(4);
    for (const [, m] of model.namedModules()) {
      if (!(m instanceof BatchNorm2d)) continue;
      assign(m.running_mean, randArray(r, m.numFeatures, 0.3));
      assign(m.running_var, Float32Array.from({ length: m.numFeatures }, () => 0.2 + r()));
    }
    const x = randArray(r, 4 * 3 * 32 * 32);
    const fused = await forward(model, x, [4, 3, 32, 32], true);
    const plain = await forward(model, x, [4, 3, 32, 32], false);
    expect(fused.bits).toEqual(plain.bits);
    expect(fused.dispatches).toBeLessThan(plain.dispatches / 2);
    model.dispose();
  }, 400_000);
});
