/**
 * A user's own layer kind and op, registered from outside the package (everything imported from the
 * package entry only), then traced, pruned (default and Intra-Fusion) and exported: the README's example.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  autograd as ag, BatchNorm2d, Conv2d, destroyRuntime, dependencyGroups, exportOnnx, fromArray, mapAxis, Module, OptimalTransport,
  prune, registerLayerKind, registerOp, tidy, AdaptiveAvgPool2d, type LayerKind, type Tensor,
} from '../src/index.js';
import { setInitSeed, seededRandom } from '../src/nn/init.js';
import { expectClose, gpu, randArray } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

// ---- what a user writes, outside the package ----

/** The user's dense layer: weight [out, in], bias [out], like torch.nn.Linear but their own class. */
class Dense extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(public inFeatures: number, public outFeatures: number) {
    super();
    const init = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(7.3 * i + inFeatures) * scale);
    this.weight = this.addParam('weight', fromArray(init(outFeatures * inFeatures, 1 / Math.sqrt(inFeatures)), [outFeatures, inFeatures]));
    this.bias = this.addParam('bias', fromArray(init(outFeatures, 0.1), [outFeatures]));
  }
  forward(x: Tensor): Tensor {
    return ag.linear(x, this.weight, this.bias);
  }
}

/** Its layer kind: a new channel space; rows of weight and bias are out-channels, weight columns in-channels. */
const denseKind: LayerKind<Dense> = {
  name: 'Dense',
  role: 'weight',
  flow: () => 'new',
  outChannels: (d) => d.outFeatures,
  inChannels: (d) => d.inFeatures,
  outAxes: (d) => [
    { tensor: 'weight', rows: 1, n: d.outFeatures, inner: d.inFeatures, shape: (k) => [k, d.inFeatures] },
    { tensor: 'bias', rows: 1, n: d.outFeatures, inner: 1, shape: (k) => [k] },
  ],
  inAxis: (d, factor) => ({ tensor: 'weight', rows: d.outFeatures, n: d.inFeatures / factor, inner: factor, shape: (k) => [d.outFeatures, k * factor] }),
  applyOut(d, m) {
    for (const axis of denseKind.outAxes(d)) mapAxis(d, axis, m.M, m.rowsOut);
    d.outFeatures = m.rowsOut;
  },
  applyIn(d, m, factor) {
    mapAxis(d, denseKind.inAxis(d, factor)!, m.M, m.rowsOut);
    d.inFeatures = m.rowsOut * factor;
  },
  resize: () => {},
  macs: (d) => d.inFeatures * d.outFeatures,
};

/**
 * The user's op: swish with a fixed beta, x * sigmoid(beta x), composed from the engine's ops and
 * recorded as ONE op under its own name (its backward is composed too: backward runs without recording).
 */
function swish(x: Tensor, beta = 1.5): Tensor {
  const y = ag.noGrad(() => ag.mul(x, ag.sigmoid(ag.scale(x, beta))));
  return ag.customOp('swish', y, [x], (g) => {
    // d/dx = s + beta x s (1 - s), with s = sigmoid(beta x) and 1 - s = sigmoid(-beta x).
    const s = ag.sigmoid(ag.scale(x, beta));
    return [ag.mul(g, ag.add(s, ag.scale(ag.mul(ag.mul(x, s), ag.sigmoid(ag.scale(x, -beta))), beta)))];
  }, { beta });
}

class UserNet extends Module {
  conv = this.addChild('conv', new Conv2d(3, 8, 3, 1, 1));
  bn = this.addChild('bn', new BatchNorm2d(8));
  pool = this.addChild('pool', new AdaptiveAvgPool2d(2));
  hidden = this.addChild('hidden', new Dense(8 * 4, 6));
  head = this.addChild('head', new Dense(6, 3));
  forward(x: Tensor): Tensor {
    const h = swish(this.bn.call(this.conv.call(x)));
    return this.head.call(swish(this.hidden.call(ag.flatten(this.pool.call(h)))));
  }
}

function register(): void {
  registerLayerKind(Dense, denseKind);
  registerOp({
    name: 'swish', summary: 'x sigmoid(beta x) (a user op)', channels: 'preserve', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Mul + Sigmoid + Mul'],
      export(t, ctx) {
        const x = ctx.input(t.node!.inputs[0]);
        const value = Float32Array.of(t.node!.attrs!.beta); // read now: the traced graph is gone when values are read
        const beta = ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.beta`), [], async () => value);
        ctx.emit(t, 'Mul', [x, ctx.intermediate(t, 'Sigmoid', [ctx.intermediate(t, 'Mul', [x, beta])])]);
      },
    },
  });
}

// ---- checks ----

const shape: [number, number, number] = [3, 6, 6];

async function outputs(m: Module, x: Float32Array): Promise<Float32Array> {
  m.eval();
  return ag.noGrad(() => tidy(() => m.call(fromArray(x, [2, ...shape])))).dataAndDispose();
}

describe('registerLayerKind and registerOp from outside the package', () => {
  it('refused before registration, naming the op; then grouped, pruned and exported', async () => {
    setInitSeed(3);
    const before = new UserNet();
    expect(() => dependencyGroups(before, { inputShape: shape })).toThrow(/the op "swish" has no channel rule; ops with one: .*\(add one with registerOp\)/);
    before.dispose();

    register();
    const x = randArray(seededRandom(9), 2 * 3 * 6 * 6);
    setInitSeed(3);
    const m = new UserNet();
    expect(dependencyGroups(m, { inputShape: shape }).map((g) => g.describe())).toEqual([
      'group 0 (6 channels): out hidden; in head',
      'group 1 (8 channels): out conv; bn bn; in hidden',
    ]);
    // Intra-Fusion, dimensionality-preserving vs shrunk: the user kind's maps on rows and columns agree.
    const fused = async (dimensionalityPreserving: boolean) => {
      setInitSeed(3);
      const net = new UserNet();
      await prune(net, { importanceCriteria: 'l1', sparsity: 0.5, inputShape: shape, optimalTransport: new OptimalTransport(), dimensionalityPreserving });
      const y = await outputs(net, x);
      const widths = [net.hidden.inFeatures, net.hidden.outFeatures, net.head.inFeatures];
      net.dispose();
      return { y, widths };
    };
    const [kept, shrunk] = [await fused(true), await fused(false)];
    expect(shrunk.widths).toEqual([16, 3, 3]);
    expectClose(shrunk.y, kept.y, 1e-5, 1e-4, 'preserving vs shrunk');

    // Default pruning, then export: onnxruntime runs the user op's ONNX nodes as the engine runs swish.
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, inputShape: shape });
    const session = await ort.InferenceSession.create(await exportOnnx(m, { inputShape: shape }));
    const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [2, ...shape]) });
    await session.release();
    expectClose(result[session.outputNames[0]].data as Float32Array, await outputs(m, x), 1e-5, 1e-4, 'onnxruntime vs engine');
    m.dispose();
  });
});
