/**
 * The package as a user gets it: `npm pack`, the tarball installed into an empty folder (dependencies from
 * the npm cache when it has them, optional ones left out), then the installed bins, a tiny prune through
 * `npx intra-fusion`, both entries imported in Node, a browser bundle with esbuild, and a TypeScript
 * consumer type-checked against the shipped declarations (wrong argument types must fail).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve('.');
const work = mkdtempSync(join(tmpdir(), 'if-installed-'));
const app = join(work, 'app');
let packed: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };

const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** Runs a command in the app folder; stdout and stderr together, with the exit code. */
function inApp(command: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(command, args, { cwd: app, encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  // prepack builds the release bundles and the declarations; lifecycle output goes to stderr, the JSON to stdout.
  [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', work], root));
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const typesNode = JSON.parse(readFileSync('node_modules/@types/node/package.json', 'utf8')).version as string;
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', join(work, packed.filename), `@types/node@${typesNode}`], app);
}, 600_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the packed tarball', () => {
  it('holds the bundles, the declarations, the shipped checkpoint and the docs, and nothing else', () => {
    const files = packed.files.map((f) => f.path).sort();
    const allowed = /^(package\.json|README\.md|CHANGELOG\.md|LICENSE(\.md)?|dist\/(index|browser|run|compare)\.js|dist\/types\/.*\.d\.ts|models\/vgg11_bn_cifar10\.fp16\.safetensors)$/;
    expect(files.filter((f) => !allowed.test(f))).toEqual([]);
    for (const f of ['dist/index.js', 'dist/browser.js', 'dist/run.js', 'dist/compare.js', 'dist/types/index.d.ts', 'dist/types/browser.d.ts', 'models/vgg11_bn_cifar10.fp16.safetensors']) {
      expect(files, f).toContain(f);
    }
    // The release bundles point at no source map (none is shipped).
    expect(readFileSync(join(app, 'node_modules/intra-fusion-webgpu/dist/run.js'), 'utf8')).not.toMatch(/sourceMappingURL/);
  });
});

describe('the installed package', () => {
  it('runs its bins: npx intra-fusion --help and intra-fusion-compare --help', () => {
    const run = inApp('npx', ['--no-install', 'intra-fusion', '--help']);
    expect(run.code, run.out).toBe(0);
    // Named as invoked: the bin's name, not node dist/run.js.
    expect(run.out).toMatch(/^Usage: intra-fusion \[flags\]\n\nPrune with default structured pruning and with Intra-Fusion/m);
    expect(run.out).toMatch(/--model-name/);
    const compare = inApp('npx', ['--no-install', 'intra-fusion-compare', '--help']);
    expect(compare.code, compare.out).toBe(0);
    expect(compare.out).toMatch(/^Usage: intra-fusion-compare \[flags\]\n\nCompare pruned checkpoints/m);
  });

  it('without onnxruntime-node (an optional peer, not installed): --eval-backend onnxruntime is one line saying how to install it', () => {
    const r = inApp('npx', ['--no-install', 'intra-fusion', '--eval-backend', 'onnxruntime']);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toMatch(/^error: Evaluating with onnxruntime needs the onnxruntime-node package, which is not installed: run `npm install onnxruntime-node`/m);
  });

  it('prunes through the installed bin with the shipped checkpoint on a tiny CIFAR-10 in the official layout', () => {
    const data = join(work, 'cifar10');
    mkdirSync(data);
    const record = (label: number, seed: number) => Uint8Array.from({ length: 3073 }, (_, i) => (i === 0 ? label : (i * 13 + seed * 71) % 256));
    const batch = (offset: number) => Buffer.concat(Array.from({ length: 8 }, (_, r) => record((r + offset) % 10, r + offset * 8)));
    for (let b = 1; b <= 5; b++) writeFileSync(join(data, `data_batch_${b}.bin`), batch(b));
    writeFileSync(join(data, 'test_batch.bin'), batch(0));
    const out = join(work, 'run');
    const r = inApp('npx', ['--no-install', 'intra-fusion', '--data-dir', data, '--group_idxs', '6', '--sparsities', '0.5', '--fusion', 'none',
      '--batch-size', '8', '--save-models=false', '--out', out]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`checkpoint: ${join(app, 'node_modules/intra-fusion-webgpu/models/vgg11_bn_cifar10.fp16.safetensors')}`);
    const logs = readdirSync(join(out, 'logs'));
    const [result] = JSON.parse(readFileSync(join(out, 'logs', logs[0]), 'utf8'));
    expect(result.original_model.parameters).toBe(9_231_114);
    expect(result.default_pruning.parameters).toBeLessThan(9_231_114);
    expect(result.eval_samples).toBe(8);
  }, 300_000);

  it('imports both entries in Node and runs the engine on the installed Dawn', () => {
    const script = `
      import * as node from 'intra-fusion-webgpu';
      import * as browser from 'intra-fusion-webgpu/browser';
      await node.initRuntime(0);
      const y = node.autograd.relu(node.fromArray([-1, 2, -3, 4], [2, 2]));
      console.log(JSON.stringify({ y: Array.from(await y.data()), prune: typeof node.prune, nodeCifar: typeof node.loadCifar10,
        browserPrune: typeof browser.prune, browserCifar: typeof browser.loadCifar10, url: import.meta.resolve('intra-fusion-webgpu') }));
      node.destroyRuntime();`;
    const r = inApp(process.execPath, ['--input-type=module', '-e', script]);
    expect(r.code, r.out).toBe(0);
    const line = JSON.parse(r.out.split('\n').find((l) => l.startsWith('{'))!);
    expect(line).toMatchObject({ y: [0, 2, 0, 4], prune: 'function', nodeCifar: 'function', browserPrune: 'function', browserCifar: 'undefined' });
    expect(line.url).toMatch(/node_modules\/intra-fusion-webgpu\/dist\/index\.js$/);
  }, 120_000);

  it('bundles for the browser with esbuild: the browser entry, no Node built-in', async () => {
    const r = await build({
      stdin: { contents: "import { prune, createModel, exportOnnx } from 'intra-fusion-webgpu'; console.log(prune, createModel, exportOnnx);", resolveDir: app },
      absWorkingDir: app, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent',
    });
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs).toContain('node_modules/intra-fusion-webgpu/dist/browser.js');
    expect(inputs.filter((f) => /dist\/index\.js$|^node:|webgpu\/index\.js/.test(f))).toEqual([]);
    expect(r.outputFiles[0].text).not.toMatch(/from\s*["']node:|require\(["']node:/);
  });

  it('type-checks a TypeScript consumer against the shipped declarations; wrong argument types fail', () => {
    cpSync(join(root, 'test/consumer'), app, { recursive: true });
    cpSync(join(root, 'examples'), join(app, 'examples'), { recursive: true });
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    // Strictly: our declarations themselves are checked too (skipLibCheck off; @webgpu/types needs the DOM lib).
    const strict = inApp(process.execPath, [tsc, '-p', 'tsconfig.json', '--skipLibCheck', 'false', '--lib', 'ES2022,DOM']);
    expect(strict.out).toBe('');
    expect(strict.code).toBe(0);
    // The @ts-expect-error lines are what make it fail when a type is wrong or missing: without them, errors.
    writeFileSync(join(app, 'node-entry.ts'), readFileSync(join(app, 'node-entry.ts'), 'utf8').replace(/\/\/ @ts-expect-error.*\n/g, ''));
    const r = inApp(process.execPath, [tsc, '-p', 'tsconfig.json']);
    expect(r.code).not.toBe(0);
    expect(r.out.match(/node-entry\.ts\(\d+,\d+\): error/g)?.length).toBe(6);
  }, 300_000);
});
