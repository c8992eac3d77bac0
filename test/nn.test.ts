/** Models, CIFAR-10 loading, checkpoints, metrics and the trainer (issue: VGG11-BN and ResNet18 on CIFAR-10). */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from '../src/nn/checkpoint-node.js';
import { CIFAR10_STATS, makeBatch, parseCifarBatches, parseNormalization, subset, type Cifar10Split } from '../src/data/cifar10.js';
import { loadCifar10, untar } from '../src/data/cifar10-node.js';
import { setInitSeed } from '../src/nn/init.js';
import { complexity, evaluate } from '../src/nn/metrics.js';
import { createModel } from '../src/nn/models.js';
import { learningRate, train } from '../src/nn/trainer.js';
import { VGG } from '../src/nn/vgg.js';
import { noGrad } from '../src/tensor/autograd.js';
import { parseSafetensors } from '../src/tensor/safetensors.js';
import { destroyRuntime, fromArray, tidy } from '../src/tensor/tensor.js';
import { expectClose, gpu, sharedDir } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

/** Temporary folders made here, removed after the file's tests. */
const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
afterAll(() => temps.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const dataDir = () => join(sharedDir(), 'data/cifar10');
const checkpointPath = () => join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors');
let cifar: Awaited<ReturnType<typeof loadCifar10>>;
const data = async () => (cifar ??= await loadCifar10(dataDir(), { download: false }));

/** A small VGG (same code path, five pools down to 1x1) so training tests run quickly on lavapipe. */
const tinyVgg = () => new VGG([8, 'M', 16, 'M', 32, 'M', 32, 'M', 32, 'M'], 10);

describe('models', () => {
  it('VGG11-BN and ResNet18 have the reference parameter counts and FLOPs', () => {
    const vgg = createModel('vgg11_bn');
    const resnet = createModel('resnet18');
    expect(vgg.parameterCount()).toBe(9_231_114);
    expect(resnet.parameterCount()).toBe(11_178_762);
    // 2 x MACs of conv and linear layers for one 32x32 image.
    expect(complexity(vgg)).toEqual({ parameters: 9_231_114, macs: 152_769_536, flops: 305_539_072 });
    expect(complexity(resnet).macs).toBe(555_422_720);
    vgg.dispose();
    resnet.dispose();
    // @ts-expect-error not a built-in name (the types refuse it; a JavaScript caller gets the error)
    expect(() => createModel('alexnet')).toThrow(/Unknown model "alexnet"; choose one of: vgg11_bn, resnet18, vgg11, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn, resnet34, resnet50\./);
  });

  it('uses PyTorch state_dict names', () => {
    const vgg = createModel('vgg11_bn');
    const file = parseSafetensors(readFileSync(checkpointPath()));
    const torchNames = [...file.tensors.keys()].filter((n) => !n.endsWith('num_batches_tracked'));
    expect(vgg.stateTensors().map(([n]) => n)).toEqual(torchNames);
    vgg.dispose();
    const resnet = createModel('resnet18');
    const names = resnet.stateTensors().map(([n]) => n);
    for (const n of ['conv1.weight', 'bn1.running_var', 'layer1.0.conv2.bias', 'layer2.0.shortcut.0.weight', 'layer2.0.shortcut.1.running_mean', 'layer4.1.bn2.bias', 'linear.weight']) {
      expect(names).toContain(n);
    }
    expect(names).not.toContain('layer1.0.shortcut.0.weight');
    resnet.dispose();
  });

  it('ResNet18 trains a step in train mode and runs in eval mode', async () => {
    const m = createModel('resnet18');
    const x = new Float32Array(2 * 3072).map((_, i) => Math.sin(i));
    const out = tidy(() => m.call(fromArray(x, [2, 3, 32, 32])));
    expect(out.shape).toEqual([2, 10]);
    expect((await out.dataAndDispose()).every(Number.isFinite)).toBe(true);
    m.eval();
    const ev = noGrad(() => tidy(() => m.call(fromArray(x.subarray(0, 3072), [1, 3, 32, 32]))));
    expect((await ev.dataAndDispose()).every(Number.isFinite)).toBe(true);
    m.dispose();
  });
});

describe('CIFAR-10', () => {
  it('loads the binary layout from a directory', async () => {
    const d = await data();
    expect(d.train.count).toBe(50_000);
    expect(d.test.count).toBe(10_000);
    // Labels are exact in the shared copy: the first test labels of the official set.
    expect(Array.from(d.test.labels.subarray(0, 10))).toEqual([3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
  });

  it('rejects malformed files and missing directories with clear errors', async () => {
    expect(() => parseCifarBatches([{ name: 'x.bin', bytes: new Uint8Array(3000) }])).toThrow(/x.bin: 3000 bytes is not a whole number of 3073-byte/);
    const bad = new Uint8Array(3073);
    bad[0] = 12;
    expect(() => parseCifarBatches([{ name: 'y.bin', bytes: bad }])).toThrow(/label 12/);
    await expect(loadCifar10(join(tmpdir(), 'no-such-cifar'), { download: false })).rejects.toThrow(/not found in/);
    expect(() => parseNormalization('1,2', '1,1,1')).toThrow(/three numbers/);
  });

  it('downloads the archive when missing, checks its MD5, and says so clearly when it cannot', async () => {
    // A miniature archive in the official layout, served on localhost.
    const record = (label: number) => Uint8Array.from({ length: 3073 }, (_, i) => (i === 0 ? label : (i * 7 + label) % 256));
    const names = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`).concat('test_batch.bin');
    const entries = names.map((n, i) => ({ name: `cifar-10-batches-bin/${n}`, body: Buffer.concat([record(i % 10), record((i + 1) % 10)]) }));
    const tar = Buffer.concat(entries.flatMap(({ name, body }) => {
      const h = Buffer.alloc(512);
      h.write(name, 0);
      h.write(body.length.toString(8).padStart(11, '0') + '\0', 124);
      h.write('0', 156);
      return [h, body, Buffer.alloc((512 - (body.length % 512)) % 512)];
    }).concat(Buffer.alloc(1024)));
    expect([...untar(tar).keys()]).toEqual(entries.map((e) => e.name));
    const archive = gzipSync(tar);
    const md5 = createHash('md5').update(archive).digest('hex');
    const server = createServer((_req, res) => res.end(archive));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/cifar.tar.gz`;
    try {
      const dir = tempDir('cifar-dl-');
      let progress = 0;
      const d = await loadCifar10(dir, { url, md5, onProgress: (r) => (progress = r) });
      expect(progress).toBe(archive.length);
      expect(d.train.count).toBe(10);
      expect(Array.from(d.test.labels)).toEqual([5, 6]);
      expect(existsSync(join(dir, 'cifar-10-batches-bin', 'test_batch.bin'))).toBe(true);
      await expect(loadCifar10(tempDir('cifar-dl-'), { url, md5: '0'.repeat(32) })).rejects.toThrow(/MD5 .* expected 0{32}: refusing a corrupt download/);
    } finally {
      server.close();
    }
    await expect(loadCifar10(tempDir('cifar-dl-'), { url: 'http://127.0.0.1:9/none.tar.gz' }))
      .rejects.toThrow(/CIFAR-10 is not in .* and downloading it failed: Could not download CIFAR-10/);
  });

  it('normalises and augments (flip, then crop with zero padding 4) as torchvision does', () => {
    const img = Uint8Array.from({ length: 3072 }, (_, i) => (i * 31) % 256);
    const split: Cifar10Split = { images: img, labels: Uint8Array.of(7), count: 1 };
    const n = CIFAR10_STATS;
    const plain = makeBatch(split, [0], { normalization: n });
    expect(plain.y[0]).toBe(7);
    expectClose(plain.x, Array.from(img, (v, i) => (v / 255 - n.mean[Math.floor(i / 1024)]) / n.std[Math.floor(i / 1024)]), 1e-5, 1e-6, 'normalised');
    // Draws: flip (0.2 < 0.5), crop offsets floor(0.9 * 9) - 4 = 4 rows, floor(0.1 * 9) - 4 = -4 columns.
    const draws = [0.2, 0.9, 0.1];
    const aug = makeBatch(split, [0], { normalization: n, augment: true, random: () => draws.shift()! });
    const expected = new Float64Array(3072);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 32; i++) for (let j = 0; j < 32; j++) {
      const sy = i + 4, sx = j - 4; // in the flipped image
      const v = sy < 32 && sx >= 0 ? img[c * 1024 + sy * 32 + (31 - sx)] : 0;
      expected[c * 1024 + i * 32 + j] = (v / 255 - n.mean[c]) / n.std[c];
    }
    expectClose(aug.x, expected, 1e-5, 1e-6, 'augmented');
  });
});

describe('checkpoints', () => {
  it('round-trips through safetensors, atomically, and refuses a checkpoint of another model', async () => {
    setInitSeed(3);
    const a = tinyVgg();
    const dir = tempDir('ckpt-');
    const path = join(dir, 'm.safetensors');
    await saveCheckpoint(a, path, { note: 'test' });
    expect(readdirSync(dir)).toEqual(['m.safetensors']);
    setInitSeed(4);
    const b = tinyVgg();
    expect(loadCheckpoint(b, path).note).toBe('test');
    const x = fromArray(new Float32Array(2 * 3072).map((_, i) => Math.cos(i)), [2, 3, 32, 32]).keep();
    a.eval();
    b.eval();
    const [ya, yb] = await Promise.all(noGrad(() => tidy(() => [a.call(x), b.call(x)])).map((t) => t.dataAndDispose()));
    expect(Array.from(yb)).toEqual(Array.from(ya));
    const file = parseSafetensors(readFileSync(path));
    expect(file.tensors.get('features.1.num_batches_tracked')?.dtype).toBe('I64');
    const resnet = createModel('resnet18');
    expect(() => loadCheckpoint(resnet, path)).toThrow(/does not fit this model .*missing conv1.weight/);
    expect(() => loadCheckpoint(b, join(dir, 'absent.safetensors'))).toThrow(/Checkpoint not found/);
    writeFileSync(join(dir, 'broken.safetensors'), 'nonsense');
    expect(() => loadCheckpoint(b, join(dir, 'broken.safetensors'))).toThrow(/header length|not valid JSON|too short/);
    [a, b, resnet].forEach((m) => m.dispose());
    x.dispose();
  });
});

describe('training', () => {
  it('learning-rate schedules', () => {
    const base = { epochs: 10, lr: 0.1, normalization: CIFAR10_STATS };
    expect(learningRate({ ...base, schedule: 'step', stepSize: 3, gamma: 0.5 }, 7, 0, 5)).toBeCloseTo(0.025);
    expect(learningRate({ ...base, schedule: 'cosine' }, 5, 0, 5)).toBeCloseTo(0.05);
    expect(learningRate({ ...base, schedule: 'onecycle' }, 0, 0, 10)).toBeCloseTo(0.004);
    expect(learningRate({ ...base, schedule: 'onecycle' }, 3, 0, 10)).toBeCloseTo(0.1);
    expect(learningRate({ ...base, schedule: 'onecycle' }, 9, 9, 10)).toBeLessThan(1e-3);
  });

  it('a few hundred SGD steps on a subset drive the loss down clearly', async () => {
    const d = await data();
    setInitSeed(1);
    const model = tinyVgg();
    const lines: string[] = [];
    const history = await train(model, subset(d.train, 512), {
      epochs: 20, batchSize: 32, lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-4, schedule: 'constant',
      normalization: CIFAR10_STATS, augment: false, seed: 1, log: (l) => lines.push(l), logsPerEpoch: 2,
    });
    expect(history).toHaveLength(20); // 20 epochs x 16 steps = 320 steps
    expect(history[0].loss).toBeGreaterThan(1.9);
    expect(history[19].loss).toBeLessThan(0.5 * history[0].loss);
    expect(lines.some((l) => /^epoch 20\/20 step 16\/16 loss \d+\.\d+ lr 0.0500 [\d.]+ img\/s ETA/.test(l))).toBe(true);
    model.dispose();
  });

  it('checkpoints every epoch and a resumed run continues exactly as an uninterrupted one', async () => {
    const d = await data();
    const options = {
      batchSize: 32, lr: 0.05, momentum: 0.9, weightDecay: 5e-4, schedule: 'cosine' as const,
      normalization: CIFAR10_STATS, augment: true, seed: 7, log: () => {},
    };
    const part = subset(d.train, 96);
    setInitSeed(5);
    const straight = tinyVgg();
    await train(straight, part, { ...options, epochs: 3 });
    const dir = tempDir('train-');
    setInitSeed(5);
    const first = tinyVgg();
    // Interrupted during the third epoch: a crash mid-run.
    const crash = (line: string) => {
      if (line.startsWith('epoch 3/3')) throw new Error('power cut');
    };
    await expect(train(first, part, { ...options, epochs: 3, checkpointDir: dir, log: crash, logsPerEpoch: 3 })).rejects.toThrow('power cut');
    expect(readdirSync(dir).sort()).toEqual(['epoch-001.safetensors', 'epoch-002.optim.safetensors', 'epoch-002.safetensors', 'state.json']);
    setInitSeed(99); // the resumed model starts from different weights: everything must come from the checkpoint
    const resumed = tinyVgg();
    const lines: string[] = [];
    const history = await train(resumed, part, { ...options, epochs: 3, checkpointDir: dir, resume: true, log: (l) => lines.push(l) });
    expect(lines[0]).toMatch(/resumed from .*epoch-002.safetensors after epoch 2/);
    expect(history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    for (const [[name, a], [, b]] of straight.stateTensors().map((e, i) => [e, resumed.stateTensors()[i]] as const)) {
      expect(Array.from(await b.data()), name).toEqual(Array.from(await a.data()));
    }
    [straight, first, resumed].forEach((m) => m.dispose());
  });
});

describe('the shared VGG11-BN checkpoint', () => {
  const evalModel = async (limit?: number) => {
    const model = createModel('vgg11_bn');
    const meta = loadCheckpoint(model, checkpointPath());
    const normalization = parseNormalization(meta.normalize_mean, meta.normalize_std)!;
    const r = await evaluate(model, (await data()).test, { normalization, limit });
    model.dispose();
    return { r, meta };
  };

  it('fast subset mode: 500 test images', async () => {
    const { r } = await evalModel(500);
    expect(r.count).toBe(500);
    expect(r.accuracy).toBeGreaterThan(80);
  });

  it('gives its recorded test accuracy (86.95) within 0.1pp on the full test set', async () => {
    const { r, meta } = await evalModel();
    expect(r.count).toBe(10_000);
    expect(Math.abs(r.accuracy - Number(meta.test_accuracy))).toBeLessThanOrEqual(0.1);
  }, 900_000);
});
