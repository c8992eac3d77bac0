/**
 * Bad input the CLI and the file readers must refuse with one line that names the flag, file, tensor or
 * layer, before any long work: flags, --out, checkpoint and safetensors corruption, the installed bin
 * names, and the demo server's HTTP surface. None of these needs the data set; most need no GPU.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../src/cli/args.js';
import { prepareOutDir } from '../src/cli/results.js';
import { TEMP_HOST } from '../src/nn/checkpoint-node.js';
import { checkRunArgs } from '../src/cli/run-flags.js';
import { main as demoMain, startDemoServer } from '../src/demo/server.js';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { loadStateDict, modelFromStateDict, modelToSafetensors } from '../src/nn/checkpoint.js';
import { Conv2d, Flatten, Linear, ReLU, Sequential, AdaptiveAvgPool2d } from '../src/nn/layers.js';
import { createModel } from '../src/nn/models.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { decodeModel, encodeModel } from '../src/onnx/proto.js';
import * as ag from '../src/tensor/autograd.js';
import { fromArray, tidy } from '../src/tensor/tensor.js';
import { main as runMain } from '../src/run.js';
import { parseSafetensors, serializeSafetensors, SafetensorsError } from '../src/tensor/safetensors.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu } from './helpers.js';

const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  destroyRuntime();
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe('flags', () => {
  const spec = { ids: { kind: 'ints', help: '' }, shape: { kind: 'ints', help: '', repeats: true }, on: { kind: 'boolean', help: '', default: true }, gs: { kind: 'pairs', help: '' } } as const;
  it('switches take true/false, yes/no, on/off, 1/0 and nothing else', () => {
    for (const [v, want] of [['off', false], ['no', false], ['0', false], ['FALSE', false], ['on', true], ['yes', true], ['1', true], ['true', true]] as const) {
      expect(parseArgs([`--on=${v}`], spec).on).toBe(want);
    }
    expect(parseArgs(['--on'], spec).on).toBe(true);
    expect(() => parseArgs(['--on=nope'], spec)).toThrow(/--on=nope: a switch takes true or false/);
  });
  it('refuses a repeated list value, a repeated pair key and a flag given twice', () => {
    expect(() => parseArgs(['--ids', '7', '7'], spec)).toThrow(/--ids: 7 is listed twice/);
    expect(parseArgs(['--shape', '3', '8', '8'], spec).shape).toEqual([3, 8, 8]);
    expect(() => parseArgs(['--gs', '1=0.3,1=0.5'], spec)).toThrow(/--gs: key 1 is given twice \(1=0.3 and 1=0.5\)/);
    expect(() => parseArgs(['--gs', '1=0.3', '--gs', '2=0.5'], spec)).toThrow(/--gs is given twice/);
    expect(() => parseArgs(['--ids', '1', '--ids=2'], spec)).toThrow(UsageError);
  });
  it('run.js refuses contradictory and out-of-range settings before it starts', () => {
    const bad: [string[], RegExp][] = [
      [['--group_idxs', '7', '7'], /--group_idxs: 7 is listed twice/],
      [['--sparsities', '0.5', '0.5'], /--sparsities: 0.5 is listed twice/],
      [['--group-sparsity', '1=0.3,1=0.5'], /key 1 is given twice/],
      [['--global=nope'], /--global=nope: a switch takes/],
      [['--save-models=nope'], /--save-models=nope/],
      [['--ot-p', '0.5'], /--ot-p must be at least 1/],
      [['--ot-solver', 'sinkhorn', '--ot-reg', '0'], /--ot-reg must be positive/],
      [['--ot-reg', '0.1'], /--ot-reg is the Sinkhorn regulariser: it needs --ot-solver sinkhorn/],
      [['--global', '--group-sparsity', '1=0.5'], /--group-sparsity and --global cannot be used together/],
      [['--whole-network', '--group_idxs', '1'], /--whole-network and --group_idxs cannot be used together/],
      [['--max-group-sparsity', '0.5'], /--max-group-sparsity applies to --global only/],
      [['--batch-groups'], /--batch-groups applies to --whole-network/],
      [['--fusion', 'none', '--ot-solver', 'sinkhorn'], /--ot-solver sets Intra-Fusion's transport, but --fusion none/],
      [['--model', 'x.onnx', '--checkpoint', 'y.safetensors'], /--model and --checkpoint cannot be used together/],
      [['--round-to', '0'], /--round-to must be positive/],
    ];
    for (const [argv, message] of bad) expect(() => checkRunArgs(argv), argv.join(' ')).toThrow(message);
    expect(checkRunArgs(['--global=off', '--save-models=no'])).toMatchObject({ global: false, saveModels: false, mode: 'group' });
  });
});

describe('--out and temporary files', () => {
  it('a file or an unreachable --out fails before the GPU and the data are touched', async () => {
    const dir = tempDir('if-out-');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    // No --data-dir: the data set is never looked at, so only the early check can produce these.
    await expect(runMain(['--out', file, '--checkpoint', file])).rejects.toThrow(`--out ${file} is a file, not a folder.`);
    await expect(runMain(['--out', join(file, 'sub'), '--checkpoint', file])).rejects.toThrow(new RegExp(`--out ${join(file, 'sub')}: cannot write there \\(ENOTDIR\\)`));
    await expect(runMain(['--checkpoint', join(dir, 'none.safetensors'), '--out', dir, '--data-dir', join(dir, 'no-data')])).rejects.toThrow(/none\.safetensors does not exist/);
    await expect(runMain(['--model', join(dir, 'none.onnx'), '--out', dir, '--data-dir', join(dir, 'no-data')])).rejects.toThrow(/ONNX model not found: .*none\.onnx \(--model\)/);
    await expect(runMain(['--resume', join(dir, 'none.json'), '--checkpoint', file, '--out', dir])).rejects.toThrow(/--resume .*none\.json does not exist/);
    writeFileSync(join(dir, 'bad.json'), '{"not": "a list"}');
    await expect(runMain(['--resume', join(dir, 'bad.json'), '--checkpoint', file, '--out', dir])).rejects.toThrow(/bad\.json is not a results file written by run\.js/);
  });

  it('removes temporary files of this machine\'s dead runs, keeps live ones and other machines\' (a shared --out)', () => {
    const dir = tempDir('if-tmp-');
    mkdirSync(join(dir, 'pruned_models'), { recursive: true });
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const dead = join(dir, 'pruned_models', `m.safetensors.tmp-${TEMP_HOST}-999999999-1`);
    const deadOld = join(dir, 'pruned_models', 'm.safetensors.tmp-999999999-1'); // named before the host was
    const live = join(dir, 'logs', `r.json.tmp-${TEMP_HOST}-${process.pid}-1`);
    // Another machine's (a shard writing to the same shared folder): its process is not ours to judge.
    const elsewhere = join(dir, 'logs', 'r.json.tmp-other-host.example-999999999-1');
    for (const f of [dead, deadOld, live, elsewhere]) writeFileSync(f, 'x');
    const lines: string[] = [];
    prepareOutDir(dir, (l) => lines.push(l));
    expect([dead, deadOld, live, elsewhere].map((f) => existsSync(f))).toEqual([false, false, true, true]);
    expect(lines.sort()).toEqual([`removed ${dead} (left by an interrupted run)`, `removed ${deadOld} (left by an interrupted run)`].sort());
  });
});

describe('the installed commands', () => {
  const dir = tempDir('if-bin-');
  const bundles = { 'intra-fusion': resolve('dist/harden-bin-run.mjs'), 'intra-fusion-compare': resolve('dist/harden-bin-compare.mjs') };
  beforeAll(async () => {
    for (const [name, [entry, out]] of Object.entries({ 'intra-fusion': ['src/run.ts', bundles['intra-fusion']], 'intra-fusion-compare': ['src/compare.ts', bundles['intra-fusion-compare']] })) {
      await build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm', loader: { '.wgsl': 'text' }, external: ['webgpu', 'esbuild'], banner: { js: '#!/usr/bin/env node' }, logLevel: 'silent' });
      chmodSync(out, 0o755);
      // As npm links a package's bins: node_modules/.bin/<name> -> ../<package>/dist/<file>.
      symlinkSync(out, join(dir, name));
    }
  });
  afterAll(() => Object.values(bundles).forEach((f) => rmSync(f, { force: true })));

  const runBin = (name: string, args: string[], env: Record<string, string> = {}) => new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(join(dir, name), args, { env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}`, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => done({ code, stdout, stderr }));
  });

  it('intra-fusion and intra-fusion-compare run under their linked names', async () => {
    const help = await runBin('intra-fusion', ['--help']);
    expect(help.code).toBe(0);
    // The usage line names the command as invoked: the link's name, or node and the script run directly.
    expect(help.stdout).toMatch(/^Usage: intra-fusion \[flags\]\n/);
    expect((await runBin('intra-fusion-compare', ['--help'])).stdout).toMatch(/^Usage: intra-fusion-compare \[flags\]\n/);
    const direct = spawnSync(process.execPath, [relative(process.cwd(), bundles['intra-fusion']), '--help'], { encoding: 'utf8' });
    expect(direct.stdout).toMatch(/^Usage: node dist\/harden-bin-run\.mjs \[flags\]\n/);
    const bogus = await runBin('intra-fusion', ['--bogus-flag']);
    expect([bogus.code, bogus.stderr.trim()]).toEqual([2, 'error: Unknown flag --bogus-flag (see --help).']);
    const compare = await runBin('intra-fusion-compare', ['--model_dir', join(dir, 'absent'), '--latency=false']);
    expect(compare.code).toBe(2);
    expect(compare.stderr.trim()).toBe(`error: --model_dir ${join(dir, 'absent')} does not exist.`);
  }, 120_000);

  it('print no Dawn limit notices: a run that gets as far as the GPU has only its own line on stderr', async () => {
    const empty = tempDir('if-nodata-');
    const r = await runBin('intra-fusion', ['--data-dir', empty, '--out', empty, '--checkpoint', bundles['intra-fusion']], { INTRA_FUSION_CIFAR10_URL: 'http://127.0.0.1:9/none.tar.gz' });
    expect(r.stdout).toMatch(/^adapter: /); // the adapter was requested, which is when Dawn prints them
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l.length)).toEqual([expect.stringMatching(/^error: CIFAR-10 is not in /)]);
  }, 120_000);
});

describe('checkpoints and safetensors files', () => {
  /** A header-only safetensors file with `header` as its JSON and `data` bytes after it. */
  const file = (header: unknown, data = 16) => {
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + data);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  const t = (offsets: unknown, shape: unknown = [2]) => ({ dtype: 'F32', shape, data_offsets: offsets });

  it('refuses corrupt headers with one line naming the file and the tensor', () => {
    const cases: [unknown, RegExp][] = [
      [null, /^bad\.safetensors: the header is null, not a map of tensors\.$/],
      [[1, 2], /the header is a list/],
      [{ w: t([-8, 0]) }, /tensor "w" has bad data_offsets \[-8,0\]/],
      [{ w: t([0, 8]), v: t([4, 12]) }, /tensor "v" overlaps tensor "w" in the data section/],
      [{ w: t([8, 24], [4]) }, /tensor "w" has data_offsets \[8, 24\] beyond the file's 16 data bytes/],
      [{ w: { dtype: 'F32', data_offsets: [0, 8] } }, /tensor "w" has no valid shape \(undefined\)/],
      [{ w: t([0, 8], [-2]) }, /tensor "w" has no valid shape/],
      [{ w: t([8, 0], [0]) }, /tensor "w" has data_offsets \[8, 0\], which do not hold shape/],
      [{ w: null }, /tensor "w" is not a \{dtype, shape, data_offsets\} entry/],
      [{ w: { dtype: 'toString', shape: [2], data_offsets: [0, 8] } }, /tensor "w" has unsupported dtype toString/],
      [{ __metadata__: { epochs: 3 }, w: t([0, 8]) }, /metadata "epochs" is a number; safetensors metadata values are strings/],
      [{ __metadata__: null }, /__metadata__ is not a map of strings/],
    ];
    for (const [header, message] of cases) {
      const run = () => parseSafetensors(file(header), 'bad.safetensors');
      expect(run, JSON.stringify(header)).toThrow(SafetensorsError);
      expect(run, JSON.stringify(header)).toThrow(message);
    }
    expect(parseSafetensors(file({ w: t([0, 8]), v: t([8, 16]) }), 'ok').tensors.size).toBe(2);
  });

  it('refuses non-finite weights (naming the tensor) unless allowed, and absurd layer_widths', async () => {
    await gpu();
    const model = createModel('vgg11_bn');
    const bytes = await modelToSafetensors(model, {});
    model.dispose();
    const good = parseSafetensors(bytes, 'vgg.safetensors');
    const values = good.tensors.get('features.4.weight')!.values;
    values[5] = NaN;
    expect(() => modelFromStateDict('vgg11_bn', good, 'vgg.safetensors')).toThrow('vgg.safetensors: tensor "features.4.weight" holds NaN at index 5 (non-finite weights; allowNonFinite / --allow-non-finite loads them anyway).');
    modelFromStateDict('vgg11_bn', good, 'vgg.safetensors', { allowNonFinite: true }).dispose();
    values[5] = 0;
    const widths = JSON.parse(good.metadata.layer_widths) as Record<string, { out: number }>;
    for (const [bad, message] of [
      ['null', /the layer_widths metadata is not a map of layers/],
      [JSON.stringify({ ...widths, 'features.0': null }), /layer_widths of "features\.0" is not a \{kind, in, out\} entry/],
      [JSON.stringify({ ...widths, 'features.0': { ...widths['features.0'], out: 1e9 } }), /layer_widths of "features\.0" is 3 in, 1000000000 out; the architecture has at most 3 in, 64 out/],
    ] as const) {
      expect(() => modelFromStateDict('vgg11_bn', { ...good, metadata: { ...good.metadata, layer_widths: bad } }, 'vgg.safetensors')).toThrow(message);
    }
  }, 120_000);
});

describe('shape mismatches', () => {
  it('a checkpoint whose tensors do not fit together names the file and the layer', async () => {
    await gpu();
    const dir = tempDir('if-shape-');
    const model = createModel('vgg11_bn');
    const file = parseSafetensors(await modelToSafetensors(model, {}), 'vgg');
    model.dispose();
    // features.0 cut to 32 filters, its BN and the next conv left at 64: each tensor is valid, the net is not.
    const tensors = new Map([...file.tensors].map(([k, t]) => [k, { shape: t.shape, values: t.values }]));
    tensors.set('features.0.weight', { shape: [32, 3, 3, 3], values: file.tensors.get('features.0.weight')!.values.slice(0, 32 * 27) });
    tensors.set('features.0.bias', { shape: [32], values: file.tensors.get('features.0.bias')!.values.slice(0, 32) });
    const bad = join(dir, 'bad.safetensors');
    writeFileSync(bad, serializeSafetensors(tensors, { model: 'vgg11_bn' }));
    const data = join(dir, 'data');
    mkdirSync(data);
    for (const f of [1, 2, 3, 4, 5].map((b) => `data_batch_${b}.bin`).concat('test_batch.bin')) writeFileSync(join(data, f), new Uint8Array(2 * 3073));
    await expect(runMain(['--checkpoint', bad, '--data-dir', data, '--out', dir, '--group_idxs', '1', '--sparsities', '0.5']))
      .rejects.toThrow(new RegExp(`^${bad}: the model does not run at the file's shapes: layer "features\\.1" \\(BatchNorm2d, input \\[1,32,32,32\\]\\): `));
  }, 120_000);
});

describe('the demo server', () => {
  const dir = tempDir('if-demo-');
  const checkpoint = join(dir, 'model.safetensors');
  const data = join(dir, 'data');
  let url = '';
  let close = async () => {};
  beforeAll(async () => {
    writeFileSync(checkpoint, serializeSafetensors(new Map([['w', { shape: [4], values: Float32Array.of(1, 2, 3, 4) }]])));
    mkdirSync(data);
    writeFileSync(join(data, 'test_batch.bin'), new Uint8Array(3073));
    const s = await startDemoServer({ port: 0, checkpoint, dataDir: data });
    url = s.url;
    close = () => new Promise((done) => s.server.close(() => done()));
  }, 120_000);
  afterAll(() => close());

  const get = (path: string, o: { method?: string; host?: string } = {}) => new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((done, fail) => {
    const u = new URL(path, url);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: o.method ?? 'GET', headers: o.host ? { host: o.host } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', fail);
    req.end();
  });

  it('answers loopback GET and HEAD with types and nosniff; refuses other hosts and methods', async () => {
    const page = await get('/');
    expect([page.status, page.headers['content-type'], page.headers['x-content-type-options']]).toEqual([200, 'text/html; charset=utf-8', 'nosniff']);
    expect((await get('/demo.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await get('/defaults.json')).headers['content-type']).toBe('application/json');
    const ckpt = await get('/default/checkpoint.safetensors');
    expect([ckpt.status, ckpt.headers['content-type'], ckpt.body.length]).toEqual([200, 'application/octet-stream', ckpt.body.length]);
    expect(parseSafetensors(ckpt.body).tensors.get('w')!.values).toEqual(Float32Array.of(1, 2, 3, 4));
    const head = await get('/default/test_batch.bin', { method: 'HEAD' });
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, '3073', 0]);
    expect((await get('/', { host: 'localhost:1234' })).status).toBe(200);
    expect((await get('/', { host: 'evil.example:80' })).status).toBe(403);
    expect((await get('/default/checkpoint.safetensors', { host: 'rebind.attacker.test' })).status).toBe(403);
    for (const method of ['POST', 'DELETE', 'PUT']) {
      const r = await get('/', { method });
      expect([r.status, r.headers.allow]).toEqual([405, 'GET, HEAD']);
    }
  });

  it('a served file that disappears is a 500, and the server keeps serving', async () => {
    rmSync(checkpoint);
    const r = await get('/default/checkpoint.safetensors');
    expect([r.status, r.body.toString()]).toEqual([500, 'cannot read model.safetensors: ENOENT\n']);
    expect((await get('/')).status).toBe(200);
  });

  it('a busy port and an unknown flag are one-line errors', async () => {
    const port = new URL(url).port;
    await expect(demoMain(['--port', port])).rejects.toThrow(`--port ${port}: 127.0.0.1:${port} is already in use (pass another --port, or 0 for any free one).`);
    await expect(demoMain(['--port', port])).rejects.toThrow(UsageError);
    await expect(demoMain(['--bogus'])).rejects.toThrow('Unknown flag --bogus (see --help).');
  }, 120_000);
});

describe('ONNX files, labels and data sets', () => {
  /** A small CNN as ONNX bytes, with `poison` (if given) written into one weight first. */
  async function smallOnnx(poison?: number): Promise<Uint8Array> {
    await gpu();
    const net = new Sequential(new Conv2d(3, 4, 3, 1, 1, true), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(4, 10));
    if (poison !== undefined) {
      const file = parseSafetensors(await modelToSafetensors(net, {}), 'net');
      file.tensors.get('4.weight')!.values[3] = poison;
      loadStateDict(net, file, 'net', { allowNonFinite: true });
    }
    const bytes = await exportOnnx(net, { inputShape: [3, 8, 8] });
    net.dispose();
    return bytes;
  }

  it('an ONNX graph output that no node produces, and non-finite initializers, are one-line DataErrors', async () => {
    const model = decodeModel(await smallOnnx());
    model.graph!.output![0].name = 'nobody';
    expect(() => importOnnx(encodeModel(model), 'cut.onnx')).toThrow('cut.onnx: the graph output "nobody" is not produced by any node (a damaged or hand-edited file?).');
    const nan = await smallOnnx(NaN);
    expect(() => importOnnx(nan, 'nan.onnx')).toThrow('nan.onnx: tensor "4.weight" holds NaN at index 3 (non-finite weights; allowNonFinite / --allow-non-finite loads them anyway).');
    importOnnx(nan, 'nan.onnx', { allowNonFinite: true }).dispose();
    const inf = await smallOnnx(-Infinity);
    expect(() => importOnnx(inf, 'inf.onnx')).toThrow(/tensor "4\.weight" holds -Infinity/);
  }, 120_000);

  it('crossEntropy refuses a label outside the classes, naming the row', async () => {
    await gpu();
    const logits = fromArray(Float32Array.from({ length: 6 }, (_, i) => i / 6), [2, 3]);
    expect(() => ag.crossEntropy(logits, [0, 3])).toThrow('crossEntropy: label 3 of row 1 is not a class id in 0..2.');
    expect(() => ag.crossEntropy(logits, [-1, 0])).toThrow(/label -1 of row 0/);
    expect(() => ag.crossEntropy(logits, [0.5, 0])).toThrow(/label 0.5 of row 0/);
    expect((await tidy(() => ag.crossEntropy(logits, [0, 2]).keep()).dataAndDispose())[0]).toBeGreaterThan(0);
    logits.dispose();
  });

  it('CIFAR-10 files with records missing are refused, naming the file', async () => {
    const dir = tempDir('if-cifar-');
    const records = (n: number) => new Uint8Array(n * 3073);
    for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), records(b === 3 ? 3 : 4));
    writeFileSync(join(dir, 'test_batch.bin'), records(4));
    await expect(loadCifar10(dir, { download: false })).rejects.toThrow(`${join(dir, 'data_batch_3.bin')} has 3 records, the other batch files up to 4: records are missing (a truncated copy?).`);
    writeFileSync(join(dir, 'data_batch_3.bin'), records(4));
    expect((await loadCifar10(dir, { download: false })).train.count).toBe(20);
  });
});
