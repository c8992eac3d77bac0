/**
 * run.js's results: the JSON entries (the reference's pruning_results fields plus ours), the results file
 * rewritten atomically after every finished cell, and the summary table printed at the end.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataError } from '../errors.js';
import { TEMP_HOST, writeFileAtomic } from '../nn/checkpoint-node.js';
import { UsageError } from './args.js';
import type { Cell, MethodKey } from './cells.js';
import { resultSettings, type EvalBackend, type RunMode, type RunOptions, type Shard } from './run-flags.js';

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
  /** What ran this model's evaluation and latency (--eval-backend). */
  eval_backend: EvalBackend;
  accuracy_before_fine_tuning?: number;
  /** The pruned model's checkpoint; for original_model, the checkpoint the run loaded (not for ONNX runs: see model_file). */
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
  /** What identifies the run this cell belongs to (absent in results of older versions). */
  run?: RunIdentity;
}

/** The run a cell belongs to: the same in every cell (and every shard) of one run. */
export interface RunIdentity {
  /** The flags that shape the results, by flag name (run-flags.ts resultSettings). */
  settings: Record<string, unknown>;
  /** SHA-256 of the model file the run pruned (checkpoint or ONNX). */
  model_sha256: string;
  /** Every cell of the run in plan order, by name (as in the pruned checkpoints' file names). */
  cells: string[];
  /** With --shard: this shard's 0-based index and the shard count. */
  shard?: Shard;
}

/**
 * <out>/logs/pruning_results_<timestamp>.json (or the --resume file), rewritten whole (atomically) after
 * every finished cell.
 */
export class ResultsFile {
  constructor(readonly path: string, readonly entries: RunResult[] = []) {}

  /** A new results file; a shard's name ends in _shard-I-of-N, so shards writing to one --out never collide. */
  static create(out: string, timestamp = new Date().toISOString().replace(/[:.]/g, '-'), shard?: Shard): ResultsFile {
    return new ResultsFile(join(out, 'logs', `pruning_results_${timestamp}${shard ? `_shard-${shard.index}-of-${shard.count}` : ''}.json`));
  }

  /**
   * A results file to continue (--resume): its entries must come from a run with this run's settings
   * (model, criterion, mode, steps, round-to, evaluation samples); otherwise the table would mix runs.
   */
  static resume(path: string, o: RunOptions): ResultsFile {
    if (!existsSync(path)) throw new UsageError(`--resume ${path} does not exist.`);
    let entries: unknown;
    try {
      entries = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new DataError(`--resume ${path} is not a results file: ${(e as Error).message}.`);
    }
    if (!Array.isArray(entries) || entries.some((r) => typeof r !== 'object' || r === null || typeof (r as RunResult).original_model !== 'object')) {
      throw new DataError(`--resume ${path} is not a results file written by run.js (a JSON list of cells).`);
    }
    const want: [keyof RunResult, unknown, string][] = [
      ['model_name', o.modelName, '--model-name / --model'], ['importance_criteria', o.criterion, '--importance_criteria'], ['mode', o.mode, 'the mode'],
      ['iterative_steps', o.iterativeSteps, '--iterative-steps'], ['round_to', o.roundTo, '--round-to'],
    ];
    const shardName = (s: Shard | undefined) => (s ? `shard ${s.index}/${s.count}` : 'an unsharded run');
    const settings = resultSettings(o);
    for (const r of entries as RunResult[]) {
      for (const [key, value, flag] of want) {
        if (r[key] !== value) throw new UsageError(`--resume ${path}: its runs have ${key} ${JSON.stringify(r[key])}, this run ${JSON.stringify(value)}; resume with the same ${flag}.`);
      }
      // A shard's cells depend on the whole plan: it resumes as the same shard of the same run, or not at all.
      const theirs = r.run?.shard;
      if (JSON.stringify(theirs) !== JSON.stringify(o.shard)) throw new UsageError(`--resume ${path} holds ${shardName(theirs)}, this run is ${shardName(o.shard)}${theirs ? `; resume it with --shard ${theirs.index}/${theirs.count}` : ''}.`);
      if (r.run) {
        // An unsharded run may grow (more groups, sparsities or methods); every other flag shapes the cells it keeps.
        const free = theirs ? [] : ['group_idxs', 'sparsities', 'fusion'];
        const flag = Object.keys(settings).find((k) => !free.includes(k) && JSON.stringify(r.run!.settings[k]) !== JSON.stringify(settings[k]));
        if (flag) throw new UsageError(`--resume ${path}: its ${theirs ? 'shard' : 'cells'} ran with --${flag} ${describeSetting(r.run.settings[flag])}, this run with ${describeSetting(settings[flag])}; ${theirs ? "a shard resumes with the run's flags" : 'resume with the same flag'}.`);
      }
    }
    return new ResultsFile(path, entries as RunResult[]);
  }

  /** With --resume: the finished cells pruned the same model file (when the results say which). */
  checkSameModel(sha256: string): void {
    for (const r of this.entries) {
      if (r.run && r.run.model_sha256 !== sha256) throw new UsageError(`--resume ${this.path}: its runs pruned another model file (SHA-256 ${r.run.model_sha256.slice(0, 12)}..., this one ${sha256.slice(0, 12)}...).`);
    }
  }

  /**
   * With --resume: the finished cells were evaluated on the same data as this run (samples, data set,
   * format, input shape, normalisation and evaluation backend); otherwise their accuracies and the stored
   * original model's would not compare with this run's. Fields an older results file lacks are not checked.
   */
  checkSameSetup(setup: Pick<RunResult, 'eval_samples' | 'data' | 'data_format' | 'input_shape' | 'normalization'>, evalBackend: string): void {
    const flags: Record<string, string> = {
      eval_samples: '--eval-samples', data: '--data', data_format: '--data-format', input_shape: '--input-shape', normalization: '--normalization / --mean / --std',
    };
    for (const r of this.entries) {
      for (const [key, value] of Object.entries(setup)) {
        const theirs = (r as unknown as Record<string, unknown>)[key];
        if (theirs !== undefined && JSON.stringify(theirs) !== JSON.stringify(value)) {
          throw new UsageError(`--resume ${this.path}: its runs have ${key} ${JSON.stringify(theirs)}, this run ${JSON.stringify(value)}; resume with the same ${flags[key]}.`);
        }
      }
      const backend = r.original_model.eval_backend;
      if (backend !== undefined && backend !== evalBackend) throw new UsageError(`--resume ${this.path}: its runs were evaluated with --eval-backend ${backend}, this run with ${evalBackend}.`);
    }
  }

  /** The finished entry for a cell that has every method in `keys`, if any. */
  finished(cell: Cell, keys: MethodKey[]): RunResult | undefined {
    return this.entries.find((r) => sameCell(r, cell) && keys.every((k) => r[k] !== undefined));
  }

  /**
   * Records a finished cell and rewrites the file. An earlier entry of the same cell is replaced, keeping
   * the methods this run did not redo (a resume with another --fusion adds to them, never drops them).
   */
  add(entry: RunResult): void {
    const at = this.entries.findIndex((r) => r.group_idx === entry.group_idx && r.sparsity === entry.sparsity && JSON.stringify(r.group_sparsity) === JSON.stringify(entry.group_sparsity));
    if (at >= 0) entry = { ...this.entries.splice(at, 1)[0], ...entry };
    this.entries.push(entry);
    writeFileAtomic(this.path, JSON.stringify(this.entries, null, 2));
  }
}

/** A setting's value as a flag would spell it: lists comma-separated, null as "(not given)". */
export const describeSetting = (v: unknown) => (v === null || v === undefined ? '(not given)' : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v));

const sameCell = (r: RunResult, cell: Cell) =>
  typeof cell.sparsity === 'number' ? r.group_idx === cell.g && r.sparsity === cell.s : JSON.stringify(r.group_sparsity) === JSON.stringify(cell.sparsity);

/**
 * Checks, before any long work, that --out is a folder this run can write (creating it), and removes
 * temporary files (`*.tmp-HOST-PID-TIME`) that killed runs of this machine left there, when their process is
 * gone. Other machines' files are left alone: on a folder that shards share, their process may be alive.
 */
export function prepareOutDir(out: string, log: (line: string) => void): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`--out ${out} is a file, not a folder.`);
  const probe = join(out, 'logs', `.write-test-${TEMP_HOST}-${process.pid}`);
  try {
    mkdirSync(join(out, 'logs'), { recursive: true });
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (e) {
    throw new UsageError(`--out ${out}: cannot write there (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`);
  }
  for (const dir of ['logs', 'pruned_models'].map((d) => join(out, d)).filter((d) => existsSync(d))) {
    for (const f of readdirSync(dir)) {
      const [, host, pid] = /\.tmp-(?:(.+)-)?(\d+)-\d+$/.exec(f) ?? [];
      if (pid && (host === undefined || host === TEMP_HOST) && !processAlive(Number(pid))) {
        rmSync(join(dir, f), { force: true });
        log(`removed ${join(dir, f)} (left by an interrupted run)`);
      }
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
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
