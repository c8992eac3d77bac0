/**
 * run.js --shard I/N and compare.js's merge, end to end on a tiny model (a 3-conv CNN as an ONNX file, 16
 * CIFAR-format images; each run takes seconds): a 4-cell sweep split into 3 shards, two writing to one
 * --out (as a Slurm array on a shared file system) and one to its own (as a Kubernetes pod), merges into
 * exactly the unsharded run's cells. Importance is `random`, so a shard that seeded its cells by their
 * place in the shard instead of in the whole plan would prune other channels and fail here.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/cli/args.js';
import { compare, main as compareMain, measureOriginals, originalRows, readResults } from '../src/compare.js';
import { setInitSeed } from '../src/nn/init.js';
import { exportOnnx } from '../src/onnx/export.js';
import { main as runMain, type RunResult } from '../src/run.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu, tinyCnn, writeRandomCifar } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'if-shard-'));
const model = join(root, 'tiny.onnx');
const data = join(root, 'data');
afterAll(() => {
  destroyRuntime();
  rmSync(root, { recursive: true, force: true });
});

beforeAll(async () => {
  await gpu();
  setInitSeed(7);
  const net = tinyCnn();
  writeFileSync(model, await exportOnnx(net, { inputShape: [3, 32, 32] }));
  net.dispose();
  writeRandomCifar(data);
}, 120_000);

/** Four cells in plan order: g0_s0.25, g0_s0.5, g1_s0.25, g1_s0.5. Shard 0/3 gets the first and the last. */
const plan = ['--model', model, '--data-dir', data, '--eval-samples', '16', '--batch-size', '16', '--group_idxs', '0', '1', '--sparsities', '0.25', '0.5', '--importance_criteria', 'random'];

/** Runs `main` with stdout (and stderr) captured; returns its exit code and what it printed. */
async function captured(main: (argv: string[]) => Promise<number>, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const [out, err]: string[][] = [[], []];
  const [writeOut, writeErr, log] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr), console.log];
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
  console.log = (...a: unknown[]) => out.push(`${a.join(' ')}\n`);
  try {
    return { code: await main(argv), out: out.join(''), err: err.join('') };
  } finally {
    [process.stdout.write, process.stderr.write, console.log] = [writeOut, writeErr, log];
    await gpu(); // main() releases the device when it finishes
  }
}

async function run(out: string, args: string[] = []): Promise<string> {
  const r = await captured(runMain, [...plan, '--out', out, ...args]);
  expect(r.code).toBe(0);
  return r.out;
}

const logsOf = (out: string) => readdirSync(join(out, 'logs')).filter((f) => f.endsWith('.json')).sort();
const read = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as RunResult[];
const cellsOf = (file: string) => read(file).map((e) => `g${e.group_idx}_s${e.sparsity}`);
/** A method's result without what legitimately differs between two runs of it (timing, file paths). */
const stable = (m: RunResult['default_pruning']) => ({ ...m, inference_time: 0, checkpoint: undefined, onnx: undefined });

describe('--shard checks, before any work', () => {
  it('refuses bad values and --epochs with one line naming the flag, and creates nothing', async () => {
    const out = join(root, 'never');
    const bad: [string, RegExp][] = [
      ['abc', /^--shard takes I\/N, this shard's index from 0 and the shard count \(e\.g\. 0\/3\), got "abc"\.$/],
      ['/3', /got "\/3" \(an unset variable\?\)\.$/],
      ['-1/3', /got "-1\/3"/],
      ['1.5/3', /got "1\.5\/3"/],
      ['1/0', /^--shard 1\/0: the shard count must be at least 1\.$/],
      ['3/3', /^--shard 3\/3: the index counts from 0, so it is 0 to 2 \(sbatch --array=0-2; a 1-based task id is \$\(\(SLURM_ARRAY_TASK_ID - 1\)\)\)\.$/],
      ['4/3', /^--shard 4\/3: the index counts from 0, so it is 0 to 2/],
      ['0/5', /^--shard 0\/5: the run has 4 cells, so at most 4 shards; shard 4 on would have none\.$/],
    ];
    for (const [value, message] of bad) {
      const e = await runMain([...plan, '--out', out, '--shard', value]).catch((x: unknown) => x);
      expect(e, value).toBeInstanceOf(UsageError);
      expect((e as Error).message, value).toMatch(message);
    }
    await expect(runMain(['--out', out, '--shard', '0/3', '--epochs', '1'])).rejects.toThrow(/^--shard with --epochs: every shard would train/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('three shards of a four-cell sweep', () => {
  const whole = join(root, 'whole');
  const shared = join(root, 'shared'); // shards 0 and 1 (one --out, as a job array on a shared file system)
  const own = join(root, 'own'); // shard 2 (its own --out, as a pod with its own volume)
  beforeAll(async () => {
    await run(whole);
    expect(await run(shared, ['--shard', '0/3'])).toContain('shard 0/3: 2 of 4 cells (g0_s0.25, g1_s0.5)');
    await run(shared, ['--shard', '1/3']);
    await run(own, ['--shard', '2/3']);
  }, 300_000);

  it('each shard runs every third cell of the plan and writes its own results file', () => {
    const files = logsOf(shared);
    expect(files).toHaveLength(2);
    expect(files.map((f) => f.replace(/^pruning_results_.*(_shard-.*)$/, '$1'))).toEqual(['_shard-0-of-3.json', '_shard-1-of-3.json']);
    expect(cellsOf(join(shared, 'logs', files[0]))).toEqual(['g0_s0.25', 'g1_s0.5']);
    expect(cellsOf(join(shared, 'logs', files[1]))).toEqual(['g0_s0.5']);
    expect(cellsOf(join(own, 'logs', logsOf(own)[0]))).toEqual(['g1_s0.25']);
    const [entry] = read(join(shared, 'logs', files[1]));
    expect(entry.run).toMatchObject({ shard: { index: 1, count: 3 }, cells: ['g0_s0.25', 'g0_s0.5', 'g1_s0.25', 'g1_s0.5'] });
    expect(entry.run!.model_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('merged, they equal the unsharded run: results, checkpoints and compare.js rows', async () => {
    const unsharded = read(join(whole, 'logs', logsOf(whole)[0]));
    const sharded = readResults(undefined, [shared, own]);
    expect(sharded).toHaveLength(4);
    for (const r of unsharded) {
      const s = sharded.find((x) => x.group_idx === r.group_idx && x.sparsity === r.sparsity)!;
      expect(stable(s.default_pruning)).toEqual(stable(r.default_pruning));
      expect(stable(s.intra_fusion)).toEqual(stable(r.intra_fusion));
      for (const m of ['default_pruning', 'intra_fusion'] as const) expect(readFileSync(s[m].checkpoint!).equals(readFileSync(r[m].checkpoint!)), `${m} g${r.group_idx}_s${r.sparsity}`).toBe(true);
    }
    const merged = await compare([join(shared, 'pruned_models'), join(own, 'pruned_models')], { latency: false, gpuId: 0, results: [shared, own] });
    expect(merged).toEqual(await compare(join(whole, 'pruned_models'), { latency: false, gpuId: 0 }));
    expect(merged).toHaveLength(8);
  }, 120_000);

  it('compare.js --results merges the shards\' --out folders into one table and plot', async () => {
    const plot = join(root, 'merged.svg');
    const r = await captured(compareMain, ['--results', shared, own, '--plot', plot, '--latency=false']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('merged 3 shards of one run (3 results files)');
    expect(r.out.split('\n').filter((l) => /^\| tiny \| [01] \|/.test(l))).toHaveLength(8);
    expect(r.err).toBe('');
    expect(readFileSync(plot, 'utf8')).toContain('tiny g1 Intra-Fusion');
  }, 120_000);

  it('reports the cells no shard finished, naming their shard', async () => {
    const r = await captured(compareMain, ['--results', shared, '--plot', join(root, 'partial.svg'), '--latency=false']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('warning: 1 cell of the run is in no shard\'s results (rerun or --resume those shards): g1_s0.25 (shard 2/3)\n');
  }, 120_000);

  it('refuses shards of different runs with one line naming the difference', async () => {
    const other = join(root, 'other-seed');
    await run(other, ['--shard', '2/3', '--seed', '1']);
    await expect(compareMain(['--results', shared, other, '--latency=false'])).rejects.toThrow(/^\S+_shard-0-of-3\.json and \S+_shard-2-of-3\.json are shards of different runs \(--seed 0 vs 1\); merge the shards of one run\.$/);
    // Another model file behind the same flags (here: its recorded hash changed).
    const file = join(own, 'logs', logsOf(own)[0]);
    const forged = join(root, 'forged', 'logs', 'pruning_results_x_shard-2-of-3.json');
    mkdirSync(join(root, 'forged', 'logs'), { recursive: true });
    writeFileSync(forged, JSON.stringify(read(file).map((e) => ({ ...e, run: { ...e.run, model_sha256: '0'.repeat(64) } }))));
    await expect(compareMain(['--results', shared, forged, '--model_dir', join(own, 'pruned_models'), '--latency=false'])).rejects.toThrow(/are shards of different runs \(another model file \(SHA-256 [0-9a-f]{12}\.\.\. vs 000000000000\.\.\.\)\)/);
  }, 120_000);

  it('--resume continues a shard as the same shard of the same run, and refuses anything else', async () => {
    // Shard 0 interrupted after its first cell: its file holds one of its two cells (the file is rewritten after every cell).
    const out = join(root, 'resumed');
    mkdirSync(join(out, 'logs'), { recursive: true });
    const source = join(shared, 'logs', logsOf(shared)[0]);
    const file = join(out, 'logs', 'pruning_results_r_shard-0-of-3.json');
    writeFileSync(file, JSON.stringify(read(source).slice(0, 1)));
    const log = await run(out, ['--shard', '0/3', '--resume', file]);
    expect(log).toContain(`resuming ${file}: 1 of 2 cells finished`);
    expect(cellsOf(file)).toEqual(['g0_s0.25', 'g1_s0.5']);
    const redone = read(file)[1];
    const original = read(source)[1];
    expect(stable(redone.intra_fusion)).toEqual(stable(original.intra_fusion));
    expect(readFileSync(redone.intra_fusion.checkpoint!).equals(readFileSync(original.intra_fusion.checkpoint!))).toBe(true);
    const again = (args: string[], resume = file) => runMain([...plan, '--out', out, '--resume', resume, ...args]);
    await expect(again(['--shard', '1/3'])).rejects.toThrow(`--resume ${file} holds shard 0/3, this run is shard 1/3; resume it with --shard 0/3.`);
    await expect(again([])).rejects.toThrow(`--resume ${file} holds shard 0/3, this run is an unsharded run; resume it with --shard 0/3.`);
    await expect(again(['--shard', '0/3', '--seed', '1'])).rejects.toThrow(`--resume ${file}: its shard ran with --seed 0, this run with 1; a shard resumes with the run's flags.`);
    const unsharded = join(whole, 'logs', logsOf(whole)[0]);
    await expect(again(['--shard', '0/3'], unsharded)).rejects.toThrow(`--resume ${unsharded} holds an unsharded run, this run is shard 0/3.`);
    // An unsharded run may grow (groups, sparsities, methods), but not mix cells made with other flags.
    await expect(again(['--seed', '1'], unsharded)).rejects.toThrow(`--resume ${unsharded}: its cells ran with --seed 0, this run with 1; resume with the same flag.`);
  }, 300_000);

  it('compare.js measures the unpruned model\'s latency as it measures the pruned ones, or labels run.js\'s', async () => {
    const results = readResults(undefined, [own]);
    const [measured] = await measureOriginals(originalRows(results), results, 'webgpu');
    expect(measured.latencyBy).toBeUndefined();
    expect(measured.latencyMs).toBeGreaterThan(0);
    // Without the model file at hand: run.js's figure, labelled with who measured it.
    const moved = results.map((e) => ({ ...e, model_file: join(root, 'gone.onnx') }));
    const [labelled] = await measureOriginals(originalRows(moved), moved, 'webgpu');
    expect(labelled).toMatchObject({ latencyBy: 'run.js, webgpu', latencyMs: results[0].original_model.inference_time * 1e3 });
    const copy = join(root, 'moved');
    mkdirSync(join(copy, 'logs'), { recursive: true });
    writeFileSync(join(copy, 'logs', 'pruning_results_m_shard-2-of-3.json'), JSON.stringify(moved));
    const r = await captured(compareMain, ['--results', copy, '--model_dir', join(own, 'pruned_models'), '--plot', join(root, 'moved.svg')]);
    expect(r.out).toMatch(/\| tiny \| - \| 0 \| unpruned \|.*\| \d+\.\d \(run\.js, webgpu\) \|\n/);
    expect(r.out).toMatch(/\| tiny \| 1 \| 0\.25 \| default \|.*\| \d+\.\d \|\n/);
  }, 120_000);
});
