// Runs one of examples/*.ts from a checkout: `node scripts/run-example.mjs examples/prune-builtin.ts [args]`.
// The examples import the package by name ('intra-fusion-webgpu'); here that name is the source (src/index.ts),
// so no build is needed. esbuild bundles the example into a temporary .mjs beside it, run with the same args.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';

const [example, ...args] = process.argv.slice(2);
if (!example) {
  console.error('usage: node scripts/run-example.mjs examples/NAME.ts [args]');
  process.exit(2);
}
const outfile = resolve(`${example.replace(/\.ts$/, '')}.${process.pid}.tmp.mjs`);
await build({
  entryPoints: [example], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
  loader: { '.wgsl': 'text' }, external: ['webgpu', 'onnxruntime-node', 'sharp'],
  alias: { 'intra-fusion-webgpu': resolve('src/index.ts') },
});
try {
  const r = spawnSync(process.execPath, [outfile, ...args], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(outfile, { force: true });
}
