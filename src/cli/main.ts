/**
 * Runs a CLI's main function and maps its outcome to an exit code: a known error (any IntraFusionError:
 * bad flags, missing data, unsupported layer, no GPU...) prints its message on one line and exits 2;
 * anything else is a bug, printed with its stack, exit 1.
 */
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { basename, isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IntraFusionError } from '../errors.js';

/**
 * Whether the module at `moduleUrl` is the script node was started with. Compares real paths, so it holds
 * however the script is reached: `node dist/run.js`, or npm's bin link `intra-fusion` (a symlink, or a
 * copy-free shim, with another name).
 */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

/**
 * The command as the user invoked it, for usage lines: the link's name when run through a package bin
 * (`intra-fusion`), `node <script>` when the script was run directly (its path relative to the working
 * folder when under it), and `fallback` when the module is not the script node started (tests, library use).
 */
export function invokedAs(moduleUrl: string, fallback: string): string {
  const script = process.argv[1];
  if (!script || !isEntryPoint(moduleUrl)) return fallback;
  const name = basename(script);
  if (!/\.[cm]?[jt]s$/i.test(name)) return name;
  const rel = relative(process.cwd(), script);
  return `node ${rel.startsWith('..') || isAbsolute(rel) ? script : rel}`;
}

export function exitCodeFor(e: unknown): number {
  return e instanceof IntraFusionError ? 2 : 1;
}

export function describeError(e: unknown): string {
  if (e instanceof IntraFusionError) return `error: ${e.message.replace(/\s*\n\s*/g, ' ')}`;
  return `error: ${(e as Error)?.stack ?? String(e)}`;
}

export function runMain(main: (argv: string[]) => Promise<number>): void {
  if (process.env[FILTERED] !== '1') {
    relaunchFilteringStderr();
    return;
  }
  // The launching process is our stdin/stdout owner: when it goes, so do we.
  process.on('disconnect', () => process.exit(1));
  process.channel?.unref();
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${describeError(e)}\n`);
      process.exit(exitCodeFor(e));
    },
  );
}

/**
 * Dawn prints two notices on every adapter request, straight to file descriptor 2 from native code
 * ("Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from ... to fit dynamic
 * offset allocation limit.", and the same for storage buffers: src/dawn/native/Limits.cpp, where it clamps
 * the adapter's limits). They say nothing a user can act on. JavaScript cannot redirect a native write, so
 * the CLIs run themselves as a child whose stderr passes through this filter, which drops exactly those
 * two lines; stdout, stdin, signals and the exit status pass through unchanged.
 */
export const DAWN_LIMIT_NOTICE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
const FILTERED = 'INTRA_FUSION_STDERR_FILTERED';

function relaunchFilteringStderr(): void {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, [FILTERED]: '1', ...(process.stderr.isTTY ? { INTRA_FUSION_STDERR_TTY: '1' } : {}) },
  });
  let pending = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop()!;
    const kept = lines.filter((l) => !DAWN_LIMIT_NOTICE.test(l));
    if (kept.length) process.stderr.write(kept.map((l) => `${l}\n`).join(''));
    // A progress bar redraws its line in place (\r, no newline): pass it on at once.
    if (pending.includes('\r')) {
      process.stderr.write(pending);
      pending = '';
    }
  });
  // Ctrl-C reaches the whole process group: the child decides; a TERM for us is passed on.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => {
    if (pending && !DAWN_LIMIT_NOTICE.test(pending)) process.stderr.write(pending);
    if (signal) {
      process.removeAllListeners('SIGINT');
      process.removeAllListeners('SIGTERM');
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
}
