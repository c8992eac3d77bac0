/**
 * `npm run demo`: bundles the demo page with esbuild and serves it on localhost. With --checkpoint and
 * --data-dir the page loads them as defaults (the page's file pickers work either way).
 *
 * The server answers GET and HEAD only (405 otherwise), only to requests addressed to a loopback name
 * (Host localhost, 127.0.0.1 or [::1]: a page on another site cannot reach it through DNS rebinding),
 * streams the default files from disk (a file that vanishes or fails to read is a 500, not a crash),
 * and labels every answer with its Content-Type and `nosniff`.
 */
import { build } from 'esbuild';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, usage, UsageError, type FlagSpec } from '../cli/args.js';
import { isEntryPoint, runMain } from '../cli/main.js';
import { DataError } from '../errors.js';

export interface DemoOptions {
  port?: number;
  host?: string;
  checkpoint?: string;
  dataDir?: string;
}

const FLAGS = {
  port: { kind: 'int', help: 'Port on 127.0.0.1 (0: any free port).', default: 8080 },
  checkpoint: { kind: 'string', help: 'A safetensors checkpoint the page loads by default.' },
  'data-dir': { kind: 'string', help: 'The CIFAR-10 folder whose test_batch.bin the page loads by default.' },
} satisfies Record<string, FlagSpec>;

/** Where the demo sources are: src/demo beside this file when run from source, else found from the package root. */
function demoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const d of [here, join(here, '..', 'src', 'demo'), join(process.cwd(), 'src', 'demo')]) {
    if (existsSync(join(d, 'index.html')) && existsSync(join(d, 'main.ts'))) return d;
  }
  throw new DataError('demo sources (src/demo/index.html, main.ts) not found');
}

/** Host header names this loopback server answers to (any port). */
const LOOPBACK_HOST = /^(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/i;

const SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' };

function answer(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS, ...extra });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Streams a file; an error before the first byte is a 500, after it the connection is cut (the length would lie). */
function sendFile(req: IncomingMessage, res: ServerResponse, path: string): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    answer(req, res, 500, 'text/plain; charset=utf-8', `cannot read ${path.replace(/^.*[\\/]/, '')}: ${(e as NodeJS.ErrnoException).code ?? 'error'}\n`);
    return;
  }
  if (req.method === 'HEAD') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, ...SECURITY_HEADERS }).end();
    return;
  }
  const stream = createReadStream(path);
  stream.once('open', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, ...SECURITY_HEADERS }));
  stream.once('error', (e: NodeJS.ErrnoException) => {
    if (!res.headersSent) answer(req, res, 500, 'text/plain; charset=utf-8', `cannot read ${path.replace(/^.*[\\/]/, '')}: ${e.code ?? 'error'}\n`);
    else res.destroy();
  });
  stream.pipe(res);
  res.once('close', () => stream.destroy());
}

export async function startDemoServer(o: DemoOptions = {}): Promise<{ server: Server; url: string }> {
  const dir = demoDir();
  const checkpoint = o.checkpoint ? resolve(o.checkpoint) : null;
  const testBatch = o.dataDir ? [join(resolve(o.dataDir), 'test_batch.bin'), join(resolve(o.dataDir), 'cifar-10-batches-bin', 'test_batch.bin')].find(existsSync) ?? null : null;
  if (checkpoint && !existsSync(checkpoint)) throw new UsageError(`--checkpoint ${checkpoint} does not exist.`);
  if (o.dataDir && !testBatch) throw new UsageError(`--data-dir ${o.dataDir} has no test_batch.bin.`);
  const bundle = await build({
    entryPoints: [join(dir, 'main.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022',
    write: false, loader: { '.wgsl': 'text' }, logLevel: 'warning',
  });
  const js = bundle.outputFiles[0].text;
  const html = readFileSync(join(dir, 'index.html'), 'utf8');
  const defaults = JSON.stringify({
    ...(checkpoint ? { checkpoint: 'default/checkpoint.safetensors' } : {}), ...(testBatch ? { test: 'default/test_batch.bin' } : {}),
  });
  const server = createServer((req, res) => {
    if (!LOOPBACK_HOST.test(req.headers.host ?? '')) return answer(req, res, 403, 'text/plain; charset=utf-8', 'forbidden: this server answers to localhost only\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(req, res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/index.html') answer(req, res, 200, 'text/html; charset=utf-8', html);
    else if (path === '/demo.js') answer(req, res, 200, 'text/javascript; charset=utf-8', js);
    else if (path === '/defaults.json') answer(req, res, 200, 'application/json', defaults);
    else if (path === '/default/checkpoint.safetensors' && checkpoint) sendFile(req, res, checkpoint);
    else if (path === '/default/test_batch.bin' && testBatch) sendFile(req, res, testBatch);
    else answer(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
  });
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((done, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      fail(e.code === 'EADDRINUSE' ? new UsageError(`--port ${o.port}: ${host}:${o.port} is already in use (pass another --port, or 0 for any free one).`)
        : e.code === 'EACCES' ? new UsageError(`--port ${o.port}: not allowed to listen there (ports below 1024 need privileges).`) : e);
    });
    server.listen(o.port ?? 8080, host, () => done());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  return { server, url: `http://${host}:${port}/` };
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    console.log(usage('npm run demo --', 'Serve the browser demo on 127.0.0.1.', FLAGS));
    return 0;
  }
  const port = a.port as number;
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`--port must be in 0..65535, got ${port}.`);
  const { url } = await startDemoServer({ port, checkpoint: a.checkpoint as string | undefined, dataDir: a['data-dir'] as string | undefined });
  console.log(`Intra-Fusion demo on ${url} (open it in a browser with WebGPU; Ctrl-C stops)`);
  return new Promise<number>(() => {}); // serves until stopped
}

if (isEntryPoint(import.meta.url)) runMain(main);
