/**
 * Runs a CLI's main function and maps its outcome to an exit code: a known error (any IntraFusionError:
 * bad flags, missing data, unsupported layer, no GPU...) prints its message on one line and exits 2;
 * anything else is a bug, printed with its stack, exit 1.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { IntraFusionError } from '../errors.js';

/**
 * Whether the module at `moduleUrl` (its `import.meta.url`) is the script Node was started with. Both
 * sides go through realpath, so the package's bins (symlinks such as node_modules/.bin/intra-fusion, or
 * npm's shims) count, whatever the link is called; importing the module (tests, the library) does not.
 */
export function isMainModule(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

export function exitCodeFor(e: unknown): number {
  return e instanceof IntraFusionError ? 2 : 1;
}

export function describeError(e: unknown): string {
  if (e instanceof IntraFusionError) return `error: ${e.message.replace(/\s*\n\s*/g, ' ')}`;
  return `error: ${(e as Error)?.stack ?? String(e)}`;
}

export function runMain(main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${describeError(e)}\n`);
      process.exit(exitCodeFor(e));
    },
  );
}
