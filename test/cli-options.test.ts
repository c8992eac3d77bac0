/**
 * The CLI as a user meets it: every known error is one line on stderr with exit code 2; the shipped
 * default checkpoint is used when no --checkpoint is given; offline without CIFAR-10, the error names
 * the flag to pass; --seed makes data-dependent criteria reproducible.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main as runMain, type RunResult } from '../src/run.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { sharedDir } from './helpers.js';

const dataDir = () => join(sharedDir(), 'data/cifar10');
const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
// In dist/, one level below the repository root like the built dist/run.js, so models/ resolves the same way.
const bundle = resolve('dist/cli-options-run.mjs');

beforeAll(async () => {
  await build({ entryPoints: ['src/run.ts'], outfile: bundle, bundle: true, platform: 'node', format: 'esm', loader: { '.wgsl': 'text' }, external: ['webgpu'], logLevel: 'silent' });
});
afterAll(() => {
  destroyRuntime();
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  rmSync(bundle, { force: true });
});

function runCli(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bundle, ...args], { cwd: o.cwd ?? process.cwd(), env: { ...process.env, ...o.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((done) => child.on('exit', (code) => done({ code, stdout, stderr })));
}

/** stderr without the Dawn/Vulkan driver's own warnings. */
const ourLines = (stderr: string) => stderr.split('\n').filter((l) => l.length && !/^Warning: |^MESA|^WARNING/.test(l));

describe('errors on the command line', () => {
  it('an unknown criterion: one line, exit 2', async () => {
    const r = await runCli(['--importance_criteria', 'l7']);
    expect(r.code).toBe(2);
    expect(ourLines(r.stderr)).toEqual(['error: --importance_criteria must be one of l1, l2, taylor, lamp, chip, random; got "l7".']);
  });

  it('a missing checkpoint: one line, exit 2', async () => {
    const missing = join(tempDir('if-ckpt-'), 'none.safetensors');
    const r = await runCli(['--checkpoint', missing, '--data-dir', dataDir(), '--out', tempDir('if-out-')]);
    expect(r.code).toBe(2);
    expect(ourLines(r.stderr)).toEqual([`error: Checkpoint ${missing} does not exist: pass --checkpoint FILE, or --epochs N to train one first.`]);
  }, 120_000);

  it('CIFAR-10 missing and no download possible: one line that names --data-dir DIR, exit 2', async () => {
    const empty = tempDir('if-nodata-');
    const r = await runCli(['--data-dir', empty, '--out', empty], { env: { INTRA_FUSION_CIFAR10_URL: 'http://127.0.0.1:9/cifar-10-binary.tar.gz' } });
    expect(r.code).toBe(2);
    const lines = ourLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^error: CIFAR-10 is not in ${empty} and downloading it failed: .* pass --data-dir DIR \\(the folder with data_batch_1.bin`));
  }, 120_000);
});

describe('the first run', () => {
  it('`--sparsities 0.5` with no --checkpoint uses the shipped float16 VGG11-BN', async () => {
    const cwd = tempDir('if-fresh-'); // no ./models here
    const r = await runCli(['--sparsities', '0.5', '--group_idxs', '1', '--data-dir', dataDir(), '--eval-samples', '200', '--save-models=false', '--out', cwd], { cwd });
    expect(r.stderr.split('\n').filter((l) => l.startsWith('error'))).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`checkpoint: ${resolve('models/vgg11_bn_cifar10.fp16.safetensors')}`);
    const [result] = JSON.parse(readFileSync(join(cwd, 'logs', readdirSync(join(cwd, 'logs'))[0]), 'utf8')) as RunResult[];
    expect(result.original_model.parameters).toBe(9_231_114);
    expect(result.original_model.accuracy).toBeGreaterThan(82); // 88.5 on these 200 images in float32
    expect(result.intra_fusion.accuracy).toBeGreaterThan(result.default_pruning.accuracy!);
  }, 600_000);
});

describe('--seed', () => {
  /** Runs random-importance pruning of group 1 and returns the pruned weights of both methods. */
  async function prunedWeights(seed: number): Promise<Map<string, Float32Array>> {
    const out = tempDir('if-seed-');
    expect(await runMain([
      '--checkpoint', join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors'), '--data-dir', dataDir(), '--group_idxs', '1', '--sparsities', '0.5',
      '--importance_criteria', 'random', '--eval-samples', '8', '--batch-size', '8', '--seed', String(seed), '--out', out,
    ])).toBe(0);
    const weights = new Map<string, Float32Array>();
    for (const f of readdirSync(join(out, 'pruned_models'))) {
      for (const [name, t] of parseSafetensors(readFileSync(join(out, 'pruned_models', f))).tensors) weights.set(`${f}:${name}`, t.values);
    }
    return weights;
  }
  const same = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => a.size === b.size && [...a].every(([k, v]) => b.has(k) && v.every((x, i) => x === b.get(k)![i]));

  it('gives identical pruned weights for the same seed and different ones for another seed', async () => {
    const a = await prunedWeights(1);
    const b = await prunedWeights(1);
    const c = await prunedWeights(2);
    expect(a.size).toBeGreaterThan(0);
    expect(same(a, b)).toBe(true);
    expect(same(a, c)).toBe(false);
  }, 600_000);
});
