/**
 * Every run.js flag end to end on a tiny model: a 3-conv CNN (groups 0, 1, 2 = the outputs of convs "4",
 * "2", "0"; 16, 16 and 8 channels) given as an ONNX file, on a 16-image CIFAR-format data set. Each test
 * checks what its flag must change in the results JSON and in the pruned checkpoints, so a flag that is
 * parsed but not passed on (or a mode that does nothing) fails here. A run takes a few seconds.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadStateDict, modelToSafetensors } from '../src/nn/checkpoint.js';
import { setInitSeed } from '../src/nn/init.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { optimalTransportFor, pruneOptionsFor, type RunContext } from '../src/cli/cell.js';
import { planCells } from '../src/cli/cells.js';
import { checkRunArgs } from '../src/cli/run-flags.js';
import { main as runMain, type RunResult } from '../src/run.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu, tinyCnn, writeRandomCifar } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'if-flags-'));
const model = join(root, 'tiny.onnx');
const data = join(root, 'data');
afterAll(() => {
  destroyRuntime();
  rmSync(root, { recursive: true, force: true });
});

beforeAll(async () => {
  await gpu();
  setInitSeed(5);
  const net = tinyCnn();
  // Group 1 (conv "2"): 4 strong filters and 12 weak ones, so a global ranking takes most of its channels.
  const file = parseSafetensors(await modelToSafetensors(net, {}), 'tiny');
  const w = file.tensors.get('2.weight')!.values;
  const perFilter = w.length / 16;
  for (let i = 0; i < w.length; i++) w[i] *= Math.floor(i / perFilter) < 4 ? 10 : 0.1;
  loadStateDict(net, file, 'tiny');
  writeFileSync(model, await exportOnnx(net, { inputShape: [3, 32, 32] }));
  net.dispose();
  writeRandomCifar(data);
}, 120_000);

type Weights = Map<string, { shape: number[]; values: Float32Array }>;
interface Run { results: RunResult[]; files: string[]; onnxFiles: string[]; checkpoint: (method: 'default' | 'intra_fusion' | 'folding', cell?: number) => Weights; out: string; log: string }

let runs = 0;
/** Runs run.js on the tiny model; returns its results, its pruned files and their tensors. */
async function run(args: string[], o: { out?: string; model?: string } = {}): Promise<Run> {
  const out = o.out ?? join(root, `run-${++runs}`);
  const common = ['--model', o.model ?? model, '--data-dir', data, '--eval-samples', '16', '--batch-size', '16'];
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stdout.write;
  try {
    expect(await runMain([...common, '--out', out, ...args])).toBe(0);
  } finally {
    process.stdout.write = write;
  }
  await gpu(); // main() releases the device when it finishes
  const logs = readdirSync(join(out, 'logs')).filter((f) => f.endsWith('.json'));
  const results = JSON.parse(readFileSync(join(out, 'logs', logs[0]), 'utf8')) as RunResult[];
  const dir = join(out, 'pruned_models');
  // Runs on an ONNX model also write each pruned model as .onnx (so compare.js can read them): checkpoints here.
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort() : [];
  const onnxFiles = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort() : [];
  const checkpoint = (method: string, cell = 0) => {
    const key = method === 'default' ? 'default_pruning' : method;
    const path = (results[cell] as unknown as Record<string, { checkpoint: string }>)[key].checkpoint;
    return parseSafetensors(readFileSync(path), path).tensors as Weights;
  };
  return { results, files, onnxFiles, checkpoint, out, log: lines.join('') };
}

const shapes = (w: Weights) => Object.fromEntries([...w].filter(([k]) => k.endsWith('weight')).map(([k, t]) => [k, t.shape]));
const same = (a: Weights, b: Weights) => a.size === b.size && [...a].every(([k, t]) => b.get(k)?.values.length === t.values.length && t.values.every((v, i) => v === b.get(k)!.values[i]));
/** Output channels of convs "0", "2", "4" (groups 2, 1, 0). */
const widths = (w: Weights) => ['0', '2', '4'].map((l) => w.get(`${l}.weight`)!.shape[0]);

let base: Run;
beforeAll(async () => {
  base = await run(['--group_idxs', '0', '--sparsities', '0.5', '--fusion', 'all']);
}, 300_000);

describe('cells and methods', () => {
  it('--group_idxs/--sparsities/--fusion all: one cell, three methods, three checkpoints of the pruned width', () => {
    const [r] = base.results;
    expect([base.results.length, r.group_idx, r.sparsity, r.mode]).toEqual([1, 0, 0.5, 'group']);
    expect(Object.keys(r).filter((k) => ['default_pruning', 'intra_fusion', 'folding'].includes(k))).toEqual(['default_pruning', 'intra_fusion', 'folding']);
    expect(base.files).toEqual(['tiny_l1_g0_s0.5_default.safetensors', 'tiny_l1_g0_s0.5_folding.safetensors', 'tiny_l1_g0_s0.5_intra_fusion.safetensors']);
    for (const m of ['default', 'intra_fusion', 'folding'] as const) expect(widths(base.checkpoint(m))).toEqual([8, 16, 8]);
    expect(same(base.checkpoint('default'), base.checkpoint('intra_fusion'))).toBe(false);
    expect(same(base.checkpoint('default'), base.checkpoint('folding'))).toBe(false);
    expect(r.default_pruning.parameters).toBeLessThan(r.original_model.parameters);
  });

  it('--fusion none / ot / folding run only that method', async () => {
    for (const [fusion, key, file] of [['none', 'default_pruning', 'default'], ['ot', 'intra_fusion', 'intra_fusion'], ['folding', 'folding', 'folding']] as const) {
      const r = await run(['--group_idxs', '0', '--sparsities', '0.5', '--fusion', fusion]);
      expect(Object.keys(r.results[0]).filter((k) => ['default_pruning', 'intra_fusion', 'folding'].includes(k))).toEqual([key]);
      expect(r.files).toEqual([`tiny_l1_g0_s0.5_${file}.safetensors`]);
      // The same method with the same seed gives the same model as in the --fusion all run.
      if (fusion !== 'folding') expect(same(r.checkpoint(file), base.checkpoint(file))).toBe(true);
    }
  }, 300_000);

  it('--whole-network halves every group; --group-sparsity prunes the named groups by their own ratios', async () => {
    const whole = await run(['--whole-network', '--sparsities', '0.5', '--fusion', 'none']);
    expect([whole.results[0].group_idx, whole.results[0].mode]).toEqual([-1, 'whole-network']);
    expect(widths(whole.checkpoint('default'))).toEqual([4, 8, 8]);
    const per = await run(['--group-sparsity', '0=0.5,2=0.25', '--fusion', 'none']);
    expect(per.results[0]).toMatchObject({ group_idx: -1, sparsity: -1, mode: 'per-group', group_sparsity: { 0: 0.5, 2: 0.25 } });
    expect(widths(per.checkpoint('default'))).toEqual([6, 16, 8]);
    expect(per.files).toEqual(['tiny_l1_gs0=0.5-2=0.25_default.safetensors']);
  }, 300_000);

  it('--global ranks across groups (the weak group loses most); --max-group-sparsity caps that loss', async () => {
    const global = await run(['--global', '--sparsities', '0.5', '--fusion', 'none']);
    expect(global.results[0].mode).toBe('global');
    const [g2, g1, g0] = widths(global.checkpoint('default'));
    expect(g2 + g1 + g0).toBe(20); // floor(40 x 0.5) of the 40 channels removed
    expect(g1).toBe(4); // the 12 weak filters of group 1 go first
    const capped = await run(['--global', '--sparsities', '0.5', '--max-group-sparsity', '0.5', '--fusion', 'none']);
    const w = widths(capped.checkpoint('default'));
    expect(w[1]).toBe(8);
    expect(w.reduce((a, b) => a + b)).toBe(20);
  }, 300_000);

  it('--round-to keeps a multiple of it (rounded down, at least one), and warns when it overrides the sparsity', async () => {
    const r = await run(['--group_idxs', '0', '--sparsities', '0.3', '--round-to', '4', '--fusion', 'none']);
    expect(r.results[0].round_to).toBe(4);
    expect(widths(r.checkpoint('default'))[2]).toBe(8); // floor(16 x 0.7) = 11 -> 8
    const big = await run(['--group_idxs', '0', '--sparsities', '0.3', '--round-to', '32', '--fusion', 'none']);
    expect(widths(big.checkpoint('default'))[2]).toBe(16);
    expect(big.log).toMatch(/round-to|roundTo/);
  }, 300_000);
});

describe('Intra-Fusion settings', () => {
  /** The Intra-Fusion checkpoint of group 0 at 0.5 with these flags; default pruning must not change. */
  async function fused(args: string[]): Promise<Weights> {
    const r = await run(['--group_idxs', '0', '--sparsities', '0.5', ...args]);
    expect(same(r.checkpoint('default'), base.checkpoint('default'))).toBe(true);
    return r.checkpoint('intra_fusion');
  }

  it('--ot-solver, --ot-reg, --ot-p and the marginals each change the fused weights', async () => {
    const emd = base.checkpoint('intra_fusion');
    const sinkhorn = await fused(['--ot-solver', 'sinkhorn']);
    expect(same(sinkhorn, emd)).toBe(false);
    expect(same(await fused(['--ot-solver', 'sinkhorn', '--ot-reg', '0.5']), sinkhorn)).toBe(false);
    expect(same(await fused(['--ot-p', '2']), emd)).toBe(false);
    expect(same(await fused(['--target-probability', 'importance']), emd)).toBe(false);
    expect(same(await fused(['--source-probability', 'importance']), emd)).toBe(false);
    expect(shapes(sinkhorn)).toEqual(shapes(emd));
  }, 300_000);

  it('--iterative-steps and --batch-groups change the fused weights, not the widths', async () => {
    const stepped = await run(['--group_idxs', '0', '--sparsities', '0.5', '--iterative-steps', '2', '--fusion', 'ot']);
    expect(stepped.results[0].iterative_steps).toBe(2);
    expect(stepped.log).toMatch(/step 2/);
    expect(shapes(stepped.checkpoint('intra_fusion'))).toEqual(shapes(base.checkpoint('intra_fusion')));
    expect(same(stepped.checkpoint('intra_fusion'), base.checkpoint('intra_fusion'))).toBe(false);
    const sequential = await run(['--whole-network', '--sparsities', '0.5', '--fusion', 'ot']);
    const batched = await run(['--whole-network', '--sparsities', '0.5', '--fusion', 'ot', '--batch-groups']);
    expect(shapes(batched.checkpoint('intra_fusion'))).toEqual(shapes(sequential.checkpoint('intra_fusion')));
    expect(same(batched.checkpoint('intra_fusion'), sequential.checkpoint('intra_fusion'))).toBe(false);
  }, 300_000);

  it('--lamp-reference-bug changes LAMP\'s choice; --reference-quirks includes it', async () => {
    const args = ['--group_idxs', '1', '--sparsities', '0.5', '--importance_criteria', 'lamp', '--fusion', 'none'];
    const plain = await run(args);
    const bug = await run([...args, '--lamp-reference-bug']);
    expect(same(plain.checkpoint('default'), bug.checkpoint('default'))).toBe(false);
    const quirks = await run([...args, '--reference-quirks']);
    expect(same(quirks.checkpoint('default'), bug.checkpoint('default'))).toBe(true);
  }, 300_000);
});

describe('every pruning flag reaches prune()', () => {
  it('the options of one cell carry each flag\'s value (the BN part of --reference-quirks needs a BN model, so it is checked here)', () => {
    const o = checkRunArgs(['--whole-network', '--sparsities', '0.4', '--round-to', '4', '--iterative-steps', '3', '--batch-groups', '--reference-quirks', '--lamp-reference-bug',
      '--ot-solver', 'sinkhorn', '--ot-reg', '0.2', '--ot-p', '2', '--target-probability', 'importance', '--source-probability', 'importance', '--seed', '5'])!;
    const ctx = { o, source: { normalization: null, fresh: null, file: '' }, ot: optimalTransportFor(o), log: () => {} } as unknown as RunContext;
    const [cell] = planCells(o, 'tiny', 3);
    const p = pruneOptionsFor(ctx, cell, 'ot', 0);
    expect(p).toMatchObject({ sparsity: 0.4, groupIdxs: undefined, roundTo: 4, iterativeSteps: 3, batchGroups: true, referenceQuirks: true, lampReferencePermutation: true, global: false, fusion: 'ot' });
    expect(p.optimalTransport).toMatchObject({ solver: 'sinkhorn', reg: 0.2, p: 2 });
    expect(JSON.stringify(p.optimalTransport)).toMatch(/importance.*importance/);
    const g = checkRunArgs(['--global', '--max-group-sparsity', '0.6', '--sparsities', '0.5'])!;
    expect(pruneOptionsFor({ ...ctx, o: g }, planCells(g, 'tiny', 3)[0], 'none', 0)).toMatchObject({ global: true, maxGroupSparsity: 0.6, referenceQuirks: false });
  });
});

describe('training, outputs and resuming', () => {
  it('--fine-tune-epochs trains the pruned model: other weights, accuracy before fine-tuning recorded', async () => {
    const r = await run(['--group_idxs', '0', '--sparsities', '0.5', '--fusion', 'none', '--fine-tune-epochs', '1']);
    expect(r.results[0].default_pruning.accuracy_before_fine_tuning).toBeTypeOf('number');
    const tuned = r.checkpoint('default');
    expect(shapes(tuned)).toEqual(shapes(base.checkpoint('default')));
    expect(same(tuned, base.checkpoint('default'))).toBe(false);
  }, 300_000);

  it('--save-models=false writes no checkpoint; --export-onnx writes one .onnx per model', async () => {
    const none = await run(['--group_idxs', '0', '--sparsities', '0.5', '--fusion', 'none', '--save-models=false']);
    expect(none.files).toEqual([]);
    expect(none.results[0].default_pruning.checkpoint).toBeUndefined();
    const onnx = await run(['--group_idxs', '0', '--sparsities', '0.5', '--fusion', 'none', '--export-onnx']);
    expect(onnx.files).toEqual(['tiny_l1_g0_s0.5_default.safetensors']);
    expect(onnx.onnxFiles).toEqual(['tiny_l1_g0_s0.5_default.onnx', 'tiny_unpruned.onnx']);
  }, 300_000);

  it('--resume skips the finished cells and adds the others to the same file; other settings are refused', async () => {
    const first = await run(['--group_idxs', '0', '--sparsities', '0.25', '--fusion', 'none']);
    const file = join(first.out, 'logs', readdirSync(join(first.out, 'logs'))[0]);
    const resumed = await run(['--group_idxs', '0', '--sparsities', '0.25', '0.5', '--fusion', 'none', '--resume', file], { out: first.out });
    expect(resumed.log).toContain(`resuming ${file}: 1 of 2 cells finished`);
    expect(resumed.results.map((r) => r.sparsity)).toEqual([0.25, 0.5]);
    expect(resumed.results[0].timestamp).toBe(first.results[0].timestamp);
    expect(resumed.log).not.toMatch(/default group 0 sparsity 0.25:/);
    // The seed of a cell is its place in the plan, so the resumed cell equals an uninterrupted run's.
    expect(same(resumed.checkpoint('default', 1), base.checkpoint('default'))).toBe(true);
    await expect(runMain(['--model', model, '--data-dir', data, '--out', first.out, '--group_idxs', '0', '--sparsities', '0.5', '--importance_criteria', 'l2', '--resume', file])).rejects.toThrow(/its runs have importance_criteria "l1", this run "l2"; resume with the same --importance_criteria/);
    // Another --fusion adds its method to the finished cells and keeps theirs.
    const more = await run(['--group_idxs', '0', '--sparsities', '0.25', '0.5', '--fusion', 'ot', '--resume', file], { out: first.out });
    expect(more.results.map((r) => r.sparsity)).toEqual([0.25, 0.5]);
    for (const r of more.results) {
      expect(r.default_pruning).toEqual(resumed.results.find((x) => x.sparsity === r.sparsity)!.default_pruning);
      expect(r.intra_fusion).toBeDefined();
    }
    // Evaluated on other data (here another normalisation): refused, the accuracies would not compare.
    await expect(runMain(['--model', model, '--data-dir', data, '--out', first.out, '--eval-samples', '16', '--batch-size', '16', '--group_idxs', '0', '--sparsities', '0.5', '--mean', '0.5', '0.5', '0.5', '--std', '0.5', '0.5', '0.5', '--resume', file])).rejects.toThrow(/: its cells ran with --(normalization|mean) .*; resume with the same flag/);
  }, 300_000);
});

describe('non-finite weights', () => {
  it('--allow-non-finite: default pruning selects filters by index, so a NaN stays in its own filter (pruned: gone; kept: only there)', async () => {
    const args = ['--group_idxs', '0', '--sparsities', '0.5', '--fusion', 'none', '--importance_criteria', 'random'];
    const clean = await run(args);
    // Random importance drawn from the cell's seed: the same channels are kept whatever the weights hold.
    const net = importOnnx(readFileSync(model), 'tiny.onnx');
    const file = parseSafetensors(await modelToSafetensors(net, {}), 'tiny');
    const w4 = file.tensors.get('4.weight')!.values;
    const per = w4.length / 16;
    const cleanRows = clean.checkpoint('default').get('4.weight')!.values;
    const keptIdx = Array.from({ length: 8 }, (_, j) => [...Array(16).keys()].find((i) => w4.subarray(i * per, (i + 1) * per).every((v, t) => v === cleanRows[j * per + t]))!);
    const pruned = [...Array(16).keys()].find((i) => !keptIdx.includes(i))!;
    w4[pruned * per + 3] = NaN;
    w4[keptIdx[2] * per + 7] = NaN;
    loadStateDict(net, file, 'tiny', { allowNonFinite: true });
    const poisoned = join(root, 'nan.onnx');
    writeFileSync(poisoned, await exportOnnx(net, { inputShape: [3, 32, 32] }));
    net.dispose();
    await expect(runMain(['--model', poisoned, '--data-dir', data, '--out', join(root, 'refused'), ...args])).rejects.toThrow(/tensor "4\.weight" holds NaN/);
    const nan = await run([...args, '--allow-non-finite'], { model: poisoned });
    const got = nan.checkpoint('default');
    const want = clean.checkpoint('default');
    const wantRows = Float32Array.from(want.get('4.weight')!.values);
    wantRows[2 * per + 7] = NaN;
    expect(got.get('4.weight')!.values).toEqual(wantRows);
    expect([...want.keys()].sort()).toEqual(['0.bias', '0.weight', '2.bias', '2.weight', '4.bias', '4.weight', '8.bias', '8.weight']);
    for (const name of ['4.bias', '8.weight', '8.bias']) expect(got.get(name)!.values, name).toEqual(want.get(name)!.values);
  }, 300_000);
});
