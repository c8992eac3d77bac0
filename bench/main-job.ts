/**
 * `npm run bench -- --only=main-job`: the headline command, `node dist/run.js --sparsities 0.5` (groups 1-3,
 * default pruning and Intra-Fusion, seven evaluations, the shipped checkpoint), timed end to end as a child
 * process, as a user runs it. Variants: `full` (the whole 10,000-image test set, the one with the
 * 8-minute target) and `short` (`--eval-samples 1000`); `--main-job=short` runs one. Each variant's record
 * replaces only its own entry in bench/results/main-job.json.
 *
 * run.js prints no timings, so the phases come from when its lines arrive: setup (start to the original's
 * evaluation), the original's evaluation, and each method of each cell (prune, evaluate, save).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { readResult, round, startMeasurement, TARGETS, writeResult, type Measured } from './results.js';

export const MAIN_JOB_VARIANTS: Record<string, { args: string[]; what: string }> = {
  full: { args: [], what: 'full test set (10,000 images)' },
  short: { args: ['--eval-samples', '1000'], what: '--eval-samples 1000' },
};

export interface MainJobPhase { phase: string; seconds: number }
export interface MainJobRun {
  measured: Measured;
  variant: string;
  command: string;
  exitCode: number;
  wallSeconds: number;
  evalSamples: number | null;
  /** Only for `full`: wall time within TARGETS.mainJobSeconds. */
  targetSeconds: number | null;
  pass: boolean | null;
  phases: MainJobPhase[];
  /** Load average (1 min) sampled every 30 s while it ran. */
  loadSamples: number[];
}
export interface MainJobResult { runs: Record<string, MainJobRun> }

/** Phases from timestamped stdout lines (seconds since start): the lines run.js prints between them. */
export function phasesFromLog(lines: { t: number; line: string }[], end: number): MainJobPhase[] {
  const phases: MainJobPhase[] = [];
  let last = 0;
  const close = (phase: string, t: number) => {
    phases.push({ phase, seconds: round(t - last, 1) });
    last = t;
  };
  for (const { t, line } of lines) {
    if (/^evaluating the original /.test(line)) close('setup (adapter, data, checkpoint)', t);
    else if (/^original: /.test(line)) close('original: evaluate', t);
    else {
      const m = /^(.+ (?:group|groups|all groups) .*?sparsity [\d.]+): .*(accuracy|not evaluated)/.exec(line);
      if (m) close(`${m[1]}: prune, evaluate, save`, t);
    }
  }
  if (phases.length) close('summary and exit', end);
  return phases;
}

async function runOnce(variant: string, o: { dataDir: string; adapter: string }, log: (l: string) => void): Promise<MainJobRun> {
  const out = mkdtempSync(join(tmpdir(), 'intra-fusion-main-job-'));
  const args = ['dist/run.js', '--sparsities', '0.5', '--data-dir', o.dataDir, '--out', out, ...MAIN_JOB_VARIANTS[variant].args];
  const command = `node ${args.join(' ').replace(out, '<tmp>').replace(o.dataDir, relative(process.cwd(), o.dataDir) || '.')}`;
  log(`main job (${variant}): ${command}`);
  const m = startMeasurement(o.adapter);
  const t0 = performance.now();
  const lines: { t: number; line: string }[] = [];
  const loadSamples = [round(loadavg()[0], 2)];
  const sampler = setInterval(() => loadSamples.push(round(loadavg()[0], 2)), 30_000);
  let evalSamples: number | null = null;
  const exitCode = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const parts = (pending + chunk.toString()).split('\n');
      pending = parts.pop()!;
      const t = (performance.now() - t0) / 1e3;
      for (const line of parts) {
        lines.push({ t, line });
        const n = /^evaluating the original .* on (\d+) samples/.exec(line);
        if (n) evalSamples = Number(n[1]);
        log(`  [${t.toFixed(0)} s] ${line}`);
      }
    });
    let errTail = '';
    child.stderr.on('data', (chunk: Buffer) => { errTail = (errTail + chunk.toString()).slice(-2000); });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) log(`  run.js exited ${code}: ${errTail.trim().split('\n').pop()}`);
      resolve(code ?? 1);
    });
  });
  clearInterval(sampler);
  const wallSeconds = round((performance.now() - t0) / 1e3, 1);
  rmSync(out, { recursive: true, force: true });
  const targetSeconds = variant === 'full' ? TARGETS.mainJobSeconds : null;
  return {
    measured: m.finish(), variant, command, exitCode, wallSeconds, evalSamples, targetSeconds,
    pass: targetSeconds === null || exitCode !== 0 ? null : wallSeconds <= targetSeconds,
    phases: phasesFromLog(lines, wallSeconds), loadSamples,
  };
}

/** Runs the chosen variants one after another, saving main-job.json after each (a later failure loses nothing). */
export async function benchMainJob(variants: string[], o: { dataDir: string; adapter: string }, log: (l: string) => void): Promise<MainJobResult> {
  const result: MainJobResult = readResult<MainJobResult>('main-job') ?? { runs: {} };
  for (const v of variants) {
    const run = await runOnce(v, o, log);
    if (run.exitCode !== 0) throw new Error(`main job (${v}) failed: run.js exited ${run.exitCode}; main-job.json not updated for it`);
    result.runs[v] = run;
    writeResult('main-job', result);
    log(`main job (${v}): ${run.wallSeconds} s wall${run.pass === null ? '' : `, target <= ${TARGETS.mainJobSeconds} s: ${run.pass ? 'pass' : 'FAIL'}`} (load ${run.measured.loadStart} -> ${run.measured.loadEnd})`);
  }
  return result;
}
