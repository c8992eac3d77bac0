import { defineConfig, type Plugin } from 'vitest/config';

/** Import `*.wgsl` files as plain strings, the same way the esbuild build does. */
const wgslText: Plugin = {
  name: 'wgsl-text',
  transform(code, id) {
    if (id.endsWith('.wgsl')) return { code: `export default ${JSON.stringify(code)};`, map: null };
    return null;
  },
};

export default defineConfig({
  plugins: [wgslText],
  test: {
    include: ['test/**/*.test.ts'],
    // One GPU device per worker; software Vulkan is slow, so run files one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
