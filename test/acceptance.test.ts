/**
 * Acceptance on models made by PyTorch's own exporter (issue 15 item 4): small-width copies of eleven
 * torchvision families in test/models/, written by scripts/models/generate.py (random seeded weights and
 * batch-norm statistics, eval mode, torch 1.13's default opset 14, input 2x3x64x64, 10 classes), with
 * PyTorch's output on a reference input and Torch-Pruning v1.6.0's dependency groups
 * (scripts/models/torch_pruning_groups.py). For each family:
 *   - it imports, and the engine equals PyTorch's output and onnxruntime-node on the original file;
 *   - its dependency groups equal Torch-Pruning's (layers by state_dict name, channel counts, and where a
 *     layer reads the group's channels inside a concatenation);
 *   - whole-network default pruning, Intra-Fusion and model folding at 0.5 each export a file that
 *     onnxruntime runs and that equals the engine.
 * "Relative error" is max|a - b| / max|b|. ACCEPTANCE_REPORT=1 prints the figures (the README's table).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../src/nn/init.js';
import { Conv2d } from '../src/nn/layers.js';
import type { Module } from '../src/nn/module.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx, scopePath, type OnnxModel } from '../src/onnx/import.js';
import { decodeModel } from '../src/onnx/proto.js';
import { UnsupportedError } from '../src/errors.js';
import { dependencyGroups, OptimalTransport, prune, type Group } from '../src/prune/index.js';
import { noGrad } from '../src/tensor/autograd.js';
import { destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { gpu, relativeError } from './helpers.js';
import { evaluateOnnxFloat64 } from './onnx-reference.js';

beforeAll(gpu);
afterAll(destroyRuntime);

const modelsDir = join(dirname(fileURLToPath(import.meta.url)), 'models');

interface Reference {
  family: string;
  file: string;
  export: string;
  batch: 'static' | 'dynamic';
  input: { seed: number; shape: [number, number, number, number] };
  output: number[];
  output_shape: number[];
  parameters: number;
}
interface TorchPruningGroup {
  root: string;
  channels: number;
  out: string[];
  in: string[];
  bn: string[];
  at: Record<string, [number, number][]>;
}

export const FAMILIES = [
  'resnet18', 'resnet50', 'vgg16_bn', 'mobilenet_v2', 'mobilenet_v3_small', 'efficientnet_b0',
  'densenet121', 'squeezenet1_1', 'googlenet', 'resnext50_32x4d', 'regnet_y_400mf',
] as const;

type Family = (typeof FAMILIES)[number];
type Check = 'import' | 'groups' | 'prune' | 'intra-fusion';

/**
 * What a family still waits for, per check (an entry goes when the capability lands on main). A pending
 * check is skipped and its name says why; a pending import also skips the later checks.
 */
const PENDING: Partial<Record<Family, Partial<Record<Check, string>>>> = {};

/**
 * Pruned models whose function is too ill-conditioned for two float32 implementations to agree within 1e-4.
 * mobilenet_v2 after whole-network Intra-Fusion: fused rows and columns are weighted sums (row sums n/k = 2,
 * as the reference's), so every fused conv's pre-activations double on each fused side while ReLU6 stays
 * capped at 6; the bounded output then has a derivative ~(n/k)^2 larger per layer, and a 1e-7 relative
 * nudge of the input moves onnxruntime's own output by ~3e-3. There the check is that the engine computes
 * the exported file's function as well as onnxruntime does: both against a float64 evaluation of the file.
 */
const ILL_CONDITIONED: Partial<Record<Family, 'intra-fusion'>> = { mobilenet_v2: 'intra-fusion' };
const pending = (family: Family, check: Check) => PENDING[family]?.[check] ?? PENDING[family]?.import;
const named = (name: string, reason: string | undefined) => (reason ? `${name} (pending: ${reason})` : name);

const reference = (family: string): Reference => JSON.parse(readFileSync(join(modelsDir, `${family}.json`), 'utf8'));
const onnxFile = (family: string) => new Uint8Array(readFileSync(join(modelsDir, `${family}.onnx`)));
const torchPruningGroups = (family: string): TorchPruningGroup[] => JSON.parse(readFileSync(join(modelsDir, `${family}.groups.json`), 'utf8')).groups;

/** The reference input: 2 * seededRandom(seed)() - 1 in order, as scripts/models/families.py makes it. */
function referenceInput(ref: Reference): Float32Array {
  const r = seededRandom(ref.input.seed);
  return new Float32Array(ref.input.shape.reduce((a, b) => a * b, 1)).map(() => 2 * r() - 1);
}

async function engineOutput(model: Module, x: Float32Array, shape: number[]): Promise<Float32Array> {
  model.eval();
  return noGrad(() => tidy(() => model.call(fromArray(x, shape)))).dataAndDispose();
}

async function ortOutput(onnx: Uint8Array, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnx);
  try {
    const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, shape) });
    return result[session.outputNames[0]].data as Float32Array;
  } finally {
    await session.release();
  }
}

const report = (line: string) => {
  if (process.env.ACCEPTANCE_REPORT) console.log(`[acceptance] ${line}`);
};

/**
 * A group as sorted name lists, comparable to Torch-Pruning's record, with `at`: the channel indices a layer
 * sees the group at when they are not 0..channels-1 (a concatenation's offset; a Linear after a flatten
 * reads H*W columns per channel), as [start, length] runs.
 */
function describeGroup(g: Group, bnPresent: Set<string>) {
  type Slot = { layer: { path: string }; offset?: number; factor?: number };
  const slotted = g as Group & { outSlots?: Slot[]; normSlots?: Slot[] };
  // A depthwise conv's in-channels are its out-channels: Torch-Pruning lists it once, as out-pruned.
  const depthwise = new Set(g.producers.filter((p) => p instanceof Conv2d && p.groups > 1 && p.groups === p.inChannels && p.groups === p.outChannels).map((p) => p.path));
  const at: Record<string, [number, number][]> = {};
  const slots: Slot[] = [...(slotted.outSlots ?? []), ...(slotted.normSlots ?? []), ...(g.consumers as Slot[])];
  for (const { layer, offset = 0, factor = 1 } of slots) {
    if (offset !== 0 || factor !== 1) {
      (at[layer.path] ??= []).push([offset * factor, g.channels * factor]);
    }
  }
  return {
    channels: g.channels,
    out: g.producers.map((p) => p.path).sort(),
    in: g.consumers.map((c) => c.layer.path).filter((p) => !depthwise.has(p)).sort(),
    bn: g.batchNorms.map((b) => b.path).filter((p) => bnPresent.has(p)).sort(),
    at: Object.fromEntries(Object.entries(at).sort(([a], [b]) => a.localeCompare(b))),
  };
}

describe.each(FAMILIES)('%s exported by PyTorch', (family) => {
  const ref = reference(family);
  const x = referenceInput(ref);

  it.skipIf(!!pending(family, 'import'))(named('imports; the engine equals PyTorch and onnxruntime on the original file within 1e-4', pending(family, 'import')), async () => {
    const onnx = onnxFile(family);
    const model = importOnnx(onnx, `${family}.onnx`);
    try {
      expect(model.inputShape).toEqual(ref.input.shape.slice(1));
      const ours = await engineOutput(model, x, ref.input.shape);
      const vsTorch = relativeError(ours, ref.output);
      const vsOrt = relativeError(ours, await ortOutput(onnx, x, ref.input.shape));
      report(`${family} import: vs PyTorch ${vsTorch.toExponential(2)}, vs onnxruntime ${vsOrt.toExponential(2)}, ${model.parameterCount()} parameters`);
      expect(vsTorch).toBeLessThan(1e-4);
      expect(vsOrt).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  }, 120_000);

  it.skipIf(!!pending(family, 'groups'))(named("dependency groups equal Torch-Pruning's DependencyGraph groups", pending(family, 'groups')), () => {
    const model = importOnnx(onnxFile(family), `${family}.onnx`);
    try {
      // BNs the exporter folded into their convs are not in the file; every other BN must be in its group.
      const bnPresent = new Set(model.namedModules().filter(([, m]) => m.constructor.name === 'BatchNorm2d').map(([n]) => n));
      const ours = dependencyGroups(model, { inputShape: model.inputShape }).map((g) => describeGroup(g, bnPresent));
      const theirs = torchPruningGroups(family).map((g) => ({
        channels: g.channels, out: g.out, in: g.in, bn: g.bn.filter((b) => bnPresent.has(b)),
        at: Object.fromEntries(Object.entries(g.at).filter(([name]) => !g.bn.includes(name) || bnPresent.has(name)).sort(([a], [b]) => a.localeCompare(b))),
      }));
      const key = (g: { out: string[] }) => g.out.join(',');
      const sort = <T extends { out: string[] }>(gs: T[]) => [...gs].sort((a, b) => key(a).localeCompare(key(b)));
      report(`${family} groups: ${ours.length} (Torch-Pruning ${theirs.length}), channels ${ours.reduce((s, g) => s + g.channels, 0)} (Torch-Pruning ${theirs.reduce((s, g) => s + g.channels, 0)})`);
      expect(sort(ours)).toEqual(sort(theirs));
    } finally {
      model.dispose();
    }
  }, 120_000);

  for (const method of ['default', 'intra-fusion', 'folding'] as const) {
    const reason = (method === 'intra-fusion' ? PENDING[family]?.['intra-fusion'] : undefined) ?? pending(family, 'prune');
    const agreement = ILL_CONDITIONED[family] === method
      ? 'ill-conditioned (a 1e-7 input nudge moves it by over 1e-4), and the engine is as close to its float64 function as onnxruntime'
      : 'equal to the engine within 1e-4';
    it.skipIf(!!reason)(named(`whole-network ${method} at 0.5 exports a file onnxruntime runs, ${agreement}`, reason), async () => {
      const model: OnnxModel = importOnnx(onnxFile(family), `${family}.onnx`);
      try {
        const before = model.parameterCount();
        await prune(model, {
          importanceCriteria: 'l1', sparsity: 0.5, inputShape: model.inputShape,
          ...(method === 'intra-fusion' ? { optimalTransport: new OptimalTransport() } : method === 'folding' ? { fusion: 'folding' as const } : {}),
        });
        const after = model.parameterCount();
        expect(after).toBeLessThan(before);
        const onnx = await exportOnnx(model, { inputShape: model.inputShape });
        const [ours, theirs] = [await engineOutput(model, x, ref.input.shape), await ortOutput(onnx, x, ref.input.shape)];
        const rel = relativeError(ours, theirs);
        report(`${family} ${method}: ${before} -> ${after} parameters, engine vs onnxruntime ${rel.toExponential(2)}`);
        if (ILL_CONDITIONED[family] !== method) {
          expect(rel).toBeLessThan(1e-4);
          return;
        }
        // Ill-conditioned: onnxruntime's output moves by more than the tolerance when the input moves by 1e-7...
        const nudge = seededRandom(7);
        const sensitivity = relativeError(await ortOutput(onnx, x.map((v) => v * (1 + 1e-7 * (2 * nudge() - 1))), ref.input.shape), theirs);
        // ...and the engine is as close to the file's exact (float64) function as onnxruntime is.
        const exact = evaluateOnnxFloat64(onnx, x, ref.input.shape);
        const [engineError, ortError] = [relativeError(ours, exact), relativeError(theirs, exact)];
        report(`${family} ${method}: a 1e-7 input nudge moves onnxruntime by ${sensitivity.toExponential(2)}; vs float64: engine ${engineError.toExponential(2)}, onnxruntime ${ortError.toExponential(2)}`);
        expect(sensitivity).toBeGreaterThan(1e-4);
        expect(engineError).toBeLessThan(2 * ortError);
      } finally {
        model.dispose();
      }
    }, 300_000);
  }
});

describe('import edge cases from PyTorch (test/models/edge, tiny models at 8x8)', () => {
  const edge = (name: string) => ({
    onnx: new Uint8Array(readFileSync(join(modelsDir, 'edge', `${name}.onnx`))),
    ref: JSON.parse(readFileSync(join(modelsDir, 'edge', `${name}.json`), 'utf8')) as Reference,
  });
  const ops = (onnx: Uint8Array) => decodeModel(onnx).graph!.node!.map((n) => n.op_type);
  /** Each group, with the cuts (ChannelSlices) that index its channels at their offsets. */
  const groupsWithCuts = (model: OnnxModel) =>
    dependencyGroups(model, { inputShape: model.inputShape }).map((g) => `${g.describe()}; cut ${g.viewSlots.map((v) => `${v.slice.path}@${v.offset}`).join(' ')}`);
  /**
   * Prunes every group of the file's model at 0.5, shrinking and dimensionality-preserving; each pruned
   * model's export must run in onnxruntime as on the engine. Returns the two models' outputs on x.
   */
  async function shrunkAndPreserved(name: string, onnx: Uint8Array, x: Float32Array, ref: Reference, o: { optimalTransport?: OptimalTransport; batchGroups?: boolean }): Promise<Float32Array[]> {
    const outputs: Float32Array[] = [];
    for (const dimensionalityPreserving of [false, true]) {
      const pruned = importOnnx(onnx, `${name}.onnx`);
      try {
        await prune(pruned, { importanceCriteria: 'l1', sparsity: 0.5, inputShape: pruned.inputShape, ...o, dimensionalityPreserving });
        const ours = await engineOutput(pruned, x, ref.input.shape);
        const exported = await exportOnnx(pruned, { inputShape: pruned.inputShape });
        expect(relativeError(ours, await ortOutput(exported, x, ref.input.shape))).toBeLessThan(1e-4);
        outputs.push(ours);
      } finally {
        pruned.dispose();
      }
    }
    return outputs;
  }

  it.each([
    ['opset9', 'Clip with min/max attributes, Pad with attributes, Hardswish written as x * HardSigmoid(x)', ['Clip', 'Pad', 'HardSigmoid', 'Mul']],
    ['view_static', 'x.view(x.size(0), -1) at a static batch with constant folding off (Unsqueeze/Concat of the batch)', ['Unsqueeze', 'Concat', 'Reshape']],
    ['conv_geometry', '1x7 / 7x1 kernels, dilation 2, stride (2, 1), groups 2, pools with ceil_mode and count_include_pad=0', ['Conv', 'MaxPool', 'AveragePool']],
  ])('%s: %s equals PyTorch and onnxruntime', async (name, _what, expectedOps) => {
    const { onnx, ref } = edge(name);
    expect(ops(onnx)).toEqual(expect.arrayContaining(expectedOps));
    const x = referenceInput(ref);
    const model = importOnnx(onnx, `${name}.onnx`);
    try {
      const ours = await engineOutput(model, x, ref.input.shape);
      expect(relativeError(ours, ref.output)).toBeLessThan(1e-4);
      expect(relativeError(ours, await ortOutput(onnx, x, ref.input.shape))).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });


  it('channel_views: Split (torch.split, equal and uneven) and Slice (x[:, :10] after a GhostNet concat) import; pruning moves the cuts with the channels', async () => {
    const { onnx, ref } = edge('channel_views');
    expect(ops(onnx)).toEqual(expect.arrayContaining(['Split', 'Slice', 'Concat']));
    const x = referenceInput(ref);
    const model = importOnnx(onnx, 'channel_views.onnx');
    try {
      const ours = await engineOutput(model, x, ref.input.shape);
      expect(relativeError(ours, ref.output)).toBeLessThan(1e-4);
      expect(relativeError(ours, await ortOutput(onnx, x, ref.input.shape))).toBeLessThan(1e-4);
      // The GhostNet concat [p, cheap(p)] holds each primary channel twice (cheap is depthwise); the slice
      // and the split cut it where the readers differ: p0..p3 reach left and right[2:6], p4, p5 right[0:2].
      expect(groupsWithCuts(model)).toEqual([
        'group 0 (6 channels): out right, left; in fc; cut ',
        'group 1 (4 channels): out cheap.0[0:4], primary.0[0:4]; in right[2:6], left; cut Slice@0 Slice@6 Split_1_1@0 Split_1_1@6 Split_1_2@0 Split_1_2@6',
        'group 2 (2 channels): out cheap.0[4:6], primary.0[4:6]; in right[0:2]; cut Slice@4 Slice@10 Split_1_1@4 Split_1_2@4',
        'group 3 (4 channels): out branch.0; in primary.0[4:8]; cut ',
        'group 4 (4 channels): out stem.0[0:4]; in primary.0[0:4]; cut Split@0 Split_1@0',
        'group 5 (4 channels): out stem.0[4:8]; in branch.0; cut Split@4 Split_1@4',
      ]);
    } finally {
      model.dispose();
    }
    // Sequential (groups re-traced one by one) and batched (all traced once: a pruned group moves the
    // offsets of the groups after it in the stem, the GhostNet concat and the cuts).
    for (const [optimalTransport, batchGroups] of [[undefined, false], [new OptimalTransport(), false], [undefined, true], [new OptimalTransport(), true]] as const) {
      const outputs = await shrunkAndPreserved('channel_views', onnx, x, ref, { optimalTransport, batchGroups });
      // Dimensionality-preserving pruning keeps every cut where it was (zeroed channels in place): the
      // shrunk model computes the same only if its cuts moved with the channels.
      expect(relativeError(outputs[0], outputs[1]), `${optimalTransport ? 'Intra-Fusion' : 'default'}${batchGroups ? ', batched' : ''}`).toBeLessThan(1e-5);
    }
  });

  it('chunk: x.chunk(2, 1) of 7 channels (Slices bounded by shape arithmetic on the channel count) imports, groups at the cut, prunes and exports', async () => {
    const { onnx, ref } = edge('chunk');
    expect(ops(onnx)).toEqual(expect.arrayContaining(['Shape', 'Gather', 'Div', 'Mul', 'Slice']));
    expect(ops(onnx)).not.toContain('Split');
    const x = referenceInput(ref);
    const model = importOnnx(onnx, 'chunk.onnx');
    try {
      const ours = await engineOutput(model, x, ref.input.shape);
      expect(relativeError(ours, ref.output)).toBeLessThan(1e-4);
      expect(relativeError(ours, await ortOutput(onnx, x, ref.input.shape))).toBeLessThan(1e-4);
      // (7 + 1) / 2 = 4: the first chunk feeds the branch, the second is added to its output.
      expect(groupsWithCuts(model)).toEqual([
        'group 0 (3 channels): out branch, stem.0[4:7]; in fc; cut Slice@4 Slice_1@4',
        'group 1 (4 channels): out stem.0[0:4]; in branch; cut Slice@0 Slice_1@0',
      ]);
    } finally {
      model.dispose();
    }
    for (const optimalTransport of [undefined, new OptimalTransport()]) {
      const outputs = await shrunkAndPreserved('chunk', onnx, x, ref, { optimalTransport });
      expect(relativeError(outputs[0], outputs[1]), optimalTransport ? 'Intra-Fusion' : 'default').toBeLessThan(1e-5);
    }
  });

  it('a model exported in training mode is refused at opset 12 (statistics outputs) and 14 (training_mode=1)', () => {
    expect(() => importOnnx(edge('bn_training_opset12').onnx, 'train12.onnx')).toThrow(
      /^train12\.onnx: node "\/bn\/BatchNormalization" \(BatchNormalization\): a training-mode batch norm \(statistics outputs "[^"]+", "[^"]+", "[^"]+", "[^"]+"\) is not supported; export the model in eval mode/);
    expect(() => importOnnx(edge('bn_training_opset14').onnx, 'train14.onnx')).toThrow(
      new UnsupportedError('train14.onnx: node "/bn/BatchNormalization" (BatchNormalization): a training-mode batch norm (training_mode=1) is not supported; export the model in eval mode (model.eval(), training=TrainingMode.EVAL).'));
  });

  it('an op outside the supported set: one error naming the node and the op', () => {
    expect(() => importOnnx(edge('leaky_relu').onnx, 'leaky.onnx')).toThrow(new UnsupportedError('leaky.onnx: node "/act/LeakyRelu" (LeakyRelu): the operator LeakyRelu is not supported.'));
  });

  it('VGG16-BN with BN kept: the initializers PyTorch wrote once and copied as Identity nodes resolve', () => {
    const graph = decodeModel(onnxFile('vgg16_bn')).graph!;
    const initializers = new Set(graph.initializer!.map((t) => t.name));
    const copies = graph.node!.filter((n) => n.op_type === 'Identity' && initializers.has(n.input![0]));
    expect(copies.length).toBeGreaterThan(0);
    const model = importOnnx(onnxFile('vgg16_bn'), 'vgg16_bn.onnx');
    try {
      const state = new Map(model.stateTensors());
      for (const copy of copies) expect(state.has(copy.output![0]), copy.output![0]).toBe(true); // e.g. features.10.bias
    } finally {
      model.dispose();
    }
  });

  it('layer names: a conv whose BN the exporter folded in is named from its node scope, as in the state_dict', () => {
    expect(scopePath('/features/features.1/conv/conv.0/conv.0.0/Conv')).toBe('features.1.conv.0.0');
    expect(scopePath('/layer1/layer1.0/downsample/downsample.0/Conv')).toBe('layer1.0.downsample.0');
    expect(scopePath('/trunk_output/trunk_output.block1/trunk_output.block1.block1-0/f/f.b/f.b.0/Conv')).toBe('trunk_output.block1.block1-0.f.b.0');
    expect(scopePath('Conv_0')).toBeUndefined();
    const model = importOnnx(onnxFile('resnet18'), 'resnet18.onnx');
    try {
      expect(model.children().map(([n]) => n)).toEqual(expect.arrayContaining(['conv1', 'layer1.0.conv1', 'layer4.0.downsample.0', 'fc']));
    } finally {
      model.dispose();
    }
  });
});
