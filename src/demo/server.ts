/**
 * `npm run demo`: bundles the demo page with esbuild and serves it on localhost. With --checkpoint and
 * --data-dir the page loads them as defaults (the page's file pickers work either way).
 */
import { build } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DemoOptions {
  port?: number;
  host?: string;
  checkpoint?: string;
  dataDir?: string;
}

/** Where the demo sources are: src/demo beside this file when run from source, else found from the package root. */
function demoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const d of [here, join(here, '..', 'src', 'demo'), join(process.cwd(), 'src', 'demo')]) {
    if (existsSync(join(d, 'index.html')) && existsSync(join(d, 'main.ts'))) return d;
  }
  throw new Error('demo sources (src/demo/index.html, main.ts) not found');
}

export async function startDemoServer(o: DemoOptions = {}): Promise<{ server: Server; url: string }> {
  const dir = demoDir();
  const bundle = await build({
    entryPoints: [join(dir, 'main.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022',
    write: false, loader: { '.wgsl': 'text' }, logLevel: 'warning',
  });
  const js = bundle.outputFiles[0].text;
  const html = readFileSync(join(dir, 'index.html'), 'utf8');
  const checkpoint = o.checkpoint ? resolve(o.checkpoint) : null;
  const testBatch = o.dataDir ? [join(resolve(o.dataDir), 'test_batch.bin'), join(resolve(o.dataDir), 'cifar-10-batches-bin', 'test_batch.bin')].find(existsSync) ?? null : null;
  if (checkpoint && !existsSync(checkpoint)) throw new Error(`--checkpoint ${checkpoint} does not exist`);
  if (o.dataDir && !testBatch) throw new Error(`--data-dir ${o.dataDir} has no test_batch.bin`);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/index.html') res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    else if (path === '/demo.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    else if (path === '/defaults.json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        ...(checkpoint ? { checkpoint: 'default/checkpoint.safetensors' } : {}), ...(testBatch ? { test: 'default/test_batch.bin' } : {}),
      }));
    } else if (path === '/default/checkpoint.safetensors' && checkpoint) res.writeHead(200).end(readFileSync(checkpoint));
    else if (path === '/default/test_batch.bin' && testBatch) res.writeHead(200).end(readFileSync(testBatch));
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((done) => server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', done));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  return { server, url: `http://${o.host ?? '127.0.0.1'}:${port}/` };
}

if (process.argv[1] && /server\.(js|ts|mjs)$|demo-server\.js$/.test(process.argv[1])) {
  const args = new Map<string, string>();
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = argv[i].replace(/^--/, '').split('=');
    args.set(k, v ?? argv[++i]);
  }
  startDemoServer({ port: Number(args.get('port') ?? 8080), checkpoint: args.get('checkpoint'), dataDir: args.get('data-dir') }).then(
    ({ url }) => console.log(`Intra-Fusion demo on ${url} (open it in a browser with WebGPU; Ctrl-C stops)`),
    (e: Error) => {
      console.error(`error: ${e.message}`);
      process.exit(1);
    },
  );
}
