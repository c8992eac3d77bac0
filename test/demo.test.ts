/**
 * The browser demo end to end in headless Chromium (SwiftShader WebGPU): the page loads the server's
 * default checkpoint and test data, runs default pruning, Intra-Fusion and folding of a group, and shows the
 * numbers and the transport map (test/artifacts/demo.png); then an ONNX model at 48x48 with an image folder
 * picked in the page, pruned and downloaded (test/artifacts/demo-own-data.png). SKIP_BROWSER=1 skips it.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../src/demo/server.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { destroyRuntime } from '../src/tensor/tensor.js';
import { gpu, sharedDir } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = process.env.SKIP_BROWSER === '1';
let browser: Browser;
let close: () => Promise<void> = async () => {};
let url = '';

beforeAll(async () => {
  if (skip) return;
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install chromium, or set SKIP_BROWSER=1 to skip.`);
  const { server, url: u } = await startDemoServer({
    port: 0, checkpoint: join(sharedDir(), 'models/vgg11_bn_cifar10.safetensors'), dataDir: join(sharedDir(), 'data/cifar10'),
  });
  url = u;
  close = () => new Promise((done) => server.close(() => done()));
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

afterAll(async () => {
  await browser?.close();
  await close();
});

describe.skipIf(skip)('browser demo', () => {
  it('loads, prunes group 2 at 70% with default pruning, Intra-Fusion and folding, and shows the numbers and the transport map', async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1200 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('#status[data-state="ready"]', { state: 'attached', timeout: 120_000 });
    expect(await page.textContent('#loaded')).toMatch(/vgg11_bn.*10000 images/);
    await page.selectOption('#group', '2');
    await page.fill('#sparsity', '0.7');
    await page.fill('#samples', '128');
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { state: 'attached', timeout: 1_200_000 });
    expect(await page.getAttribute('#status', 'data-state'), (await page.textContent('#status')) ?? '').toBe('done');
    const rows = await page.$$eval('#results-table tr[data-method]', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')));
    expect(rows.map((r) => r[0])).toEqual(['Original', 'Default pruning', 'Intra-Fusion', 'Folding']);
    expect(rows[2][3]).toBe('5,921,493');
    const [original, def, fused, folded] = rows.map((r) => Number(r[1]));
    expect(original).toBeGreaterThan(80);
    expect(fused).toBeGreaterThan(def + 5);
    expect(folded).toBeGreaterThan(def);
    // 153 kept x 512 original neurons at 2 px per cell; the detail view enlarges the first 24 kept neurons.
    expect(await page.$eval('#heatmap', (c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height])).toEqual([1024, 306]);
    expect(await page.$eval('#heatdetail', (c) => (c as HTMLCanvasElement).height)).toBe(24 * 12);
    expect(await page.textContent('#heatinfo')).toMatch(/Originals fused per kept neuron: 0: \d+, 1: \d+, 2: \d+/);
    mkdirSync('test/artifacts', { recursive: true });
    await page.screenshot({ path: 'test/artifacts/demo.png', fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 1_500_000);

  it('an ONNX model at 48x48 and an image folder picked in the page: pruned with all three methods, downloaded as ONNX', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'if-demo-'));
    try {
      await gpu();
      const net = new Sequential(new Conv2d(3, 16, 3, 2, 1), new BatchNorm2d(16), new ReLU(), new Conv2d(16, 32, 3, 2, 1), new BatchNorm2d(32), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(32, 4));
      writeFileSync(join(dir, 'mine.onnx'), await exportOnnx(net, { inputShape: [3, 48, 48], graphName: 'mine' }));
      net.dispose();
      destroyRuntime();
      for (let i = 0; i < 8; i++) {
        mkdirSync(join(dir, 'photos', `kind${i % 4}`), { recursive: true });
        const px = Buffer.from(Array.from({ length: 70 * 55 * 3 }, (_, j) => (j * (i + 3) + 40 * i) & 255));
        const img = sharp(px, { raw: { width: 70 - i, height: 55, channels: 3 } as never });
        writeFileSync(join(dir, 'photos', `kind${i % 4}`, `p${i}.${i % 2 ? 'jpg' : 'png'}`), await (i % 2 ? img.jpeg() : img.png()).toBuffer());
      }
      const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(url);
      await page.waitForSelector('#status[data-state="ready"]', { state: 'attached', timeout: 120_000 });
      await page.setInputFiles('#onnx', join(dir, 'mine.onnx'));
      await page.waitForFunction(() => document.querySelector('#loaded')?.textContent?.includes('mine.onnx'));
      await page.setInputFiles('#folder', join(dir, 'photos'));
      await page.waitForFunction(() => document.querySelector('#loaded')?.textContent?.includes('8 images in 4 class folders'));
      expect(await page.inputValue('#in-h')).toBe('48');
      await page.selectOption('#group', 'all');
      await page.selectOption('#norm', 'imagenet');
      await page.fill('#sparsity', '0.5');
      await page.click('#run');
      await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { state: 'attached', timeout: 600_000 });
      expect(await page.getAttribute('#status', 'data-state'), (await page.textContent('#status')) ?? '').toBe('done');
      const rows = await page.$$eval('#results-table tr[data-method]', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')));
      expect(rows.map((r) => r[0])).toEqual(['Original', 'Default pruning', 'Intra-Fusion', 'Folding']);
      for (const r of rows) expect(Number(r[1])).toBeGreaterThanOrEqual(0);
      expect(await page.textContent('#results h3')).toContain('8 images');
      const download = page.waitForEvent('download');
      await page.click('#download-intra_fusion');
      const saved = join(dir, 'pruned.onnx');
      await (await download).saveAs(saved);
      await gpu();
      const pruned = importOnnx(readFileSync(saved), 'pruned.onnx');
      expect(pruned.inputShape).toEqual([3, 48, 48]);
      expect(pruned.parameterCount().toLocaleString('en')).toBe(rows[2][2]); // 4 classes: no top-5 column
      pruned.dispose();
      destroyRuntime();
      mkdirSync('test/artifacts', { recursive: true });
      await page.screenshot({ path: 'test/artifacts/demo-own-data.png', fullPage: true });
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 900_000);
});
