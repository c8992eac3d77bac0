/**
 * `node dist/compare.js --model_dir ./pruned_models`: a table of parameters, FLOPs, accuracy and latency
 * of every pruned checkpoint in a folder (as written by run.js), and an accuracy-vs-sparsity plot of
 * default pruning vs Intra-Fusion per group, as SVG (<model_dir>/comparison.svg unless --plot is given).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isEntryPoint, runMain } from './cli/main.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { accuracyPlot, METHOD_LABEL, type CompareRow } from './cli/plot.js';
import { writeFileAtomic } from './nn/checkpoint-node.js';
import { modelFromStateDict } from './nn/checkpoint.js';
import { complexity, inferenceSpeed } from './nn/metrics.js';
import { parseSafetensors } from './tensor/safetensors.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';

const FLAGS = {
  model_dir: { kind: 'string', help: 'Folder of pruned checkpoints (run.js writes <out>/pruned_models).', default: './pruned_models' },
  plot: { kind: 'string', help: 'Where to write the accuracy-vs-sparsity SVG. Default: <model_dir>/comparison.svg' },
  latency: { kind: 'boolean', help: 'Measure batch-1 latency of each model (--latency=false to skip).', default: true },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
} satisfies Record<string, FlagSpec>;

export type { CompareRow };

export async function compare(dir: string, o: { latency: boolean; gpuId: number }): Promise<CompareRow[]> {
  if (!existsSync(dir)) throw new UsageError(`--model_dir ${dir} does not exist.`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (!files.length) throw new UsageError(`No .safetensors checkpoints in ${dir}.`);
  await initRuntime(o.gpuId);
  const rows: CompareRow[] = [];
  for (const f of files) {
    const path = join(dir, f);
    const file = parseSafetensors(readFileSync(path), path);
    const meta = file.metadata;
    if (!meta.model || !meta.method) {
      process.stderr.write(`skipping ${f}: not a pruned checkpoint from run.js (no model/method metadata)\n`);
      continue;
    }
    const model = modelFromStateDict(meta.model, file, path);
    const c = complexity(model);
    const latencyMs = o.latency ? (await inferenceSpeed(model, { batchSize: 8, reps: 3 })).latencyMs : null;
    model.dispose();
    rows.push({
      file: f, model: meta.model, method: meta.method, group: Number(meta.group_idx), sparsity: Number(meta.sparsity),
      parameters: c.parameters, flops: c.flops, accuracy: Number(meta.accuracy), latencyMs,
    });
  }
  return rows.sort((a, b) => a.model.localeCompare(b.model) || a.group - b.group || a.sparsity - b.sparsity || a.method.localeCompare(b.method));
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    console.log(usage('node dist/compare.js', 'Compare pruned checkpoints: table and accuracy-vs-sparsity plot.', FLAGS));
    return 0;
  }
  const dir = resolve(a.model_dir as string);
  const rows = await compare(dir, { latency: a.latency as boolean, gpuId: a.gpu_id as number });
  console.log('| model | group | sparsity | method | parameters | MFLOPs | accuracy % | latency ms |');
  console.log('|---|---:|---:|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.group} | ${r.sparsity} | ${METHOD_LABEL[r.method] ?? r.method} | ${r.parameters} | ${(r.flops / 1e6).toFixed(1)} | ${r.accuracy.toFixed(2)} | ${r.latencyMs === null ? '-' : r.latencyMs.toFixed(1)} |`);
  }
  const plot = resolve((a.plot as string | undefined) ?? join(dir, 'comparison.svg'));
  writeFileAtomic(plot, accuracyPlot(rows));
  console.log(`\nplot: ${plot}`);
  destroyRuntime();
  return 0;
}

if (isEntryPoint(import.meta.url)) runMain(main);
