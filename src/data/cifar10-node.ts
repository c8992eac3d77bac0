/**
 * CIFAR-10 from disk in Node: a directory with the binary files (directly, or in the archive's
 * `cifar-10-batches-bin/` folder). When they are missing, the official archive is downloaded (when
 * online), its MD5 checked, and the files extracted there; offline, a clear error says what to do.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { writeFileAtomic } from '../nn/checkpoint-node.js';
import { DataError, parseCifarBatches, RECORD_BYTES, type Cifar10Split } from './cifar10.js';

export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
const TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
const TEST_FILES = ['test_batch.bin'];
const ARCHIVE_DIR = 'cifar-10-batches-bin';

export interface LoadCifarOptions {
  /** Download when the files are missing (default true). */
  download?: boolean;
  url?: string;
  md5?: string;
  /** Called with (bytes received, total bytes or 0 when unknown). */
  onProgress?: (received: number, total: number) => void;
}

function locate(dir: string): string | null {
  for (const d of [dir, join(dir, ARCHIVE_DIR)]) {
    if ([...TRAIN_FILES, ...TEST_FILES].every((f) => existsSync(join(d, f)))) return d;
  }
  return null;
}

/** Files of a tar archive (ustar/GNU headers; regular files only). */
export function untar(tar: Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const text = (a: number, b: number) => new TextDecoder().decode(tar.subarray(a, b)).replace(/\0.*$/s, '');
  for (let at = 0; at + 512 <= tar.length; ) {
    const name = text(at, at + 100);
    if (!name) break;
    const size = parseInt(text(at + 124, at + 136).trim() || '0', 8);
    const type = String.fromCharCode(tar[at + 156]);
    const prefix = text(at + 345, at + 500);
    const body = tar.subarray(at + 512, at + 512 + size);
    if (body.length !== size) throw new DataError(`Truncated tar archive at ${name}.`);
    if (type === '0' || type === '\0') files.set(prefix ? `${prefix}/${name}` : name, body);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/** Downloads the archive, verifies its MD5, and writes the binary files into `<dir>/cifar-10-batches-bin`. */
export async function downloadCifar10(dir: string, o: LoadCifarOptions = {}): Promise<string> {
  const url = o.url ?? CIFAR10_URL;
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new DataError(`Could not download CIFAR-10 from ${url} (${(e as Error).cause ?? (e as Error).message}).`);
  }
  if (!response.ok || !response.body) throw new DataError(`Could not download CIFAR-10 from ${url}: HTTP ${response.status}.`);
  const total = Number(response.headers.get('content-length') ?? 0);
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    chunks.push(chunk);
    received += chunk.length;
    o.onProgress?.(received, total);
  }
  const archive = Buffer.concat(chunks);
  const md5 = createHash('md5').update(archive).digest('hex');
  const want = o.md5 ?? CIFAR10_MD5;
  if (md5 !== want) throw new DataError(`CIFAR-10 archive from ${url} has MD5 ${md5}, expected ${want}: refusing a corrupt download.`);
  const files = untar(gunzipSync(archive));
  const out = join(dir, ARCHIVE_DIR);
  for (const f of [...TRAIN_FILES, ...TEST_FILES]) {
    const body = files.get(`${ARCHIVE_DIR}/${f}`) ?? files.get(f);
    if (!body) throw new DataError(`The CIFAR-10 archive has no ${f}.`);
    writeFileAtomic(join(out, f), body);
  }
  return out;
}

export interface Cifar10 {
  train: Cifar10Split;
  test: Cifar10Split;
  dir: string;
}

/** Loads CIFAR-10 from `dir`, downloading it first if it is missing and downloads are allowed. */
export async function loadCifar10(dir: string, o: LoadCifarOptions = {}): Promise<Cifar10> {
  let found = locate(dir);
  if (!found) {
    if (o.download === false) {
      throw new DataError(`CIFAR-10 binary files (${[...TRAIN_FILES, ...TEST_FILES].join(', ')}) not found in ${dir} or ${join(dir, ARCHIVE_DIR)}.`);
    }
    try {
      found = await downloadCifar10(dir, o);
    } catch (e) {
      throw new DataError(
        `CIFAR-10 is not in ${dir} and downloading it failed: ${(e as Error).message} ` +
          `Put the official binary files there (from ${CIFAR10_URL}), or pass the directory that holds them.`,
      );
    }
  }
  const files = [...TRAIN_FILES, ...TEST_FILES].map((name) => ({ name, bytes: readFileSync(join(found!, name)) }));
  // The six official files hold 10000 records each: a file with fewer than its siblings lost records
  // (a copy cut at a record boundary is otherwise a valid file).
  const records = (f: { bytes: Uint8Array }) => Math.floor(f.bytes.length / RECORD_BYTES);
  const short = files.find((f) => records(f) < Math.max(...files.map(records)));
  if (short) throw new DataError(`${join(found, short.name)} has ${records(short)} records, the other batch files up to ${Math.max(...files.map(records))}: records are missing (a truncated copy?).`);
  const read = (names: string[]) => parseCifarBatches(files.filter((f) => names.includes(f.name)));
  return { train: read(TRAIN_FILES), test: read(TEST_FILES), dir: found };
}
