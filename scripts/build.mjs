// Bundles the Node entry points into dist/ (WGSL files inlined as text; the Dawn package stays external).
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entries = ['src/bench.ts', 'bench/bench.ts'].filter((f) => existsSync(f));
const extra = process.argv.slice(2);
await build({
  entryPoints: extra.length ? extra : entries,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  loader: { '.wgsl': 'text' },
  external: ['webgpu', '@tensorflow/*'],
  logLevel: 'warning',
});
