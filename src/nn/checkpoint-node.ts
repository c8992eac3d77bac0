/** Checkpoint files in Node: atomic writes (temporary file + rename) and loading with clear errors. */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { hostname } from 'node:os';
import { DataError } from '../errors.js';
import { loadSafetensorsBytes, modelToSafetensors, type LoadOptions } from './checkpoint.js';
import type { Module } from './module.js';

/**
 * This machine's name in temporary file names (`<file>.tmp-HOST-PID-TIME`): on a folder shared by several
 * machines (shards of one run), a run removes only the leftovers of its own machine's dead processes.
 */
export const TEMP_HOST = hostname().replace(/[^A-Za-z0-9.]/g, '_') || 'host';

/** Writes bytes so that readers see either the old file or the complete new one, never a torn one. */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${TEMP_HOST}-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Writes the model as a safetensors checkpoint (atomically) with the given metadata. */
export async function saveCheckpoint(model: Module, path: string, metadata: Record<string, string> = {}): Promise<void> {
  writeFileAtomic(path, await modelToSafetensors(model, metadata));
}

/** Loads a safetensors checkpoint into `model`; returns the file's metadata. */
export function loadCheckpoint(model: Module, path: string, options?: LoadOptions): Record<string, string> {
  if (!existsSync(path)) throw new DataError(`Checkpoint not found: ${path}`);
  return loadSafetensorsBytes(model, readFileSync(path), path, options);
}
