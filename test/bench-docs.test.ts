/**
 * The README's bench tables are generated from bench/results/*.json: this fails when they differ (a new
 * measurement not put in the README, or a hand edit). `npm run docs:bench` (UPDATE_DOCS=1) rewrites them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readBenchResults, targetsTable, withBenchTables } from '../bench/readme-tables.js';
import { phasesFromLog } from '../bench/main-job.js';
import type { Measured } from '../bench/results.js';

describe('README bench tables', () => {
  it('equal the tables generated from bench/results/*.json', () => {
    const readme = readFileSync('README.md', 'utf8');
    const generated = withBenchTables(readme, readBenchResults());
    if (process.env.UPDATE_DOCS === '1') writeFileSync('README.md', generated);
    else expect(readme, 'README bench tables are stale: run npm run docs:bench').toBe(generated);
  });

  it('says a target is not met when one kernel row is below it', () => {
    const measured = { date: '2026-12-01T00:00:00Z', loadStart: 1, loadEnd: 1 } as Measured;
    const row = (ratio: number) => ({ op: 'matmul', shape: `${ratio}`, gflop: 1, oursMs: 1, tfjsMs: ratio, oursGflops: ratio, tfjsGflops: 1, ratio, oursTrialsMs: [], tfjsTrialsMs: [] });
    const table = (ratios: number[]) => targetsTable({ kernels: { measured, trials: 1, targetRatio: 3, tfjs: 'tfjs', rows: ratios.map(row) }, models: null, prune: null, mainJob: null });
    expect(table([3.5, 4]).split('\n')[3]).toMatch(/lowest 3\.50x .*\*\*met\*\*/);
    expect(table([3.5, 2.99]).split('\n')[3]).toMatch(/lowest 2\.99x .*1 of 2 rows .*\*\*not met\*\*/);
  });

  it('splits a run.js log into phases by when its lines arrive', () => {
    const lines = [
      [2, 'adapter: x'], [10, 'evaluating the original vgg11_bn on 1000 samples'], [40, 'original: 89% accuracy (top-5 99.9%), 9231114 parameters'],
      [41, '  pruned group 1 (512 channels): kept 256 of 512'], [70, 'default pruning group 1 sparsity 0.5: 80.1% accuracy, 1 parameters'],
      [100, 'Intra-Fusion group 1 sparsity 0.5: 86.2% accuracy, 1 parameters'], [101, 'results: x.json'],
    ].map(([t, line]) => ({ t: t as number, line: line as string }));
    expect(phasesFromLog(lines, 103)).toEqual([
      { phase: 'setup (adapter, data, checkpoint)', seconds: 10 }, { phase: 'original: evaluate', seconds: 30 },
      { phase: 'default pruning group 1 sparsity 0.5: prune, evaluate, save', seconds: 30 },
      { phase: 'Intra-Fusion group 1 sparsity 0.5: prune, evaluate, save', seconds: 30 }, { phase: 'summary and exit', seconds: 3 },
    ]);
  });
});
