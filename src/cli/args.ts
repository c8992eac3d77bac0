/**
 * A small command-line parser: `--name value`, `--name=value`, lists as `--name 1 2 3` or `--name 1,2,3`
 * (numbers, or strings such as paths),
 * boolean switches, `key=value` pairs (`--group-sparsity 1=0.3,2=0.5`), aliases, and underscores or dashes
 * alike (`--group_idxs` = `--group-idxs`). Unknown flags and bad values are errors that name the flag;
 * so are a flag given twice, a list with a repeated value, a pair list with a repeated key, and a boolean
 * value other than true/false, yes/no, on/off, 1/0 (none of these silently keeps the last or means true).
 */

import { IntraFusionError } from '../errors.js';

export class UsageError extends IntraFusionError {
  override name = 'UsageError';
}

export type FlagKind = 'string' | 'strings' | 'number' | 'int' | 'numbers' | 'ints' | 'boolean' | 'pairs';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  default?: unknown;
  choices?: readonly string[];
  /** Other names of the flag. */
  aliases?: readonly string[];
  /** For lists: repeated values are allowed (default: refused, they would run the same thing twice). */
  repeats?: boolean;
}

const TRUE = /^(true|yes|on|1)$/i;
const FALSE = /^(false|no|off|0)$/i;

const canonical = (name: string) => name.replace(/_/g, '-');

/** The parsed flags (defaults filled in), `help`, and `given`: the flags the command line named. */
export type ParsedArgs<T> = { [K in keyof T]: unknown } & { help: boolean; given: Set<keyof T> };

export function parseArgs<T extends Record<string, FlagSpec>>(argv: string[], spec: T): ParsedArgs<T> {
  const byName = new Map(Object.entries(spec).flatMap(([k, s]) => [k, ...(s.aliases ?? [])].map((n) => [canonical(n), k] as const)));
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) out[k] = s.default;
  out.help = false;
  const seen = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`Unexpected argument "${arg}" (flags start with --; see --help).`);
    const [rawName, inline] = arg.slice(2).split(/=(.*)/s, 2);
    const key = byName.get(canonical(rawName));
    if (!key) throw new UsageError(`Unknown flag --${rawName} (see --help).`);
    const s = spec[key];
    if (seen.has(key)) throw new UsageError(`--${rawName} is given twice (also as --${seen.get(key)}); give it once.`);
    seen.set(key, rawName);
    if (s.kind === 'boolean') {
      if (inline !== undefined && !TRUE.test(inline) && !FALSE.test(inline)) throw new UsageError(`--${rawName}=${inline}: a switch takes true or false (also yes/no, on/off, 1/0).`);
      out[key] = inline === undefined || TRUE.test(inline);
      continue;
    }
    const values: string[] = [];
    if (inline !== undefined) values.push(inline);
    else {
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
        values.push(argv[++i]);
        if (s.kind !== 'numbers' && s.kind !== 'ints' && s.kind !== 'pairs' && s.kind !== 'strings') break;
      }
    }
    const parts = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length);
    if (!parts.length) throw new UsageError(`--${rawName} needs a value.`);
    const num = (v: string, int: boolean) => {
      const x = Number(v);
      if (!Number.isFinite(x) || (int && !Number.isInteger(x))) throw new UsageError(`--${rawName}: "${v}" is not ${int ? 'an integer' : 'a number'}.`);
      return x;
    };
    switch (s.kind) {
      case 'string':
        if (parts.length > 1) throw new UsageError(`--${rawName} takes one value, got ${parts.join(', ')}.`);
        if (s.choices && !s.choices.includes(parts[0])) throw new UsageError(`--${rawName} must be one of ${s.choices.join(', ')}; got "${parts[0]}".`);
        out[key] = parts[0];
        break;
      case 'strings':
        if (!s.repeats) {
          const dup = parts.find((v, j) => parts.indexOf(v) !== j);
          if (dup !== undefined) throw new UsageError(`--${rawName}: ${dup} is listed twice.`);
        }
        out[key] = parts;
        break;
      case 'number':
      case 'int':
        if (parts.length > 1) throw new UsageError(`--${rawName} takes one value, got ${parts.join(', ')}.`);
        out[key] = num(parts[0], s.kind === 'int');
        break;
      case 'numbers':
      case 'ints':
        out[key] = parts.map((v) => num(v, s.kind === 'ints'));
        if (!s.repeats) {
          const dup = (out[key] as number[]).find((v, j, all) => all.indexOf(v) !== j);
          if (dup !== undefined) throw new UsageError(`--${rawName}: ${dup} is listed twice.`);
        }
        break;
      case 'pairs': {
        // Integer keys to numbers: "1=0.3,2=0.5".
        const pairs: Record<number, number> = {};
        for (const part of parts) {
          const [k, v, extra] = part.split('=');
          if (v === undefined || extra !== undefined) throw new UsageError(`--${rawName}: "${part}" is not KEY=VALUE.`);
          const at = num(k, true);
          if (at in pairs) throw new UsageError(`--${rawName}: key ${at} is given twice (${at}=${pairs[at]} and ${part}).`);
          pairs[at] = num(v, false);
        }
        out[key] = pairs;
        break;
      }
    }
  }
  out.given = new Set(seen.keys());
  return out as ParsedArgs<T>;
}

export function usage(command: string, summary: string, spec: Record<string, FlagSpec>): string {
  const lines = [`Usage: ${command} [flags]`, '', summary, '', 'Flags:'];
  for (const [k, s] of Object.entries(spec)) {
    const def = s.default === undefined ? '' : ` (default: ${Array.isArray(s.default) ? s.default.join(' ') : String(s.default)})`;
    const choices = s.choices ? ` [${s.choices.join('|')}]` : '';
    const aliases = s.aliases?.length ? ` (also --${s.aliases.join(', --')})` : '';
    const value = s.kind === 'boolean' ? '' : s.kind === 'pairs' ? ' K=V,...' : ' ' + s.kind.toUpperCase();
    lines.push(`  --${k}${choices}${value}${aliases}`);
    lines.push(`      ${s.help}${def}`);
  }
  return lines.join('\n');
}
