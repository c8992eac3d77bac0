/**
 * run.js on the user's own model and data: an ONNX model at 96x96 with 5 classes, evaluated on an image folder
 * made here and pruned with taylor calibrated on it; a data-free run; and one clear error per kind of bad input.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { accuracyPlot } from '../src/cli/plot.js';
import { compare, main as compareMain } from '../src/compare.js';
import { openDataset } from '../src/data/node.js';
import { defaultResize } from '../src/data/transforms.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { evaluate } from '../src/nn/metrics.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { main as runMainOf, type RunResult } from '../src/run.js';
import { serializeSafetensors } from '../src/tensor/safetensors.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'if-cli-data-'));
const model = join(root, 'tiny96.onnx');
const folder = join(root, 'images');
const NORM = { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] };

async function writeImage(path: string, w: number, h: number, channels: 1 | 3 | 4, seed: number) {
  const px = Buffer.from(Array.from({ length: w * h * channels }, (_, i) => (Math.sin(i * 0.05 * (seed + 1)) * 100 + 128 + ((i * 131 + seed * 17) % 23)) & 255));
  const img = sharp(px, { raw: { width: w, height: h, channels } });
  writeFileSync(path, await (path.endsWith('.png') ? img.png() : img.jpeg({ quality: 90 })).toBuffer());
}

beforeAll(async () => {
  await gpu();
  const net = new Sequential(
    new Conv2d(3, 8, 3, 2, 1), new BatchNorm2d(8), new ReLU(), new Conv2d(8, 16, 3, 2, 1), new BatchNorm2d(16), new ReLU(),
    new AdaptiveAvgPool2d(1), new Flatten(), new Linear(16, 5),
  );
  writeFileSync(model, await exportOnnx(net, { inputShape: [3, 96, 96], graphName: 'tiny96', metadata: { normalize_mean: NORM.mean.join(','), normalize_std: NORM.std.join(',') } }));
  net.dispose();
  const sizes: [number, number, 1 | 3 | 4][] = [[131, 101, 3], [97, 140, 3], [120, 90, 1], [150, 113, 4], [101, 99, 3], [200, 123, 3], [96, 96, 3], [111, 130, 3], [140, 100, 3], [99, 157, 3]];
  for (const [i, [w, h, c]] of sizes.entries()) {
    const dir = join(folder, `class_${Math.floor(i / 2)}`);
    mkdirSync(dir, { recursive: true });
    await writeImage(join(dir, `img${i}.${i % 2 ? 'jpg' : 'png'}`), w, h, c, i);
  }
  writeFileSync(join(folder, 'class_0', 'Thumbs.db'), 'not an image');
});

afterAll(() => {
  destroyRuntime();
  rmSync(root, { recursive: true, force: true });
});

const results = (dir: string) => JSON.parse(readFileSync(join(dir, 'logs', readdirSync(join(dir, 'logs'))[0]), 'utf8')) as RunResult[];

/** Runs main() and returns its stdout lines. */
async function run(argv: string[]): Promise<string[]> {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(...String(chunk).split('\n').filter((l) => l.length));
    return true;
  });
  try {
    expect(await runMainOf(argv)).toBe(0);
  } finally {
    spy.mockRestore();
  }
  return lines;
}

describe('run.js on an ONNX model at 96x96 with an image folder', () => {
  it('evaluates on the folder (the model\'s own normalisation), prunes with taylor calibrated on it, and writes pruned ONNX at 96x96', async () => {
    const out = join(root, 'taylor');
    const lines = await run(['--model', model, '--data', folder, '--importance_criteria', 'taylor', '--calibration-samples', '6', '--batch-size', '4',
      '--whole-network', '--sparsities', '0.5', '--fusion', 'all', '--out', out]);
    expect(lines).toContain(`normalisation: mean ${NORM.mean.join(',')} std ${NORM.std.join(',')} (the model's metadata)`);
    expect(lines.some((l) => l.startsWith('data: skipped 1 file that are not images'))).toBe(true);
    const [r] = results(out);
    expect(r).toMatchObject({ evaluated: true, data_format: 'imagefolder', input_shape: [3, 96, 96], eval_samples: 10, model_file: model });
    // The original accuracy is what evaluate() gives on the same folder with the same transform.
    await gpu();
    const { dataset } = await openDataset(folder, { transform: { resize: defaultResize([96, 96]), crop: [96, 96], channels: 3, normalization: NORM }, normalization: NORM });
    const original = importOnnx(readFileSync(model), 'tiny96.onnx');
    expect(r.original_model.accuracy).toBe(Number((await evaluate(original, dataset)).accuracy.toFixed(2)));
    original.dispose();
    for (const m of [r.default_pruning, r.intra_fusion, r.folding!]) {
      expect(m.accuracy).toBeGreaterThanOrEqual(0);
      expect(m.top5).toBeUndefined(); // 5 classes: top-5 says nothing
      expect(m.parameters).toBeLessThan(r.original_model.parameters);
      const pruned = importOnnx(readFileSync(m.onnx!), m.onnx!);
      expect(pruned.inputShape).toEqual([3, 96, 96]);
      expect(pruned.parameterCount()).toBe(m.parameters);
      pruned.dispose();
    }
  }, 300_000);

  it('compare.js rebuilds the pruned ONNX-born models from their checkpoints and plots every method (folding too)', async () => {
    const dir = join(root, 'taylor', 'pruned_models');
    const [r] = results(join(root, 'taylor'));
    const rows = await compare(dir, { latency: true, gpuId: 0 });
    expect(rows.map((x) => [x.method, x.group, x.sparsity, x.parameters, x.accuracy])).toEqual([
      ['default_pruning', -1, 0.5, r.default_pruning.parameters, r.default_pruning.accuracy],
      ['folding', -1, 0.5, r.folding!.parameters, r.folding!.accuracy],
      ['intra_fusion', -1, 0.5, r.intra_fusion.parameters, r.intra_fusion.accuracy],
    ]);
    expect(rows.every((x) => x.latencyMs! > 0 && x.flops > 0)).toBe(true);
    // The checkpoint alone (no .onnx beside it) rebuilds from the source ONNX named in its metadata.
    rmSync(r.intra_fusion.onnx!);
    const again = (await compare(dir, { latency: true, gpuId: 0 })).find((x) => x.method === 'intra_fusion')!;
    expect(again.latencyMs).toBeGreaterThan(0); // measured on the rebuilt model (null when nothing could rebuild it)
    expect(again.flops).toBe(rows.find((x) => x.method === 'intra_fusion')!.flops);
    expect(await compareMain(['--model_dir', dir, '--latency=false'])).toBe(0);
    const svg = readFileSync(join(dir, 'comparison.svg'), 'utf8');
    for (const label of ['tiny96 all default', 'tiny96 all Intra-Fusion', 'tiny96 all folding', 'tiny96 unpruned']) expect(svg).toContain(label);
    const top5 = accuracyPlot([{ file: '', model: 'm', method: 'folding', group: 1, sparsity: 0.5, parameters: 1, flops: 1, accuracy: 50, top5: 80, latencyMs: null }], { metric: 'top5' });
    expect(top5).toContain('Top-5 accuracy vs sparsity: folding');
    expect(top5).toContain('cy="');
  }, 300_000);

  it('a data-free run (l1, no --data) prunes and writes its ONNX, says so in one line, and records accuracy null', async () => {
    const out = join(root, 'free');
    const lines = await run(['--model', model, '--group_idxs', '1', '--sparsities', '0.5', '--out', out]);
    expect(lines.filter((l) => l.startsWith('data: none'))).toEqual(['data: none: pruning and exporting without evaluation (accuracy null in the results); pass --data DIR|FILE to evaluate']);
    const [r] = results(out);
    expect(r).toMatchObject({ evaluated: false, data: null, eval_samples: 0 });
    for (const m of [r.original_model, r.default_pruning, r.intra_fusion]) expect(m.accuracy).toBeNull();
    for (const m of [r.default_pruning, r.intra_fusion]) expect(readFileSync(m.onnx!).length).toBeGreaterThan(1000);
  }, 300_000);

  it('bad input: one clear error each', async () => {
    const out = join(root, 'bad');
    const runMain = (argv: string[]) => runMainOf([...argv, '--group_idxs', '1', '--sparsities', '0.5']);
    await expect(runMain(['--model', model, '--importance_criteria', 'taylor', '--out', out])).rejects.toThrow(/--importance_criteria taylor needs calibration data: pass --data DIR\|FILE/);
    await expect(runMain(['--model', model, '--input-shape', '3', '64', '64', '--out', out])).rejects.toThrow(/--input-shape 3 64 64 does not match .*tiny96\.onnx's static input 3x96x96/);
    const three = join(root, 'three');
    for (const c of ['a', 'b', 'c']) {
      mkdirSync(join(three, c), { recursive: true });
      await writeImage(join(three, c, 'x.png'), 100, 100, 3, 1);
    }
    await expect(runMain(['--model', model, '--data', three, '--out', out])).rejects.toThrow(/has 3 classes \(a, b, c\) but the model has 5 outputs/);
    mkdirSync(join(root, 'empty'));
    await expect(runMain(['--model', model, '--data', join(root, 'empty'), '--out', out])).rejects.toThrow(/is an empty folder/);
    await expect(runMain(['--model', model, '--data', folder, '--resize', 'none', '--out', out])).rejects.toThrow(/class_1\/img2.png is 120x90, smaller than the 96x96 crop/);
    const labels = join(root, 'labels.safetensors');
    writeFileSync(labels, serializeSafetensors(new Map([['x', { shape: [2, 3, 96, 96], values: new Float32Array(2 * 3 * 96 * 96) }], ['y', { shape: [2], values: BigInt64Array.from([1n, 7n]) }]])));
    await expect(runMain(['--model', model, '--data', labels, '--out', out])).rejects.toThrow(/sample 1 has label 7, outside the model's 5 classes/);
    // Flags that would be silently ignored: --resize on tensor data, --data-format without --data.
    await expect(runMain(['--model', model, '--data', labels, '--resize', '128', '--out', out])).rejects.toThrow(/--resize applies to image folders; tensors data is used at its own size/);
    await expect(runMain(['--model', model, '--data-format', 'imagefolder', '--out', out])).rejects.toThrow(/--data-format says what --data is: give --data DIR\|FILE too/);
    await expect(runMain(['--model', model, '--data', labels, '--input-shape', '3', '96', '96', '--data-format', 'imagefolder', '--out', out])).rejects.toThrow(/is not a folder/);
  }, 300_000);
});
