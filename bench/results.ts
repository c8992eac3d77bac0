/**
 * Bench results on disk: one JSON file per README table in bench/results/ (kernels, models, prune,
 * main-job), each saying when and where it was measured. `npm run docs:bench` regenerates the README's
 * bench tables from these files (bench/readme-tables.ts), so every figure there comes from one of them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

export const RESULTS_DIR = 'bench/results';

/** The targets of issue 18 on the project's 2-core machine; the README's targets table checks against them. */
export const TARGETS = {
  /** `node dist/run.js --sparsities 0.5` on the full test set, end to end. */
  mainJobSeconds: 8 * 60,
  /** Every kernel row's GFLOP/s over tfjs-backend-webgpu's on the same adapter. */
  kernelRatio: 3,
  /** Whole-network Intra-Fusion of VGG11-BN at 0.5: the authors' time over ours. */
  pruneSpeedup: 2,
};
export const TABLES = ['kernels', 'models', 'prune', 'main-job'] as const;
export type TableName = (typeof TABLES)[number];

/** When and where a measurement was taken. Load averages are the 1-minute figure (os.loadavg()[0]). */
export interface Measured {
  date: string;
  host: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  /** `git describe --always --dirty` of the measured code, when in a git checkout. */
  commit: string | null;
  adapter: string;
  /** 1-minute load average when the measurement started and when it ended. */
  loadStart: number;
  loadEnd: number;
}

/** The start of a measurement: call `finish()` at its end for the record. */
export function startMeasurement(adapter: string): { finish: () => Measured } {
  const date = new Date().toISOString();
  const loadStart = round(loadavg()[0], 2);
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { /* not a git checkout */ }
  return {
    finish: () => ({
      date, host: hostname(), cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, memoryGiB: round(totalmem() / 2 ** 30, 1),
      node: process.version, commit, adapter, loadStart, loadEnd: round(loadavg()[0], 2),
    }),
  };
}

export const round = (v: number, digits: number) => Number(v.toFixed(digits));

export function resultPath(table: TableName, dir = RESULTS_DIR): string {
  return join(dir, `${table}.json`);
}

export function writeResult(table: TableName, value: object, dir = RESULTS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const file = resultPath(table, dir);
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
  return file;
}

/** The stored result of `table`, or null when it was never measured. */
export function readResult<T>(table: TableName, dir = RESULTS_DIR): T | null {
  const file = resultPath(table, dir);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : null;
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
