/**
 * Model checkpoints as safetensors with PyTorch state_dict names (`features.0.weight`, ...,
 * `features.1.num_batches_tracked` as int64), so files move between this engine and PyTorch both ways.
 * Byte-level functions here work in browsers too; `checkpoint-node.ts` adds files and atomic writes.
 */
import { DataError } from '../errors.js';
import { parseSafetensors, serializeSafetensors, type SafeTensorsFile, type TensorToWrite } from '../tensor/safetensors.js';
import { assign } from '../tensor/tensor.js';
import { layerKind } from '../prune/registry.js';
import { BatchNorm2d } from './layers.js';
import { createModel } from './models.js';
import type { Module } from './module.js';

/** Serialises a model's parameters and buffers (read back from the GPU). */
export async function modelToSafetensors(model: Module, metadata: Record<string, string> = {}): Promise<Uint8Array> {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of model.stateTensors()) tensors.set(name, { shape: [...t.shape], values: await t.data() });
  for (const [prefix, m] of model.namedModules()) {
    if (m instanceof BatchNorm2d) {
      tensors.set(`${prefix}.num_batches_tracked`, { shape: [], values: BigInt64Array.of(BigInt(m.numBatchesTracked)) });
    }
  }
  return serializeSafetensors(tensors, metadata);
}

export interface LoadOptions {
  /** Fail on tensors the file has but the model does not (default true). Missing ones always fail. */
  strict?: boolean;
}

/** Loads a parsed state dict into the model in place. Shapes must match exactly. */
export function loadStateDict(model: Module, file: SafeTensorsFile, source: string, { strict = true }: LoadOptions = {}): void {
  const expected = new Map(model.stateTensors());
  const bns = new Map(model.namedModules().filter(([, m]) => m instanceof BatchNorm2d) as [string, BatchNorm2d][]);
  const problems: string[] = [];
  for (const [name, t] of expected) {
    const got = file.tensors.get(name);
    if (!got) problems.push(`missing ${name}`);
    else if (got.shape.join() !== t.shape.join()) problems.push(`${name}: file has [${got.shape}], model has [${t.shape}]`);
  }
  if (strict) {
    for (const name of file.tensors.keys()) {
      const bnPrefix = name.replace(/\.num_batches_tracked$/, '');
      if (!expected.has(name) && !(name.endsWith('.num_batches_tracked') && bns.has(bnPrefix))) problems.push(`unexpected ${name}`);
    }
  }
  if (problems.length) {
    const shown = problems.slice(0, 12).join('; ');
    throw new DataError(`${source} does not fit this model (${problems.length} problem${problems.length > 1 ? 's' : ''}): ${shown}${problems.length > 12 ? '; ...' : ''}`);
  }
  for (const [name, t] of expected) assign(t, file.tensors.get(name)!.values);
  for (const [prefix, bn] of bns) {
    const n = file.tensors.get(`${prefix}.num_batches_tracked`);
    if (n) bn.numBatchesTracked = n.values[0];
  }
}

export function loadSafetensorsBytes(model: Module, bytes: ArrayBuffer | Uint8Array, source = 'checkpoint', options?: LoadOptions): Record<string, string> {
  const file = parseSafetensors(bytes, source);
  loadStateDict(model, file, source, options);
  return file.metadata;
}

/**
 * Resizes a freshly built model's layers to the shapes in a state dict, so a pruned checkpoint (fewer
 * channels in some layers) loads into the architecture it was saved from. Only channel counts change.
 */
export function resizeToStateDict(model: Module, file: SafeTensorsFile): void {
  for (const [prefix, m] of model.namedModules()) {
    layerKind(m)?.resize(m, (tensor) => file.tensors.get(prefix ? `${prefix}.${tensor}` : tensor)?.shape);
  }
}

/** Builds the named architecture at the (possibly pruned) shapes of a state dict and loads it. */
export function modelFromStateDict(name: string, file: SafeTensorsFile, source: string): Module {
  const model = createModel(name);
  resizeToStateDict(model, file);
  loadStateDict(model, file, source);
  return model;
}
