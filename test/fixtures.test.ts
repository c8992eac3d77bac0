/**
 * Every case in ../shared/fixtures/ops (except `ot`, which belongs to the pruner) against the
 * engine, forward and backward through the autograd layer. Expected values are float64 results
 * from PyTorch; tolerances are for float32 arithmetic (stated per op below).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ag from '../src/tensor/autograd.js';
import { matmul } from '../src/kernels/gemm.js';
import { SGD } from '../src/nn/optim.js';
import { destroyRuntime, fromArray, tidy, type Tensor } from '../src/tensor/tensor.js';
import { expectClose, fixtureCases, gpu, loadFixture } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

/** atol, rtol per op family: sums of up to ~600 float32 products. */
const TOL = { forward: [1e-5, 1e-4], grad: [1e-5, 1e-4], loss: [1e-6, 1e-5] } as const;

function load(file: string) {
  const f = loadFixture(file);
  const get = (name: string) => {
    const t = f.tensors.get(name);
    if (!t) throw new Error(`${file}: missing tensor ${name}`);
    return t;
  };
  const tensor = (name: string, requiresGrad = false) => {
    const t = get(name);
    const out = fromArray(t.values, t.shape);
    out.requiresGrad = requiresGrad;
    return out;
  };
  return { get, tensor, meta: f.metadata };
}

async function grads(...ts: Tensor[]): Promise<Float32Array[]> {
  return Promise.all(ts.map((t) => t.grad!.data()));
}

describe('fixtures: matmul', () => {
  for (const c of fixtureCases('matmul')) {
    it(c.file, async () => {
      const f = load(c.file);
      const out = tidy(() => matmul(f.tensor('a'), f.tensor('b')));
      expectClose(await out.dataAndDispose(), f.get('c').values, TOL.forward[0], TOL.forward[1], 'c');
    });
  }
});

describe('fixtures: linear', () => {
  for (const c of fixtureCases('linear')) {
    it(c.file, async () => {
      const f = load(c.file);
      const [x, w, b] = [f.tensor('x', true), f.tensor('w', true), f.tensor('b', true)];
      const y = tidy(() => {
        const y = ag.linear(x, w, b);
        ag.backward(y, f.tensor('dy'));
        return y;
      });
      expectClose(await y.dataAndDispose(), f.get('y').values, TOL.forward[0], TOL.forward[1], 'y');
      const [dx, dw, db] = await grads(x, w, b);
      expectClose(dx, f.get('dx').values, TOL.grad[0], TOL.grad[1], 'dx');
      expectClose(dw, f.get('dw').values, TOL.grad[0], TOL.grad[1], 'dw');
      expectClose(db, f.get('db').values, TOL.grad[0], TOL.grad[1], 'db');
    });
  }
});

describe('fixtures: conv2d', () => {
  for (const c of fixtureCases('conv2d')) {
    it(`${c.file} ${JSON.stringify(c.params)}`, async () => {
      const f = load(c.file);
      const geometry = { stride: Number(c.params.stride), padding: Number(c.params.padding) };
      const [x, w, b] = [f.tensor('x', true), f.tensor('w', true), f.tensor('b', true)];
      const y = tidy(() => {
        const y = ag.conv2d(x, w, b, geometry);
        ag.backward(y, f.tensor('dy'));
        return y;
      });
      expectClose(await y.dataAndDispose(), f.get('y').values, TOL.forward[0], TOL.forward[1], 'y');
      const [dx, dw, db] = await grads(x, w, b);
      expectClose(dx, f.get('dx').values, TOL.grad[0], TOL.grad[1], 'dx');
      expectClose(dw, f.get('dw').values, 1e-4, 1e-4, 'dw'); // reductions over up to 256 positions
      expectClose(db, f.get('db').values, 1e-4, 1e-4, 'db');
    });
  }
});

describe('fixtures: batchnorm2d', () => {
  for (const c of fixtureCases('batchnorm2d')) {
    it(`${c.file} train and eval`, async () => {
      const f = load(c.file);
      const eps = Number(c.params.eps);
      const momentum = Number(c.params.momentum);
      // Train mode: batch statistics, running-stat update, full backward.
      const x = f.tensor('x', true);
      const state = { gamma: f.tensor('gamma', true), beta: f.tensor('beta', true), runningMean: f.tensor('running_mean'), runningVar: f.tensor('running_var') };
      const y = tidy(() => {
        const y = ag.batchNorm2d(x, state, { training: true, eps, momentum });
        ag.backward(y, f.tensor('dy'));
        return y;
      });
      expectClose(await y.dataAndDispose(), f.get('y_train').values, 1e-5, 1e-4, 'y_train');
      expectClose(await state.runningMean.data(), f.get('running_mean_after').values, 1e-6, 1e-5, 'running_mean');
      expectClose(await state.runningVar.data(), f.get('running_var_after').values, 1e-6, 1e-5, 'running_var');
      const [dx, dgamma, dbeta] = await grads(x, state.gamma, state.beta);
      expectClose(dx, f.get('dx').values, 1e-5, 1e-4, 'dx');
      expectClose(dgamma, f.get('dgamma').values, 1e-4, 1e-4, 'dgamma');
      expectClose(dbeta, f.get('dbeta').values, 1e-4, 1e-4, 'dbeta');
      // Eval mode uses the running statistics from before the update.
      const evalState = { ...state, runningMean: f.tensor('running_mean'), runningVar: f.tensor('running_var') };
      const yEval = tidy(() => ag.batchNorm2d(f.tensor('x'), evalState, { training: false, eps }));
      expectClose(await yEval.dataAndDispose(), f.get('y_eval').values, 1e-5, 1e-4, 'y_eval');
    });
  }
});

describe('fixtures: pooling', () => {
  for (const c of [...fixtureCases('maxpool2d'), ...fixtureCases('avgpool2d')]) {
    it(`${c.file} ${JSON.stringify(c.params)}`, async () => {
      const f = load(c.file);
      const geometry = { kernel: Number(c.params.kernel), stride: Number(c.params.stride) };
      const x = f.tensor('x', true);
      const op = c.op === 'maxpool2d' ? ag.maxPool2d : ag.avgPool2d;
      const y = tidy(() => {
        const y = op(x, geometry);
        ag.backward(y, f.tensor('dy'));
        return y;
      });
      expectClose(await y.dataAndDispose(), f.get('y').values, 1e-6, 1e-6, 'y');
      expectClose((await grads(x))[0], f.get('dx').values, 1e-6, 1e-5, 'dx');
    });
  }
});

describe('fixtures: cross_entropy', () => {
  for (const c of fixtureCases('cross_entropy')) {
    it(c.file, async () => {
      const f = load(c.file);
      const logits = f.tensor('logits', true);
      const loss = tidy(() => {
        const loss = ag.crossEntropy(logits, f.tensor('labels'));
        ag.backward(loss);
        return loss;
      });
      expectClose(await loss.dataAndDispose(), f.get('loss').values, TOL.loss[0], TOL.loss[1], 'loss');
      expectClose((await grads(logits))[0], f.get('dlogits').values, 1e-7, 1e-5, 'dlogits');
    });
  }
});

describe('fixtures: sgd', () => {
  for (const c of fixtureCases('sgd')) {
    it(`${c.file} ${JSON.stringify(c.params)}`, async () => {
      const f = load(c.file);
      const steps = Number(c.params.steps);
      expect(steps).toBe(3);
      const p = f.tensor('p0').keep();
      const opt = new SGD([p], {
        lr: Number(c.params.lr), momentum: Number(c.params.momentum), weightDecay: Number(c.params.weight_decay),
        nesterov: c.params.nesterov === true || c.params.nesterov === 'true',
      });
      for (let s = 1; s <= steps; s++) {
        p.grad = f.tensor(`g${s}`).keep();
        opt.step();
        opt.zeroGrad();
      }
      expectClose(await p.data(), f.get('p3').values, 1e-6, 1e-5, 'p3');
      opt.dispose();
      p.dispose();
    });
  }
});
