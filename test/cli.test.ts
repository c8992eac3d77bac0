/** End to end: the experiment CLI and the comparison tool on the shared checkpoint and data (subsets). */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../src/cli/args.js';
import { main as compareMain, compare, measureOriginals, originalRows, readResults } from '../src/compare.js';
import { main as runMain, type RunResult } from '../src/run.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu, sharedDir } from './helpers.js';

const checkpoint = () => join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors');
const dataDir = () => join(sharedDir(), 'data/cifar10');
/** Temporary folders made here, removed after the file's tests. */
const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
const out = tempDir('if-cli-');

afterAll(() => {
  destroyRuntime();
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe('argument parsing', () => {
  const spec = { group_idxs: { kind: 'ints', help: '', default: [1] }, sparsities: { kind: 'numbers', help: '' }, 'model-name': { kind: 'string', help: '', choices: ['a', 'b'] }, flag: { kind: 'boolean', help: '' } } as const;
  it('accepts the seed\'s spellings and lists', () => {
    expect(parseArgs(['--group_idxs', '1', '2', '3', '--sparsities=0.3,0.5', '--model-name', 'b', '--flag'], spec)).toMatchObject({ group_idxs: [1, 2, 3], sparsities: [0.3, 0.5], 'model-name': 'b', flag: true });
    expect(parseArgs(['--group-idxs=4'], spec).group_idxs).toEqual([4]);
  });
  it('names the flag in every error', () => {
    expect(() => parseArgs(['--nope'], spec)).toThrow(/Unknown flag --nope/);
    expect(() => parseArgs(['--group_idxs', 'x'], spec)).toThrow(/--group_idxs: "x" is not an integer/);
    expect(() => parseArgs(['--model-name', 'c'], spec)).toThrow(/--model-name must be one of a, b; got "c"/);
    expect(() => parseArgs(['--sparsities'], spec)).toThrow(UsageError);
    expect(() => parseArgs(['--nope'], spec)).toThrow(UsageError);
    expect(() => parseArgs(['--model-name', 'c'], spec)).toThrow(UsageError);
  });
});

describe('run.js', () => {
  it('prunes with default and Intra-Fusion, writes the seed\'s JSON and the pruned checkpoints', async () => {
    const code = await runMain([
      '--model-name', 'vgg11_bn', '--checkpoint', checkpoint(), '--data-dir', dataDir(), '--group_idxs', '2',
      '--sparsities', '0.7', '--importance_criteria', 'l1', '--eval-samples', '200', '--out', out,
    ]);
    expect(code).toBe(0);
    const logs = readdirSync(join(out, 'logs'));
    expect(logs).toHaveLength(1);
    const results = JSON.parse(readFileSync(join(out, 'logs', logs[0]), 'utf8')) as RunResult[];
    expect(results).toHaveLength(1);
    const r = results[0];
    expect(Object.keys(r)).toEqual(expect.arrayContaining(['timestamp', 'group_idx', 'sparsity', 'original_model', 'default_pruning', 'intra_fusion']));
    for (const m of [r.original_model, r.default_pruning, r.intra_fusion]) {
      expect(Object.keys(m)).toEqual(expect.arrayContaining(['parameters', 'flops', 'accuracy', 'inference_time']));
      expect(m.inference_time).toBeGreaterThan(0);
    }
    expect(r.original_model.parameters).toBe(9_231_114);
    expect(r.original_model.checkpoint).toBe(checkpoint()); // compare.js measures the unpruned latency from it
    expect(r.default_pruning.parameters).toBe(5_921_493);
    expect(r.intra_fusion.parameters).toBe(5_921_493);
    expect(r.intra_fusion.accuracy).toBeGreaterThan(r.default_pruning.accuracy! + 5);
    expect(readdirSync(join(out, 'pruned_models')).sort()).toEqual([
      'vgg11_bn_l1_g2_s0.7_default.safetensors', 'vgg11_bn_l1_g2_s0.7_intra_fusion.safetensors',
    ]);
  }, 600_000);

  it('trains a checkpoint first when there is none (--epochs) and fine-tunes the pruned models (--fine-tune-epochs)', async () => {
    // A tiny data set in the official layout: 8 training images per batch file, 8 test images.
    const dir = tempDir('if-tiny-');
    const record = (label: number, seed: number) => Uint8Array.from({ length: 3073 }, (_, i) => (i === 0 ? label : (i * 13 + seed * 71) % 256));
    const batch = (offset: number) => Buffer.concat(Array.from({ length: 8 }, (_, r) => record((r + offset) % 10, r + offset * 8)));
    for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), batch(b));
    writeFileSync(join(dir, 'test_batch.bin'), batch(0));
    const runOut = tempDir('if-train-');
    const ckpt = join(runOut, 'models', 'vgg11_bn.safetensors');
    const code = await runMain([
      '--data-dir', dir, '--checkpoint', ckpt, '--epochs', '1', '--fine-tune-epochs', '1', '--batch-size', '16',
      '--group_idxs', '0', '--sparsities', '0.5', '--out', runOut, '--save-models=false',
    ]);
    expect(code).toBe(0);
    expect(existsSync(ckpt)).toBe(true);
    expect(readdirSync(join(runOut, 'training', 'vgg11_bn')).sort()).toEqual(['epoch-001.optim.safetensors', 'epoch-001.safetensors', 'state.json']);
    const [r] = JSON.parse(readFileSync(join(runOut, 'logs', readdirSync(join(runOut, 'logs'))[0]), 'utf8')) as RunResult[];
    expect(r.eval_samples).toBe(8);
    expect(r.default_pruning.accuracy_before_fine_tuning).toBeTypeOf('number');
    expect(r.intra_fusion.accuracy_before_fine_tuning).toBeTypeOf('number');
    expect(r.intra_fusion.parameters).toBeLessThan(r.original_model.parameters);
  }, 600_000);

  it('fails clearly on bad flags and missing files', async () => {
    await expect(runMain(['--model-name', 'alexnet'])).rejects.toThrow(/--model-name must be one of vgg11_bn, resnet18/);
    await expect(runMain(['--model-name', 'alexnet'])).rejects.toThrow(UsageError);
    await expect(runMain(['--data-dir', dataDir(), '--checkpoint', join(out, 'none.safetensors'), '--out', out])).rejects.toThrow(UsageError);
    await expect(runMain(['--sparsities', '1.5', '--data-dir', dataDir()])).rejects.toThrow(/--sparsities: 1.5 is not in \[0, 1\)/);
    await expect(runMain(['--data-dir', dataDir(), '--checkpoint', join(out, 'none.safetensors'), '--out', out])).rejects.toThrow(/does not exist: pass --checkpoint FILE, or --epochs N/);
    await expect(runMain(['--data-dir', dataDir(), '--checkpoint', checkpoint(), '--group_idxs', '9', '--out', out])).rejects.toThrow(/has groups 0..7, not 9/);
  }, 120_000);
});

describe('compare.js', () => {
  it('tabulates the pruned models and plots accuracy against sparsity', async () => {
    const rows = await compare(join(out, 'pruned_models'), { latency: true, gpuId: 0 });
    expect(rows.map((r) => [r.method, r.group, r.sparsity, r.parameters])).toEqual([
      ['default_pruning', 2, 0.7, 5_921_493], ['intra_fusion', 2, 0.7, 5_921_493],
    ]);
    expect(rows.every((r) => r.latencyMs! > 0 && r.flops > 0)).toBe(true);
    expect(await compareMain(['--model_dir', join(out, 'pruned_models'), '--latency=false'])).toBe(0);
    const svg = readFileSync(join(out, 'pruned_models', 'comparison.svg'), 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('vgg11_bn g2 Intra-Fusion');
    await expect(compare(join(out, 'absent'), { latency: false, gpuId: 0 })).rejects.toThrow(/does not exist/);
    // The unpruned row's latency: measured here from the run's checkpoint, like the pruned rows, not run.js's.
    const results = readResults(join(out, 'pruned_models'));
    await gpu(); // compare.js's main released the device
    const [original] = await measureOriginals(originalRows(results), results, 'webgpu');
    expect(original.latencyBy).toBeUndefined();
    expect(original.latencyMs).toBeGreaterThan(0);
  }, 300_000);
});

describe('an interrupted run', () => {
  let bundle = '';
  beforeAll(async () => {
    // Inside the repository, so the child resolves the `webgpu` package from node_modules.
    mkdirSync('test/artifacts', { recursive: true });
    bundle = join(process.cwd(), 'test/artifacts/run.mjs');
    await build({ entryPoints: ['src/run.ts'], outfile: bundle, bundle: true, platform: 'node', format: 'esm', loader: { '.wgsl': 'text' }, external: ['webgpu'], logLevel: 'silent' });
  });

  it('keeps every finished result when killed mid-way', async () => {
    const dir = tempDir('if-kill-');
    // INTRA_FUSION_CRASH_AT_CELL=2: the run SIGKILLs itself inside the second (group, sparsity), after its
    // default pruning, so the kill lands mid-cell every time, with no timing window.
    const child = spawn(process.execPath, [bundle, '--checkpoint', checkpoint(), '--data-dir', dataDir(), '--group_idxs', '1',
      '--sparsities', '0.5', '0.6', '0.7', '--eval-samples', '100', '--out', dir, '--save-models=false'], { cwd: process.cwd(), env: { ...process.env, INTRA_FUSION_CRASH_AT_CELL: '2' } });
    let stdout = '';
    const done = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    expect(await done).toBe('SIGKILL');
    expect(stdout).toMatch(/pruned group 1 \(512 channels\).*kept 204 of 512/s); // inside the second cell
    expect(stdout).toMatch(/Intra-Fusion group 1 sparsity 0.5: /);
    expect(stdout).not.toMatch(/results: /);
    const logs = readdirSync(join(dir, 'logs'));
    const results = JSON.parse(readFileSync(join(dir, 'logs', logs[0]), 'utf8')) as RunResult[];
    expect(results.map((r) => r.sparsity)).toEqual([0.5]);
    expect(existsSync(join(dir, 'pruned_models'))).toBe(false);
  }, 600_000);
});
