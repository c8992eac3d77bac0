/**
 * run.js's results: the JSON entries (the reference's pruning_results fields plus ours), the results file
 * rewritten atomically after every finished cell, and the summary table printed at the end.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../nn/checkpoint-node.js';
import type { RunMode } from './run-flags.js';

export interface MethodResult {
  parameters: number;
  flops: number;
  macs: number;
  /** Top-1 accuracy in percent; null when the run had no data (not evaluated). */
  accuracy: number | null;
  /** Top-5 accuracy in percent, for models with more than 5 classes. */
  top5?: number;
  mean_batch_accuracy: number | null;
  inference_time: number;
  accuracy_before_fine_tuning?: number;
  checkpoint?: string;
  onnx?: string;
}

export interface RunResult {
  timestamp: string;
  model_name: string;
  importance_criteria: string;
  /** -1: every group at once (--whole-network, --global, --group-sparsity). */
  group_idx: number;
  /** -1 with --group-sparsity (see group_sparsity). */
  sparsity: number;
  group_sparsity?: Record<number, number>;
  mode: RunMode;
  iterative_steps: number;
  round_to: number;
  eval_samples: number;
  /** False for a data-free run (no --data): accuracies are null. */
  evaluated: boolean;
  /** The evaluation data (path) and its kind, null without data. */
  data: string | null;
  data_format: string | null;
  input_shape: number[];
  normalization: { mean: number[]; std: number[] };
  /** The ONNX file pruned (--model), when the run started from one. */
  model_file?: string;
  original_model: MethodResult;
  /** Typed for the default --fusion both; --fusion none or ot leaves the other method's entry out. */
  default_pruning: MethodResult;
  intra_fusion: MethodResult;
  /** With --fusion folding or all. */
  folding?: MethodResult;
}

/** <out>/logs/pruning_results_<timestamp>.json, rewritten whole (atomically) after every finished cell. */
export class ResultsFile {
  readonly path: string;
  readonly entries: RunResult[] = [];

  constructor(out: string, timestamp = new Date().toISOString().replace(/[:.]/g, '-')) {
    this.path = join(out, 'logs', `pruning_results_${timestamp}.json`);
  }

  add(entry: RunResult): void {
    this.entries.push(entry);
    writeFileAtomic(this.path, JSON.stringify(this.entries, null, 2));
  }
}

/** The markdown table printed at the end of a run: one row per cell. */
export function summaryTable(results: RunResult[], withFolding: boolean): string[] {
  const lines = [
    `| group | sparsity | default % | Intra-Fusion % |${withFolding ? ' folding % |' : ''} parameters |`,
    `|---:|---:|---:|---:|${withFolding ? '---:|' : ''}---:|`,
  ];
  for (const r of results) {
    const group = r.mode === 'per-group' ? Object.keys(r.group_sparsity!).join(',') : r.group_idx === -1 ? 'all' : r.group_idx;
    const sparsity = r.mode === 'per-group' ? Object.values(r.group_sparsity!).join(',') : r.sparsity;
    const [dp, intra] = [r.default_pruning as MethodResult | undefined, r.intra_fusion as MethodResult | undefined];
    lines.push(`| ${group} | ${sparsity} | ${dp?.accuracy ?? '-'} | ${intra?.accuracy ?? '-'} |${withFolding ? ` ${r.folding?.accuracy ?? '-'} |` : ''} ${(intra ?? dp ?? r.folding)!.parameters} |`);
  }
  return lines;
}
