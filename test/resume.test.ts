/**
 * Evaluating only what changed: the original's activations kept at a pruned group's first layer while the
 * original is evaluated (run.js's measureOriginal; keepGroupInputs for a resumed run), then every pruned model
 * of that group evaluated from there, equal bit for bit to evaluating the whole pruned model (VGG11-BN with
 * trained-like BN statistics, default pruning and Intra-Fusion, two groups). That rests on prune() giving
 * the layers it did not reach their exact original values back. Where it would not be exact the model is
 * evaluated whole: layers before the cut that differ from the original's (the reference's fold without eps),
 * and a group whose first layer's input is no cut (a residual shortcut reads around it). Bad resumes are errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepGroupInputs, measureOriginal, resumePointFor, type RunContext } from '../src/cli/cell.js';
import type { Cell } from '../src/cli/cells.js';
import type { Dataset } from '../src/data/dataset.js';
import { BatchNorm2d, Conv2d, ReLU } from '../src/nn/layers.js';
import { seededRandom, setInitSeed } from '../src/nn/init.js';
import { evaluate, type EvalResult } from '../src/nn/metrics.js';
import { createModel } from '../src/nn/models.js';
import { Module } from '../src/nn/module.js';
import { resumableModules } from '../src/nn/resume.js';
import { OptimalTransport, prune, dependencyGroups } from '../src/prune/index.js';
import { assign, destroyRuntime, type Tensor } from '../src/tensor/tensor.js';
import { gpu, randArray } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

/** 70 random images (batches of 32: an uneven last batch). */
function randomData(): Dataset {
  const r = seededRandom(11);
  const x = randArray(r, 70 * 3072);
  const y = Float32Array.from({ length: 70 }, () => Math.floor(r() * 10));
  return {
    name: 'random', count: 70, shape: [3, 32, 32],
    batch: async (idx) => ({ x: Float32Array.from(Array.from(idx).flatMap((i) => Array.from(x.subarray(i * 3072, (i + 1) * 3072)))), y: Float32Array.from(Array.from(idx), (i) => y[i]) }),
  };
}

/** The same model every call, its batch-norms with non-trivial statistics (so folding changes the weights). */
function freshModel(name: 'vgg11_bn' | 'resnet18'): Module {
  setInitSeed(5);
  const model = createModel(name);
  const r = seededRandom(7);
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof BatchNorm2d)) continue;
    const C = m.numFeatures;
    assign(m.running_mean, Float32Array.from({ length: C }, () => r() - 0.5));
    assign(m.running_var, Float32Array.from({ length: C }, () => 0.2 + r()));
    assign(m.weight, Float32Array.from({ length: C }, () => 0.5 + r()));
    assign(m.bias, Float32Array.from({ length: C }, () => r() - 0.5));
  }
  return model;
}

const logs: string[] = [];
function context(name: 'vgg11_bn' | 'resnet18', test: Dataset, referenceQuirks = false): RunContext {
  return {
    o: { mode: 'group', fineTuneEpochs: 0, iterativeSteps: 1, evalBackend: 'webgpu', exampleInput: [3, 32, 32], batchSize: 32, referenceQuirks },
    source: { fresh: () => freshModel(name), normalization: { mean: [0, 0, 0], std: [1, 1, 1] }, file: name },
    train: null, test, ot: new OptimalTransport(), log: (l: string) => void logs.push(l),
  } as unknown as RunContext;
}

const cell = (g: number): Cell => ({ g, s: 0.5, sparsity: 0.5, name: `g${g}_s0.5`, where: `group ${g} sparsity 0.5` });
const figures = (r: EvalResult) => [r.accuracy, r.top5, r.meanBatchAccuracy, r.loss, r.count];

describe('evaluating only what changed', () => {
  it('VGG11-BN groups 1 and 3, default pruning and Intra-Fusion: evaluations from the kept activations equal whole ones bit for bit', async () => {
    const data = randomData();
    const ctx = context('vgg11_bn', data);
    // Kept while the original is evaluated (its figures those of a plain evaluation)...
    const original = await measureOriginal(ctx, [1, 3]);
    expect(original.accuracy).toBe(Number((await evaluate(freshModel('vgg11_bn'), data, { batchSize: 32 })).accuracy.toFixed(2)));
    expect([...ctx.kept!.keys()].sort()).toEqual([1, 3]);
    // ...or, for a resumed run, in a pass of their own: the same activations.
    const again = context('vgg11_bn', data);
    await keepGroupInputs(again, [1, 3]);
    for (const g of [1, 3]) expect(again.kept!.get(g)!.inputs.chunks).toEqual(ctx.kept!.get(g)!.inputs.chunks);
    for (const g of [1, 3]) {
      const kept = ctx.kept!.get(g)!;
      expect(kept.inputs.chunks.length).toBe(3);
      expect(kept.path).toBe(dependencyGroups(freshModel('vgg11_bn'))[g].producers[0].path);
      for (const fusion of ['none', 'ot'] as const) {
        const pruned = freshModel('vgg11_bn');
        await prune(pruned, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [g], fusion });
        const from = await resumePointFor(ctx, cell(g), pruned, 'test');
        expect(from, `group ${g} ${fusion}: resumes`).toBeDefined();
        const whole = await evaluate(pruned, data, { batchSize: 32 });
        const resumed = await evaluate(pruned, data, { batchSize: 32, resumeFrom: from });
        expect(figures(resumed), `group ${g} ${fusion}`).toEqual(figures(whole));
        pruned.dispose();
      }
    }
    // The reference's fold (no eps) leaves every layer before the group folded: evaluated whole.
    const quirky = freshModel('vgg11_bn');
    await prune(quirky, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], referenceQuirks: true });
    logs.length = 0;
    expect(await resumePointFor(ctx, cell(1), quirky, 'quirky')).toBeUndefined();
    expect(logs.join('\n')).toMatch(/differ from the original's; evaluated whole/);
    quirky.dispose();
    // A resume with other batches is refused.
    await expect(evaluate(freshModel('vgg11_bn'), data, { batchSize: 16, resumeFrom: ctx.kept!.get(1)!.inputs })).rejects.toThrow(/batches of 32 cannot resume/);
  }, 300_000);

  it('a group whose first layer is inside a residual block (the shortcut reads around it) is evaluated whole', async () => {
    const model = freshModel('resnet18');
    const named = new Map(model.namedModules());
    const inner = named.get('layer1.0.conv2')!;
    const blockStart = named.get('layer2.0.conv1')!;
    expect(resumableModules(model, [inner, blockStart], [3, 32, 32])).toEqual([blockStart]);
    // The group layer1.0.conv2 feeds in is the residual stream's; the one layer1.0.conv1 produces starts a block.
    const groups = dependencyGroups(model);
    const inside = groups.findIndex((g) => g.producers[0] === named.get('layer1.0.conv1'));
    const ctx = context('resnet18', { ...randomData(), count: 8 } as Dataset);
    logs.length = 0;
    const residual = groups.findIndex((g) => g.producers.some((p) => p === named.get('layer2.0.conv2')));
    await keepGroupInputs(ctx, [inside, residual]);
    expect(logs.join('\n')).toMatch(new RegExp(`group ${residual}: its first layer's input is no cut`));
    expect([...ctx.kept!.keys()]).toEqual([inside]);
    model.dispose();
  }, 120_000);

  it('a group whose first layer reads the model input (VGG11-BN group 7, features.0) keeps nothing: resuming there would save nothing and hold the images', async () => {
    const ctx = context('vgg11_bn', { ...randomData(), count: 8 } as Dataset);
    await keepGroupInputs(ctx, [7, 1]);
    expect([...ctx.kept!.keys()]).toEqual([1]);
    const alone = context('vgg11_bn', { ...randomData(), count: 8 } as Dataset);
    await keepGroupInputs(alone, [7]);
    expect(alone.kept?.size ?? 0).toBe(0);
  }, 120_000);

  it('a layer the forward pass enters twice (a shared conv) is no resume point; the layer after it is', () => {
    class Shared extends Module {
      readonly a = this.addChild('a', new Conv2d(3, 3, 3, 1, 1, true));
      readonly act = this.addChild('act', new ReLU());
      readonly b = this.addChild('b', new Conv2d(3, 4, 3, 1, 1, true));
      forward(x: Tensor): Tensor {
        return this.b.call(this.act.call(this.a.call(this.a.call(x))));
      }
    }
    const model = new Shared();
    expect(resumableModules(model, [model.a, model.act, model.b], [3, 8, 8])).toEqual([model.act, model.b]);
    model.dispose();
  });
});
