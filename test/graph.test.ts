/**
 * The op table and traced graph (issue 15): one conv-BN pairing rule shared by BN folding and the ONNX
 * export, op specs for every recorded op, and registration from outside. Tiny models, 6x6 inputs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { BatchNorm2d, Conv2d, Linear } from '../src/nn/layers.js';
import { Module } from '../src/nn/module.js';
import { opSpec } from '../src/graph/ops.js';
import { convBnPairs } from '../src/graph/pairing.js';
import * as ag from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { foldBatchNorms } from '../src/prune/bn-fold.js';
import { expectClose, gpu, randArray } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

async function outputs(m: Module, shape: [number, number, number]): Promise<Float32Array> {
  const x = fromArray(randArray(seededRandom(3), 2 * shape[0] * shape[1] * shape[2]), [2, ...shape]);
  m.eval();
  const y = await ag.noGrad(() => tidy(() => m.call(x))).dataAndDispose();
  x.dispose();
  return y;
}

function randomiseNorm(bn: BatchNorm2d, seed: number): void {
  const r = seededRandom(seed);
  const c = bn.numFeatures;
  assign(bn.weight, Float32Array.from({ length: c }, () => 0.5 + r()));
  assign(bn.bias, randArray(r, c, 0.3));
  assign(bn.running_mean, randArray(r, c, 0.2));
  assign(bn.running_var, Float32Array.from({ length: c }, () => 0.5 + r()));
}

/** bn(conv(x)) + conv(x): the conv output has two readers, so its BN must not fold into it. */
class SharedConvOutput extends Module {
  conv = this.addChild('conv', new Conv2d(3, 4, 3, 1, 1));
  bn = this.addChild('bn', new BatchNorm2d(4));
  conv2 = this.addChild('conv2', new Conv2d(4, 4, 3, 1, 1));
  bn2 = this.addChild('bn2', new BatchNorm2d(4));
  fc = this.addChild('fc', new Linear(4 * 36, 3));
  forward(x: Tensor): Tensor {
    const h = this.conv.call(x);
    const s = ag.relu(ag.add(this.bn.call(h), h));
    return this.fc.call(ag.flatten(this.bn2.call(this.conv2.call(s))));
  }
}

describe('conv-BN pairing: a BN folds only into a conv whose output it alone reads', () => {
  it('bn(conv(x)) + conv(x) is not folded and keeps its function; bn2(conv2(.)) is', async () => {
    setInitSeed(4);
    const m = new SharedConvOutput();
    randomiseNorm(m.bn, 1);
    randomiseNorm(m.bn2, 2);
    expect(convBnPairs(m, [3, 6, 6]).map(([c, b]) => `${c.path}+${b.path}`)).toEqual(['conv2+bn2']);
    const before = await outputs(m, [3, 6, 6]);
    expect(await foldBatchNorms(m, [3, 6, 6])).toBe(1);
    // Folding leaves the eval BN as the identity up to 1 / sqrt(1 + eps): within 1e-5 relative.
    expectClose(await outputs(m, [3, 6, 6]), before, 1e-4, 1e-4, 'after folding');
    m.dispose();
  });
});

describe('op table', () => {
  it('has a spec for every op autograd records, with a channel rule', () => {
    for (const op of ['conv2d', 'linear', 'batchNorm2d', 'relu', 'scale', 'add', 'maxPool2d', 'avgPool2d', 'adaptiveAvgPool2d', 'reshape']) {
      expect(opSpec(op)?.channels, op).not.toBe('none');
      expect(opSpec(op)?.onnx, op).toBeDefined();
    }
    expect(opSpec('matmul')?.channels).toBe('none');
  });
});
