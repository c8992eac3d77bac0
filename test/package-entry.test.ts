/**
 * The package's entries (package.json `exports`): the browser entry reaches no Node built-in, the Node
 * entry has everything the browser one has plus the file helpers, and both resolve by package name.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as browserEntry from '../src/browser.js';
import * as nodeEntry from '../src/index.js';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { name: string; exports: Record<string, unknown>; main: string };

describe('package entries', () => {
  it('the browser entry bundles for platform=browser with no node: import reachable', async () => {
    const r = await build({ entryPoints: ['src/browser.ts'], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, loader: { '.wgsl': 'text' }, logLevel: 'silent' });
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs.filter((f) => /-node\.ts$|trainer\.ts$|^node:/.test(f))).toEqual([]);
    expect(r.outputFiles[0].text).not.toMatch(/from\s*["']node:|require\(["']node:|import\(["']node:/);
  });

  it('the Node entry exports everything the browser entry does, plus the file and download helpers', () => {
    const missing = Object.keys(browserEntry).filter((k) => !(k in nodeEntry));
    expect(missing).toEqual([]);
    for (const name of ['loadCifar10', 'downloadCifar10', 'saveCheckpoint', 'loadCheckpoint', 'train']) {
      expect(name in nodeEntry, name).toBe(true);
      expect(name in browserEntry, name).toBe(false);
    }
  });

  it('resolves by package name: the node condition gets dist/index.js, the browser condition dist/browser.js', () => {
    expect(pkg.main).toBe('dist/index.js');
    execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'pipe' });
    const probe = (conditions: string[]) => execFileSync(process.execPath, [...conditions, '--input-type=module', '-e',
      `const m = await import('${pkg.name}'); console.log(JSON.stringify({ url: import.meta.resolve('${pkg.name}'), prune: typeof m.prune, loadCifar10: typeof m.loadCifar10 }));`], { encoding: 'utf8' });
    const node = JSON.parse(probe([]));
    const browser = JSON.parse(probe(['--conditions=browser']));
    expect(node).toMatchObject({ prune: 'function', loadCifar10: 'function' });
    expect(node.url).toMatch(/\/dist\/index\.js$/);
    expect(browser).toMatchObject({ prune: 'function', loadCifar10: 'undefined' });
    expect(browser.url).toMatch(/\/dist\/browser\.js$/);
  }, 120_000);
});
