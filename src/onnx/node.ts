/** ONNX files in Node: atomic writes beside a checkpoint, and reading with a clear error. */
import { existsSync, readFileSync } from 'node:fs';
import { DataError } from '../errors.js';
import { writeFileAtomic } from '../nn/checkpoint-node.js';
import type { Module } from '../nn/module.js';
import { exportOnnx, type OnnxExportOptions } from './export.js';
import { importOnnx, type OnnxImportOptions, type OnnxModel } from './import.js';

/** The .onnx path beside a .safetensors path (same name, other extension). */
export function onnxPathBeside(checkpointPath: string): string {
  return checkpointPath.replace(/\.safetensors$/, '') + '.onnx';
}

/** Writes the model as an ONNX file (atomically). */
export async function saveOnnx(model: Module, path: string, options: OnnxExportOptions): Promise<void> {
  writeFileAtomic(path, await exportOnnx(model, options));
}

/** Reads an ONNX file as an engine model (a DataError when it is missing). */
export function loadOnnx(path: string, options?: OnnxImportOptions): OnnxModel {
  if (!existsSync(path)) throw new DataError(`ONNX model not found: ${path}`);
  return importOnnx(readFileSync(path), path, options);
}
