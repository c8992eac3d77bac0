/**
 * ONNX export and import, checked with onnxruntime-node (an independent client) as the reference.
 * "Relative error" below is max|a - b| / max|b| over all outputs, b being the reference's outputs.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerWidths, modelFromStateDict, modelToSafetensors } from '../src/nn/checkpoint.js';
import { IMAGENET_STATS, makeBatch, parseCifarBatches, parseNormalization, subset, type Cifar10Split } from '../src/data/cifar10.js';
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../src/nn/layers.js';
import { Module as BaseModule } from '../src/nn/module.js';
import * as ag from '../src/tensor/autograd.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { createModel } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { describeDim, prepass, resolveDims } from '../src/onnx/prepass.js';
import { AttributeType, DataType, decodeModel, encodeModel, type Model, type Node } from '../src/onnx/proto.js';
import { dependencyGroups, OptimalTransport, prune } from '../src/prune/index.js';
import { noGrad } from '../src/tensor/autograd.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';
import { assign, destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { DataError, UnsupportedError } from '../src/errors.js';
import { main as runMain, type RunResult } from '../src/run.js';
import { gpu, relativeError, sharedDir } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const vggFile = () => parseSafetensors(readFileSync(join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors')), 'vgg11_bn checkpoint');
let testSet: Cifar10Split | null = null;
/** The first n CIFAR-10 test images, normalised as the checkpoint says. */
function cifarImages(n: number): Float32Array {
  testSet ??= parseCifarBatches([{ name: 'test_batch.bin', bytes: readFileSync(join(sharedDir(), 'data/cifar10/test_batch.bin')) }]);
  const meta = vggFile().metadata;
  const normalization = parseNormalization(meta.normalize_mean, meta.normalize_std) ?? IMAGENET_STATS;
  return makeBatch(subset(testSet, n), Array.from({ length: n }, (_, i) => i), { normalization }).x;
}
const randomImages = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return new Float32Array(n * 3072).map(() => 2 * r() - 1);
};

/** The engine's outputs for images [n, 3, 32, 32], in batches. */
async function engineOutputs(model: Module, images: Float32Array, batch = 50): Promise<Float32Array> {
  model.eval();
  const n = images.length / 3072;
  const parts: Float32Array[] = [];
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const x = images.subarray(i * 3072, (i + b) * 3072);
    parts.push(await noGrad(() => tidy(() => model.call(fromArray(x, [b, 3, 32, 32])))).dataAndDispose());
  }
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((offset, p) => (out.set(p, offset), offset + p.length), 0);
  return out;
}

async function ortOutputs(onnx: Uint8Array, images: Float32Array, shape = [3, 32, 32]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnx);
  const n = images.length / shape.reduce((a, b) => a * b);
  const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', images, [n, ...shape]) });
  await session.release();
  return result[session.outputNames[0]].data as Float32Array;
}

/**
 * Random BN statistics and affine parameters, so folding is exercised (fresh BNs are the identity).
 * Variances are small (0.005-0.055) so that eps = 1e-5 changes the scale by up to 1e-3, which a fold
 * without eps would show; gamma is proportional to sqrt(var) to keep activations of order one.
 */
function randomizeBatchNorms(model: Module, seed: number): void {
  const r = seededRandom(seed);
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof BatchNorm2d)) continue;
    const c = m.numFeatures;
    const variance = new Float32Array(c).map(() => 0.005 + 0.05 * r());
    assign(m.running_var, variance);
    assign(m.weight, variance.map((v) => Math.sqrt(v) * (0.5 + r())));
    assign(m.bias, new Float32Array(c).map(() => r() - 0.5));
    assign(m.running_mean, new Float32Array(c).map(() => 0.2 * (r() - 0.5)));
  }
}

type Variant = 'unpruned' | 'default' | 'intra-fusion';
async function pruned(model: Module, variant: Variant): Promise<Module> {
  if (variant !== 'unpruned') {
    const before = model.parameterCount();
    await prune(model, {
      importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1],
      optimalTransport: variant === 'intra-fusion' ? new OptimalTransport({ p: 1, targetProbability: 'uniform', sourceProbability: 'uniform', target: 'most_important', solver: 'emd' }) : null,
    });
    expect(model.parameterCount()).toBeLessThan(before); // the ONNX file really has the pruned shapes
  }
  return model;
}

describe('ONNX export, run by onnxruntime-node', () => {
  for (const variant of ['unpruned', 'default', 'intra-fusion'] as const) {
    it(`VGG11-BN (shared checkpoint), ${variant}: 100 CIFAR-10 test images and random inputs within 1e-4 relative`, async () => {
      const model = await pruned(modelFromStateDict('vgg11_bn', vggFile(), 'vgg11_bn checkpoint'), variant);
      const onnx = await exportOnnx(model, { inputShape: [3, 32, 32] });
      for (const images of [cifarImages(100), randomImages(8, 1)]) {
        const ours = await engineOutputs(model, images);
        const theirs = await ortOutputs(onnx, images);
        const rel = relativeError(ours, theirs);
        if (process.env.ONNX_REPORT) console.log(`${expect.getState().currentTestName}: relative error ${rel.toExponential(2)}`);
        expect(rel).toBeLessThan(1e-4);
      }
      model.dispose();
    }, 300_000);

    it(`ResNet18 (random weights and BN statistics), ${variant}: CIFAR-10 and random inputs at batch 4 within 1e-4 relative`, async () => {
      setInitSeed(7);
      const model = createModel('resnet18');
      randomizeBatchNorms(model, 8);
      await pruned(model, variant);
      const onnx = await exportOnnx(model, { inputShape: [3, 32, 32] });
      for (const images of [cifarImages(4), randomImages(4, 2)]) {
        const ours = await engineOutputs(model, images);
        const theirs = await ortOutputs(onnx, images);
        const rel = relativeError(ours, theirs);
        if (process.env.ONNX_REPORT) console.log(`${expect.getState().currentTestName}: relative error ${rel.toExponential(2)}`);
        expect(rel).toBeLessThan(1e-4);
      }
      model.dispose();
    }, 300_000);
  }
});

/** Asserts engine and onnxruntime agree within 1e-4 relative; returns the error for the report. */
async function expectSameOutputs(model: Module, onnx: Uint8Array, images: Float32Array, what: string): Promise<number> {
  const rel = relativeError(await engineOutputs(model, images), await ortOutputs(onnx, images));
  if (process.env.ONNX_REPORT) console.log(`${what}: relative error ${rel.toExponential(2)}`);
  expect(rel, what).toBeLessThan(1e-4);
  return rel;
}

/** A small CNN written directly as ONNX with the ops our exporter never writes (BatchNormalization after a
 * conv, a bias-free conv, Identity, Dropout, Reshape, MatMul + Add, Gemm with transB = 0 and alpha != 1). */
function handBuiltOnnx(): Uint8Array {
  const r = seededRandom(11);
  const init = (name: string, dims: number[], f: () => number = () => r() - 0.5) => ({
    name, dims, data_type: DataType.FLOAT, float_data: Array.from({ length: dims.reduce((a, b) => a * b, 1) }, f),
  });
  const ints = (name: string, v: number[]) => ({ name, type: AttributeType.INTS, ints: v });
  const node = (name: string, op_type: string, input: string[], output: string, attribute: Node['attribute'] = []): Node => ({ name, op_type, input, output: [output], attribute });
  const dim = (d: number | string) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d });
  const model: Model = {
    ir_version: 7,
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'hand_built',
      node: [
        node('stem', 'Conv', ['image', 'stem.w', 'stem.b'], 'c1', [ints('kernel_shape', [3, 3]), ints('pads', [1, 1, 1, 1])]),
        node('stem_bn', 'BatchNormalization', ['c1', 'bn.scale', 'bn.b', 'bn.mean', 'bn.var'], 'b1', [{ name: 'epsilon', type: AttributeType.FLOAT, f: 1e-3 }]),
        node('act1', 'Relu', ['b1'], 'r1'),
        node('same', 'Identity', ['r1'], 'i1'),
        node('pool', 'MaxPool', ['i1'], 'p1', [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]),
        node('conv2', 'Conv', ['p1', 'conv2.w'], 'c2', [ints('kernel_shape', [3, 3]), ints('pads', [1, 1, 1, 1]), ints('strides', [2, 2])]),
        node('act2', 'Relu', ['c2'], 'r2'),
        node('avg', 'AveragePool', ['r2'], 'a2', [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]),
        node('gap', 'GlobalAveragePool', ['a2'], 'g'),
        node('flat', 'Flatten', ['g'], 'f'),
        node('drop', 'Dropout', ['f'], 'd'),
        node('fc1', 'MatMul', ['d', 'fc1.w'], 'm'),
        node('fc1_bias', 'Add', ['m', 'fc1.b'], 'h'),
        node('act3', 'Relu', ['h'], 'r3'),
        node('view', 'Reshape', ['r3', 'view.shape'], 'v'),
        node('head', 'Gemm', ['v', 'head.w', 'head.b'], 'logits', [{ name: 'transB', type: AttributeType.INT, i: 0 }, { name: 'alpha', type: AttributeType.FLOAT, f: 0.5 }]),
      ],
      initializer: [
        init('stem.w', [8, 3, 3, 3]), init('stem.b', [8]),
        init('bn.scale', [8], () => 0.5 + r()), init('bn.b', [8]), init('bn.mean', [8], () => 0.1 * r()), init('bn.var', [8], () => 0.5 + r()),
        init('conv2.w', [16, 8, 3, 3]),
        init('fc1.w', [16, 12]), init('fc1.b', [12]),
        { name: 'view.shape', dims: [2], data_type: DataType.INT64, int64_data: [0, -1] },
        init('head.w', [12, 10]), init('head.b', [10]),
      ],
      input: [{ name: 'image', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: ['batch', 3, 32, 32].map(dim) } } } }],
      output: [{ name: 'logits', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: ['batch', 10].map(dim) } } } }],
    },
  };
  return encodeModel(model);
}

/** A user-built model: a scaled residual written functionally around public modules. */
class ScaledResidual extends BaseModule {
  readonly body = this.addChild('body', new Sequential(new Conv2d(8, 8, 3, 1, 1, false), new BatchNorm2d(8)));
  constructor(readonly factor: number, readonly mixBatch = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    const y = ag.relu(ag.add(ag.scale(this.body.call(x), this.factor), x));
    return this.mixBatch ? ag.reshape(y, [1, y.size]) : y;
  }
}

describe('ONNX export of user-built models', () => {
  const build = () => new Sequential(
    new BatchNorm2d(3), // not after a conv: a BatchNormalization node
    new Conv2d(3, 8, 3, 1, 1, false), new BatchNorm2d(8), new ReLU(), // bias-free conv, BN folded into it
    new MaxPool2d(2), new ScaledResidual(0.5), new AvgPool2d(2),
    new Conv2d(8, 16, 3, 2, 1), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(16, 10, false),
  );

  it('BatchNormalization, bias-free conv with folded BN, Mul, Add, pooling, GlobalAveragePool and a bias-free Gemm match onnxruntime', async () => {
    setInitSeed(21);
    const model = build();
    randomizeBatchNorms(model, 22);
    const onnx = await exportOnnx(model, { inputShape: [3, 32, 32], opset: 17 });
    const ops = decodeModel(onnx).graph!.node!.map((n) => n.op_type);
    expect(ops).toEqual(['BatchNormalization', 'Conv', 'Relu', 'MaxPool', 'Conv', 'Mul', 'Add', 'Relu', 'AveragePool', 'Conv', 'Relu', 'GlobalAveragePool', 'Flatten', 'Gemm']);
    await expectSameOutputs(model, onnx, randomImages(4, 23), 'user-built model');
    // And back: the imported model computes the same.
    const back = importOnnx(onnx, 'user.onnx');
    await expectSameOutputs(back, onnx, randomImages(4, 24), 'user-built model re-imported');
    back.dispose();
    model.dispose();
  }, 120_000);

  it('refuses what ONNX cannot express with a free batch dimension, naming the op', async () => {
    const model = new Sequential(new Conv2d(3, 8, 3, 1, 1), new ScaledResidual(0.5, true));
    await expect(exportOnnx(model, { inputShape: [3, 32, 32] })).rejects.toThrow(new UnsupportedError('exportOnnx: 1: a reshape [2,8,32,32] -> [1,16384] that mixes the batch dimension.'));
    model.dispose();
  });
});

describe('ONNX import', () => {
  it('an exported ResNet18 imported fresh equals onnxruntime on that file, keeps its groups and names, and prunes and re-exports', async () => {
    setInitSeed(3);
    const original = createModel('resnet18');
    randomizeBatchNorms(original, 4);
    const onnx = await exportOnnx(original, { inputShape: [3, 32, 32] });
    const groups = dependencyGroups(original).length;
    original.dispose();
    const model = importOnnx(onnx, 'resnet18.onnx');
    expect(model.inputShape).toEqual([3, 32, 32]);
    expect(model.stateTensors().map(([n]) => n)).toContain('layer2.0.shortcut.0.weight');
    expect(dependencyGroups(model).length).toBe(groups);
    await expectSameOutputs(model, onnx, randomImages(4, 5), 'imported ResNet18 vs onnxruntime on the original file');
    await pruned(model, 'intra-fusion');
    await expectSameOutputs(model, await exportOnnx(model, { inputShape: [3, 32, 32] }), randomImages(4, 6), 'imported, pruned (IF) ResNet18 re-exported');
    model.dispose();
  }, 300_000);

  it('the shared VGG11-BN through ONNX equals onnxruntime on 100 CIFAR-10 images, then prunes (default) and re-exports', async () => {
    const vgg = modelFromStateDict('vgg11_bn', vggFile(), 'vgg11_bn checkpoint');
    const onnx = await exportOnnx(vgg, { inputShape: [3, 32, 32] });
    vgg.dispose();
    const model = importOnnx(onnx, 'vgg.onnx');
    await expectSameOutputs(model, onnx, cifarImages(100), 'imported VGG11-BN vs onnxruntime on the original file');
    await pruned(model, 'default');
    await expectSameOutputs(model, await exportOnnx(model, { inputShape: [3, 32, 32] }), cifarImages(20), 'imported, pruned (default) VGG11-BN re-exported');
    model.dispose();
  }, 300_000);

  it('a hand-built ONNX CNN (BatchNormalization, Identity, Dropout, Reshape, MatMul+Add, Gemm transB=0) equals onnxruntime, before and after pruning', async () => {
    const onnx = handBuiltOnnx();
    const model = importOnnx(onnx, 'hand_built.onnx');
    expect(model.children().map(([n]) => n)).toEqual(['stem', 'stem_bn', 'pool', 'conv2', 'avg', 'gap', 'fc1', 'head']);
    await expectSameOutputs(model, onnx, randomImages(4, 7), 'hand-built model vs onnxruntime');
    expect(dependencyGroups(model).map((g) => g.channels)).toEqual([12, 16, 8]);
    for (const variant of ['default', 'intra-fusion'] as const) {
      const copy = importOnnx(onnx, 'hand_built.onnx');
      await prune(copy, {
        importanceCriteria: 'l1', sparsity: 0.5,
        optimalTransport: variant === 'intra-fusion' ? new OptimalTransport({ p: 1, targetProbability: 'uniform', sourceProbability: 'uniform', target: 'most_important', solver: 'emd' }) : null,
      });
      expect(dependencyGroups(copy).map((g) => g.channels)).toEqual([6, 8, 4]);
      await expectSameOutputs(copy, await exportOnnx(copy, { inputShape: [3, 32, 32] }), randomImages(4, 8), `hand-built, pruned (${variant}), re-exported`);
      copy.dispose();
    }
    model.dispose();
  }, 300_000);
});

describe('ONNX shape arithmetic (pre-pass)', () => {
  const int = (name: string, v: number): Node => ({ op_type: 'Constant', name, input: [], output: [name], attribute: [{ name: 'value', t: { dims: [], data_type: DataType.INT64, int64_data: [v] } }] } as unknown as Node);
  const op = (op_type: string, input: string[], output: string): Node => ({ op_type, name: output, input, output: [output] } as Node);

  it('folds Add / Sub / Mul / Div on shape values: numbers to constants (Div truncates), channel counts to expressions resolved at run time; activations and float constants are left to the op importers', () => {
    const nodes = [
      int('one', 1), int('two', 2), int('nine', 9), int('minus7', -7), int('zero', 0),
      op('Shape', ['x'], 'shape'), op('Gather', ['shape', 'one'], 'C'),
      op('Add', ['C', 'one'], 'C1'), op('Div', ['C1', 'two'], 'half'), op('Mul', ['half', 'two'], 'end'),
      op('Sub', ['nine', 'two'], 'seven'), op('Div', ['minus7', 'two'], 'minus3'),
      op('Add', ['x', 'one'], 'activation'),
    ];
    const r = prepass([], nodes, 14, 'test.onnx');
    expect(r.constants.get('seven')!.values).toEqual([7]);
    expect(r.constants.get('minus3')!.values).toEqual([-3]);
    const end = r.shapes.get('end')!;
    expect(end.scalar).toBe(true);
    expect(describeDim(end.dims[0])).toBe('((x.shape[1] + 1) / 2) * 2');
    for (const [C, want] of [[7, 8], [8, 8], [1, 2]]) expect(resolveDims(end.dims, () => [2, C, 8, 8])).toEqual([want]);
    expect(r.folded.has(nodes.find((n) => n.name === 'activation')!)).toBe(false);
    expect(r.shapes.has('activation') || r.constants.has('activation')).toBe(false);
    expect(() => prepass([], [int('one', 1), int('zero', 0), op('Div', ['one', 'zero'], 'bad')], 14, 'test.onnx')).toThrow(DataError);
  });

  it('a cast to float stops the folding (true division of sizes is no truncating Div); a cast to int keeps it; a rank-2 integer constant is no shape value', () => {
    const cast = (input: string, output: string, to: number): Node => ({ ...op('Cast', [input], output), attribute: [{ name: 'to', i: to }] } as unknown as Node);
    const matrix: Node = { op_type: 'Constant', name: 'm', input: [], output: ['m'], attribute: [{ name: 'value', t: { dims: [2, 2], data_type: DataType.INT64, int64_data: [1, 2, 3, 4] } }] } as unknown as Node;
    const nodes = [
      int('one', 1), int('four', 4), matrix,
      op('Shape', ['x'], 'shape'), op('Gather', ['shape', 'one'], 'C'),
      cast('C', 'Cf', DataType.FLOAT), cast('four', 'fourF', DataType.FLOAT), op('Div', ['Cf', 'fourF'], 'quarterF'),
      cast('C', 'Ci', DataType.INT64), op('Div', ['Ci', 'four'], 'quarter'),
      op('Add', ['m', 'm'], 'm2'),
    ];
    const r = prepass([], nodes, 14, 'test.onnx');
    for (const name of ['Cf', 'fourF', 'quarterF', 'm2']) expect(r.shapes.has(name) || r.constants.has(name), name).toBe(false);
    expect(resolveDims(r.shapes.get('quarter')!.dims, () => [1, 7, 8, 8])).toEqual([1]);
  });
});

describe('malformed ONNX files', () => {
  let good: Uint8Array;
  const edit = (change: (m: Model) => void) => {
    const m = decodeModel(good);
    change(m);
    return encodeModel(m);
  };
  beforeAll(() => {
    good = handBuiltOnnx();
  });

  it('truncated or not protobuf: DataError', () => {
    expect(() => importOnnx(good.subarray(0, Math.floor(good.length / 2)), 'cut.onnx')).toThrow(DataError);
    expect(() => importOnnx(good.subarray(0, Math.floor(good.length / 2)), 'cut.onnx')).toThrow(/cut\.onnx is not a valid ONNX file \(truncated or not protobuf/);
    expect(() => importOnnx(new TextEncoder().encode('{"this": "is json"}'), 'x.json')).toThrow(DataError);
  });

  it('an opset older than 7, or none: clear errors', () => {
    expect(() => importOnnx(edit((m) => (m.opset_import![0].version = 6)), 'old.onnx')).toThrow(new UnsupportedError('old.onnx: opset 6 is too old; opsets 7 and newer are supported (re-export with a newer opset).'));
    expect(() => importOnnx(edit((m) => (m.opset_import = [{ domain: 'com.example', version: 1 }])), 'no.onnx')).toThrow(/no opset_import for the default ONNX domain/);
  });

  it('an unknown op or unsupported attribute value: UnsupportedError naming the node and op or attribute', () => {
    expect(() => importOnnx(edit((m) => (m.graph!.node![2].op_type = 'Selu')), 'm.onnx')).toThrow(new UnsupportedError('m.onnx: node "act1" (Selu): the operator Selu is not supported.'));
    const setAttr = (nodeName: string, attr: Node['attribute']) => edit((m) => m.graph!.node!.find((n) => n.name === nodeName)!.attribute!.push(...attr!));
    expect(() => importOnnx(setAttr('conv2', [{ name: 'dilations', type: AttributeType.INTS, ints: [2, 2, 2] }]), 'm.onnx')).toThrow(/node "conv2" \(Conv\): dilations=\[2,2,2\]; two values \(height, width\) are expected/);
    expect(() => importOnnx(setAttr('pool', [{ name: 'storage_order', type: AttributeType.INT, i: 1 }]), 'm.onnx')).toThrow(/node "pool" \(MaxPool\): storage_order=1 is not supported/);
    expect(() => importOnnx(setAttr('stem', [{ name: 'auto_pad', type: AttributeType.STRING, s: new TextEncoder().encode('SAME_UPPER') }]), 'm.onnx')).toThrow(/node "stem" \(Conv\): auto_pad=SAME_UPPER; only NOTSET/);
    expect(() => importOnnx(setAttr('head', [{ name: 'transA', type: AttributeType.INT, i: 1 }]), 'm.onnx')).toThrow(/node "head" \(Gemm\): transA=1 is not supported/);
    const wrongKernel = edit((m) => (m.graph!.node!.find((n) => n.name === 'conv2')!.attribute!.find((a) => a.name === 'kernel_shape')!.ints = [5, 5]));
    expect(() => importOnnx(wrongKernel, 'm.onnx')).toThrow(new DataError('m.onnx: node "conv2" (Conv): kernel_shape=[5,5] does not match the weight\'s [16,8,3,3].'));
    const maskUsed = edit((m) => {
      const drop = m.graph!.node!.find((n) => n.name === 'drop')!;
      drop.output!.push('mask');
      m.graph!.node!.push({ name: 'use_mask', op_type: 'Identity', input: ['mask'], output: ['unused'] });
    });
    expect(() => importOnnx(maskUsed, 'm.onnx')).toThrow(/node "drop" \(Dropout\): its output "mask" is used; only the first output/);
  });

  it('a missing initializer: DataError naming the node and the tensor', () => {
    expect(() => importOnnx(edit((m) => (m.graph!.initializer = m.graph!.initializer!.filter((t) => t.name !== 'conv2.w'))), 'm.onnx'))
      .toThrow(new DataError('m.onnx: node "conv2" (Conv) reads "conv2.w", which is neither an initializer, the input nor any node\'s output (a missing initializer?).'));
  });

  it('a dynamic height or width: DataError saying only the batch may be dynamic', () => {
    const dynamic = edit((m) => (m.graph!.input![0].type!.tensor_type!.shape!.dim![2] = { dim_param: 'height' }));
    expect(() => importOnnx(dynamic, 'dyn.onnx')).toThrow(DataError);
    expect(() => importOnnx(dynamic, 'dyn.onnx')).toThrow(/input "image" has a dynamic height dimension \("height"\); only the batch dimension may be dynamic/);
  });
});

describe('self-describing pruned safetensors', () => {
  it('a pruned checkpoint carries layer_widths, loads from them alone, and a wrong width is caught', async () => {
    setInitSeed(12);
    const model = createModel('vgg11_bn');
    await prune(model, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1, 4] });
    const bytes = await modelToSafetensors(model, { model: 'vgg11_bn', input_shape: '3,32,32' });
    const file = parseSafetensors(bytes, 'pruned.safetensors');
    const widths = JSON.parse(file.metadata.layer_widths);
    expect(widths).toEqual(layerWidths(model));
    expect(widths['features.22']).toEqual({ kind: 'Conv2d', in: 512, out: 256 }); // group 1 halved
    expect(widths['features.25']).toEqual({ kind: 'Conv2d', in: 256, out: 512 });
    expect(widths['features.11']).toEqual({ kind: 'Conv2d', in: 256, out: 128 }); // group 4 halved
    expect(widths['features.12']).toEqual({ kind: 'BatchNorm2d', in: 128, out: 128 });
    expect(widths.classifier).toEqual({ kind: 'Linear', in: 512, out: 10 });
    const loaded = modelFromStateDict('vgg11_bn', file, 'pruned.safetensors');
    expect(layerWidths(loaded)).toEqual(widths);
    const images = randomImages(2, 13);
    expect(relativeError(await engineOutputs(loaded, images), await engineOutputs(model, images))).toBe(0);
    loaded.dispose();
    // Loading reads the widths from the metadata: a wrong one fails on shapes, naming the layer.
    file.metadata.layer_widths = JSON.stringify({ ...widths, 'features.22': { kind: 'Conv2d', in: 512, out: 200 } });
    expect(() => modelFromStateDict('vgg11_bn', file, 'pruned.safetensors')).toThrow(/pruned\.safetensors does not fit this model .*features\.22\.weight: file has \[256,512,3,3\], model has \[200,512,3,3\]/);
    file.metadata.layer_widths = JSON.stringify({ 'layer1.0.conv1': { kind: 'Conv2d', in: 64, out: 64 } });
    expect(() => modelFromStateDict('vgg11_bn', file, 'pruned.safetensors')).toThrow(/layer_widths names Conv2d "layer1\.0\.conv1", which this model does not have/);
    model.dispose();
  }, 120_000);
});

describe('run.js --export-onnx and --model FILE.onnx', () => {
  const out = mkdtempSync(join(tmpdir(), 'if-onnx-cli-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  const results = (dir: string) => {
    const logs = readdirSync(join(dir, 'logs'));
    return JSON.parse(readFileSync(join(dir, 'logs', logs[0]), 'utf8')) as RunResult[];
  };
  const common = ['--data-dir', join(sharedDir(), 'data/cifar10'), '--group_idxs', '2', '--sparsities', '0.5', '--eval-samples', '40', '--export-onnx'];

  it('writes one .onnx beside each pruned checkpoint and for the unpruned model; onnxruntime runs them as the engine does', async () => {
    expect(await runMain([...common, '--checkpoint', join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors'), '--out', join(out, 'a')])).toBe(0);
    await gpu(); // main() releases the device when it finishes
    const dir = join(out, 'a', 'pruned_models');
    expect(readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort()).toEqual([
      'vgg11_bn_l1_g2_s0.5_default.onnx', 'vgg11_bn_l1_g2_s0.5_intra_fusion.onnx', 'vgg11_bn_unpruned.onnx',
    ]);
    const [r] = results(join(out, 'a'));
    expect(r.intra_fusion.onnx).toBe(join(dir, 'vgg11_bn_l1_g2_s0.5_intra_fusion.onnx'));
    const file = parseSafetensors(readFileSync(r.intra_fusion.checkpoint!), 'if.safetensors');
    const engine = modelFromStateDict('vgg11_bn', file, 'if.safetensors');
    await expectSameOutputs(engine, readFileSync(r.intra_fusion.onnx!), cifarImages(20), 'CLI-exported Intra-Fusion VGG vs its safetensors in the engine');
    engine.dispose();
  }, 600_000);

  it('--model FILE.onnx prunes an ONNX model: its unpruned accuracy is the checkpoint\'s, and it writes pruned .onnx files', async () => {
    const source = join(out, 'a', 'pruned_models', 'vgg11_bn_unpruned.onnx');
    expect(await runMain([...common, '--model', source, '--out', join(out, 'b')])).toBe(0);
    await gpu();
    const [fromOnnx] = results(join(out, 'b'));
    const [fromCheckpoint] = results(join(out, 'a'));
    expect(fromOnnx.model_name).toBe('vgg11_bn_unpruned');
    expect(fromOnnx.original_model.accuracy).toBe(fromCheckpoint.original_model.accuracy);
    // BN folded into the convs on export: the ONNX model has no BN parameters (2 x 2752 fewer).
    expect(fromOnnx.original_model.parameters).toBe(9_231_114 - 2 * 2752);
    expect(fromOnnx.intra_fusion.parameters).toBeLessThan(fromOnnx.original_model.parameters);
    const pruned = importOnnx(readFileSync(fromOnnx.intra_fusion.onnx!), 'pruned.onnx');
    await expectSameOutputs(pruned, readFileSync(fromOnnx.intra_fusion.onnx!), cifarImages(20), 'pruned ONNX model re-imported');
    pruned.dispose();
    await expect(runMain(['--model', join(out, 'missing.onnx'), '--data-dir', join(sharedDir(), 'data/cifar10'), '--out', join(out, 'c')])).rejects.toThrow(/ONNX model not found: .*missing\.onnx/);
    await gpu();
  }, 600_000);
});

describe('ONNX export beyond CIFAR shapes: ImageNet-stem ResNet18 and a depthwise CNN on 64x64', () => {
  /** The engine's and onnxruntime's outputs on the same random [n, 3, 64, 64] images. */
  async function bothAt64(model: Module, onnx: Uint8Array, n: number, seed: number): Promise<number> {
    const r = seededRandom(seed);
    const images = new Float32Array(n * 3 * 64 * 64).map(() => 2 * r() - 1);
    model.eval();
    const engine = await noGrad(() => tidy(() => model.call(fromArray(images, [n, 3, 64, 64])))).dataAndDispose();
    return relativeError(engine, await ortOutputs(onnx, images, [3, 64, 64]));
  }

  it('ResNet18 (7x7/2 stem, padded max pool, global average pool) whole-network Intra-Fusion at 0.5: pruned and re-imported equal onnxruntime', async () => {
    setInitSeed(31);
    const model = createModel('resnet18', { stem: 'imagenet', numClasses: 10 });
    randomizeBatchNorms(model, 32);
    const before = model.parameterCount();
    await prune(model, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 64, 64], optimalTransport: new OptimalTransport() });
    expect(model.parameterCount()).toBeLessThan(before / 2);
    const onnx = await exportOnnx(model, { inputShape: [3, 64, 64] });
    const ops = new Set(decodeModel(onnx).graph!.node!.map((n) => n.op_type));
    expect([...ops].sort()).toEqual(['Add', 'Conv', 'Flatten', 'Gemm', 'GlobalAveragePool', 'MaxPool', 'Relu']);
    expect(await bothAt64(model, onnx, 2, 33)).toBeLessThan(1e-4);
    const back = importOnnx(onnx, 'resnet18-imagenet.onnx');
    expect(await bothAt64(back, onnx, 2, 34)).toBeLessThan(1e-4);
    back.dispose();
    model.dispose();
  }, 300_000);

  it('a depthwise-separable CNN, default-pruned through its depthwise group, equals onnxruntime', async () => {
    setInitSeed(35);
    const model = new Sequential(
      new Conv2d(3, 16, 3, 2, 1, false), new BatchNorm2d(16), new ReLU(),
      new Conv2d(16, 16, 3, 1, 1, false, 16), new BatchNorm2d(16), new ReLU(), // depthwise
      new Conv2d(16, 24, 1, 1, 0, false), new BatchNorm2d(24), new ReLU(), new MaxPool2d(3, 2, 1),
      new AdaptiveAvgPool2d(1), new Flatten(), new Linear(24, 10),
    );
    randomizeBatchNorms(model, 36);
    await prune(model, { importanceCriteria: 'l1', sparsity: 0.5, exampleInput: [3, 64, 64] });
    const dw = model.at(3) as Conv2d;
    expect([dw.inChannels, dw.outChannels, dw.groups]).toEqual([8, 8, 8]);
    const onnx = await exportOnnx(model, { inputShape: [3, 64, 64] });
    const conv = decodeModel(onnx).graph!.node!.filter((n) => n.op_type === 'Conv')[1];
    expect(conv.attribute!.find((a) => a.name === 'group')?.i).toEqual(8);
    expect(await bothAt64(model, onnx, 2, 37)).toBeLessThan(1e-4);
    model.dispose();
  }, 120_000);
});
