// Bundles the Node entry points into dist/ (WGSL inlined as text; Dawn and tfjs stay external packages),
// and the browser-safe library entry (src/browser.ts) into dist/browser.js for platform=browser.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entryPoints = Object.fromEntries(
  Object.entries({ run: 'src/run.ts', compare: 'src/compare.ts', bench: 'bench/bench.ts', index: 'src/index.ts', 'demo-server': 'src/demo/server.ts' }).filter(([, file]) => existsSync(file)),
);
await build({
  entryPoints,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  loader: { '.wgsl': 'text' },
  // onnxruntime-node is a test-only client: the product never imports it, and a bundle must not either.
  external: ['webgpu', '@tensorflow/*', 'esbuild', 'onnxruntime-node', 'sharp'],
  logLevel: 'warning',
  banner: { js: '#!/usr/bin/env node' },
});
// The browser entry: any Node built-in reachable from it fails this build (esbuild cannot resolve it there).
await build({
  entryPoints: { browser: 'src/browser.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  loader: { '.wgsl': 'text' },
  logLevel: 'warning',
});
