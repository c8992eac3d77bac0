// WGSL sources are imported as strings (esbuild `text` loader, and a tiny vite plugin for vitest).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
