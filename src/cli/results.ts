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
  accuracy: number;
  mean_batch_accuracy: number;
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

/** The markdown table printed at the end of a run: one row per cell, one accuracy column per method run. */
export function summaryTable(results: RunResult[], methods: readonly { key: string; label: string }[]): string[] {
  const lines = [
    `| group | sparsity | ${methods.map((m) => `${m.label} % |`).join(' ')} parameters |`,
    `|---:|---:|${methods.map(() => '---:|').join('')}---:|`,
  ];
  for (const r of results) {
    const group = r.mode === 'per-group' ? Object.keys(r.group_sparsity!).join(',') : r.group_idx === -1 ? 'all' : r.group_idx;
    const sparsity = r.mode === 'per-group' ? Object.values(r.group_sparsity!).join(',') : r.sparsity;
    const byMethod = methods.map((m) => (r as unknown as Record<string, MethodResult | undefined>)[m.key]);
    lines.push(`| ${group} | ${sparsity} | ${byMethod.map((m) => `${m?.accuracy ?? '-'} |`).join(' ')} ${byMethod.find((m) => m)?.parameters ?? '-'} |`);
  }
  return lines;
}
