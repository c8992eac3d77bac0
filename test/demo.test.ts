/**
 * The browser demo end to end in headless Chromium (SwiftShader WebGPU): the page loads the server's
 * default checkpoint and test data, runs default pruning and Intra-Fusion of a group, and shows the
 * numbers; a screenshot is kept in test/artifacts/demo.png. SKIP_BROWSER=1 skips it explicitly.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../src/demo/server.js';
import { sharedDir } from './helpers.js';

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
  it('loads, prunes group 2 at 70% with default pruning and Intra-Fusion, and shows the numbers', async () => {
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
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { state: 'attached', timeout: 600_000 });
    expect(await page.getAttribute('#status', 'data-state'), (await page.textContent('#status')) ?? '').toBe('done');
    const rows = await page.$$eval('#results-table tr[data-method]', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')));
    expect(rows.map((r) => r[0])).toEqual(['Original', 'Default pruning', 'Intra-Fusion']);
    expect(rows[2][2]).toBe('5,921,493');
    const [original, def, fused] = rows.map((r) => Number(r[1]));
    expect(original).toBeGreaterThan(80);
    expect(fused).toBeGreaterThan(def + 5);
    expect(await page.$eval('#heatmap', (c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height])).toEqual([512, 153]);
    mkdirSync('test/artifacts', { recursive: true });
    await page.screenshot({ path: 'test/artifacts/demo.png', fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 900_000);
});
