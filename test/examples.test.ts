/**
 * examples/*.ts run as a user runs them from a checkout (`node scripts/run-example.mjs examples/X.ts`), and
 * each says what it claims: the model trained, the pruned widths, the ONNX round trip, Intra-Fusion ahead.
 * (test/installed-package.test.ts type-checks the same files against the packed package's declarations.)
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedDir } from './helpers.js';

function runExample(name: string, args: string[] = []): string {
  const r = spawnSync(process.execPath, ['scripts/run-example.mjs', `examples/${name}`, ...args], { encoding: 'utf8', timeout: 600_000 });
  const out = `${r.stdout}${r.stderr}`;
  expect(r.status, out).toBe(0);
  expect(out).not.toMatch(/DeprecationWarning/);
  return r.stdout;
}

describe('examples', () => {
  it('are each under 60 lines, and the four the README lists', () => {
    const files = readdirSync('examples').filter((f) => f.endsWith('.ts')).sort();
    expect(files).toEqual(['custom-module.ts', 'prune-builtin.ts', 'prune-onnx.ts', 'train-engine.ts']);
    for (const f of files) expect(readFileSync(join('examples', f), 'utf8').trimEnd().split('\n').length, f).toBeLessThan(60);
  });

  it('train-engine: an MLP learns the two spirals with autograd and SGD', () => {
    const out = runExample('train-engine.ts', ['300']);
    const losses = [...out.matchAll(/loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
    expect(losses).toHaveLength(6);
    expect(losses[5]).toBeLessThan(losses[0] / 2);
    expect(Number(/training accuracy: ([\d.]+)%/.exec(out)![1])).toBeGreaterThan(90);
  }, 600_000);

  it('custom-module: a user-defined CNN is grouped, halved in every group, and still runs', () => {
    const out = runExample('custom-module.ts');
    expect(out).toMatch(/^2 prunable groups/m);
    expect(out).toContain('"conv1":"3->16","bn1":"16->16","dw":"16->16","bn2":"16->16","conv3":"16->24","fc":"96->100"');
    expect(out).toContain('output shape: 2x100');
  }, 600_000);

  it('prune-onnx: an ONNX model pruned, written, and read back to the same logits', () => {
    const out = runExample('prune-onnx.ts');
    const [, before, after] = /parameters (\d+) -> (\d+)/.exec(out)!.map(Number);
    expect(after).toBeLessThan(before * 0.6);
    expect(Number(/largest logit difference (\S+)/.exec(out)![1])).toBeLessThan(1e-4);
    rmSync(join(tmpdir(), 'vgg11_bn-example.onnx'), { force: true });
    rmSync(join(tmpdir(), 'vgg11_bn-example_pruned.onnx'), { force: true });
  }, 600_000);

  it('prune-builtin: Intra-Fusion keeps the shipped VGG11-BN far ahead of default pruning at 70%', () => {
    const out = runExample('prune-builtin.ts', ['models/vgg11_bn_cifar10.fp16.safetensors', join(sharedDir(), 'data/cifar10'), '100']);
    const acc = (label: string) => Number(new RegExp(`^${label}: ([\\d.]+)% on 100 test images`, 'm').exec(out)![1]);
    expect(acc('original')).toBeGreaterThan(85);
    expect(acc('Intra-Fusion')).toBeGreaterThan(acc('default pruning') + 10);
  }, 600_000);
});
