// Bundles the Node entry points into dist/ (WGSL inlined as text; Dawn and tfjs stay external packages),
// and the browser-safe library entry (src/browser.ts) into dist/browser.js for platform=browser.
//   --types    also writes the type declarations (tsc, tsconfig.types.json) to dist/types/
//   --release  what `npm pack` ships (prepack): types, and no source maps (stale ones are removed)
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const release = process.argv.includes('--release');
const types = release || process.argv.includes('--types');
const sourcemap = !release;
if (release && existsSync('dist')) for (const f of readdirSync('dist')) if (f.endsWith('.map')) rmSync(`dist/${f}`);

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
  sourcemap,
  loader: { '.wgsl': 'text' },
  // onnxruntime-node (an optional peer: --eval-backend onnxruntime) and sharp are imported at run time, when used.
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
  sourcemap,
  loader: { '.wgsl': 'text' },
  logLevel: 'warning',
});
if (types) {
  rmSync('dist/types', { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.types.json'], { stdio: 'inherit' });
}
