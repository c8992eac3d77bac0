/**
 * The engine in a real browser: the page in test/browser is bundled with esbuild, served on localhost
 * and run in headless Chromium (Debian's, driven by playwright-core) on its WebGPU (SwiftShader).
 * Needs /usr/bin/chromium (`npm test` installs it where it can); SKIP_BROWSER=1 skips explicitly.
 */
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = process.env.SKIP_BROWSER === '1';

let server: Server;
let browser: Browser;
let url = '';

beforeAll(async () => {
  if (skip) return;
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install chromium, or set SKIP_BROWSER=1 to skip.`);
  const result = await build({
    entryPoints: ['test/browser/engine-page.ts'],
    bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false,
    loader: { '.wgsl': 'text' }, logLevel: 'silent',
  });
  const js = result.outputFiles[0].text;
  const html = '<!doctype html><html><body><script type="module" src="/page.js"></script></body></html>';
  server = createServer((req, res) => {
    if (req.url === '/page.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    else res.writeHead(200, { 'content-type': 'text/html' }).end(html);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true, // playwright gives each launch a fresh, empty profile
    args: [
      '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader',
      '--use-webgpu-adapter=swiftshader', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
});

describe.skipIf(skip)('engine in headless Chromium', () => {
  it('runs matmul, conv2d (incl. a dilated, asymmetric-padded 1x7) with backward, the activations with NaN, concat, ceil-mode pools and cross-entropy on navigator.gpu, matching float64 references', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 60_000 });
    const result = await page.evaluate(() => (window as unknown as { runChecks: () => Promise<{ adapter: string; subgroups: boolean; checks: { name: string; maxError: number; ok: boolean }[] }> }).runChecks());
    expect(errors).toEqual([]);
    console.log(`browser adapter: ${result.adapter}, subgroups: ${result.subgroups}`);
    expect(result.checks.length).toBe(32);
    for (const c of result.checks) expect(c.ok, `${c.name}: max error ${c.maxError}`).toBe(true);
    await page.close();
  });
});
