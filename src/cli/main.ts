/**
 * Runs a CLI's main function and maps its outcome to an exit code: a known error (any IntraFusionError:
 * bad flags, missing data, unsupported layer, no GPU...) prints its message on one line and exits 2;
 * anything else is a bug, printed with its stack, exit 1.
 */
import { IntraFusionError } from '../errors.js';

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
