/**
 * ResNet18 (CIFAR) logits for fixed seeded weights, non-trivial eval-mode batch-norm statistics and two
 * inputs, against a plain float64 forward pass written here from the architecture (spec section 7):
 * conv/bn/relu stem, BasicBlocks (relu after the residual add), 4x4 average pool, linear.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { createModel } from '../src/nn/models.js';
import { noGrad } from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { expectClose, gpu } from './helpers.js';
import { conv2d64 } from './method-reference.js';

beforeAll(gpu);
afterAll(destroyRuntime);

type Map4 = { x: Float64Array; C: number; H: number; W: number };

describe('ResNet18 forward', () => {
  it('equals a float64 reference forward (eval BN with running statistics, relu after every residual add)', async () => {
    setInitSeed(21);
    const m = createModel('resnet18');
    const r = seededRandom(22);
    const uniform = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
    for (const [name, t] of m.stateTensors()) {
      if (/bn|shortcut\.1/.test(name) && t.shape.length === 1) {
        const n = t.shape[0];
        if (name.endsWith('running_mean')) assign(t, uniform(n, -0.2, 0.2));
        else if (name.endsWith('running_var')) assign(t, uniform(n, 0.5, 2));
        else if (name.endsWith('weight')) assign(t, uniform(n, 0.6, 1.4));
        else if (name.endsWith('bias')) assign(t, uniform(n, -0.2, 0.2));
      }
    }
    const p = new Map<string, Float64Array>();
    for (const [name, t] of m.stateTensors()) p.set(name, Float64Array.from(await t.data()));
    const input = Float32Array.from({ length: 2 * 3072 }, () => r() * 4 - 2);

    const N = 2;
    const conv = (a: Map4, name: string, stride: number, pad: number): Map4 => {
      const w = p.get(`${name}.weight`)!;
      const O = w.length / (a.C * (pad ? 9 : 1));
      const K = pad ? 3 : 1;
      const { y, H, W } = conv2d64(a.x, [N, a.C, a.H, a.W], w, p.get(`${name}.bias`)!, O, K, stride, pad);
      return { x: y, C: O, H, W };
    };
    const bn = (a: Map4, name: string): Map4 => {
      const [g, b, mu, v] = ['weight', 'bias', 'running_mean', 'running_var'].map((k) => p.get(`${name}.${k}`)!);
      const hw = a.H * a.W;
      return { ...a, x: a.x.map((val, i) => { const c = Math.floor(i / hw) % a.C; return ((val - mu[c]) / Math.sqrt(v[c] + 1e-5)) * g[c] + b[c]; }) };
    };
    const relu = (a: Map4): Map4 => ({ ...a, x: a.x.map((v) => Math.max(v, 0)) });
    const add = (a: Map4, b: Map4): Map4 => ({ ...a, x: a.x.map((v, i) => v + b.x[i]) });

    let h = relu(bn(conv({ x: Float64Array.from(input), C: 3, H: 32, W: 32 }, 'conv1', 1, 1), 'bn1'));
    for (const [stage, stride] of [[1, 1], [2, 2], [3, 2], [4, 2]]) {
      for (const block of [0, 1]) {
        const pre = `layer${stage}.${block}`;
        const s = block === 0 ? stride : 1;
        const out = bn(conv(relu(bn(conv(h, `${pre}.conv1`, s, 1), `${pre}.bn1`)), `${pre}.conv2`, 1, 1), `${pre}.bn2`);
        const shortcut = p.has(`${pre}.shortcut.0.weight`) ? bn(conv(h, `${pre}.shortcut.0`, s, 0), `${pre}.shortcut.1`) : h;
        h = relu(add(out, shortcut));
      }
    }
    // 4x4 average pool of the 512 x 4 x 4 map, then the classifier.
    const L = p.get('linear.weight')!;
    const lb = p.get('linear.bias')!;
    const expected: number[] = [];
    for (let n = 0; n < N; n++) {
      const pooled = Array.from({ length: 512 }, (_, c) => h.x.subarray((n * 512 + c) * 16, (n * 512 + c + 1) * 16).reduce((a, v) => a + v, 0) / 16);
      for (let j = 0; j < 10; j++) expected.push(lb[j] + pooled.reduce((a, v, c) => a + v * L[j * 512 + c], 0));
    }

    m.eval();
    const x = fromArray(input, [2, 3, 32, 32]);
    const got = await noGrad(() => tidy(() => m.call(x))).dataAndDispose();
    x.dispose();
    const scale = Math.max(...expected.map(Math.abs));
    console.log(`logits (float64 reference): ${expected.map((v) => v.toFixed(4)).join(' ')}`);
    expect(scale).toBeGreaterThan(0.1);
    expectClose(got, expected, 1e-4 * scale, 1e-4, 'ResNet18 logits');
    m.dispose();
  }, 300_000);
});
