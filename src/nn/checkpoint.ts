/**
 * Model checkpoints as safetensors with PyTorch state_dict names (`features.0.weight`, ...,
 * `features.1.num_batches_tracked` as int64), so files move between this engine and PyTorch both ways.
 * Byte-level functions here work in browsers too; `checkpoint-node.ts` adds files and atomic writes.
 */
import { DataError } from '../errors.js';
import { parseSafetensors, serializeSafetensors, type SafeTensorsFile, type TensorToWrite } from '../tensor/safetensors.js';
import { checkFinite } from '../tensor/finite.js';
import { assign } from '../tensor/tensor.js';
import { layerKind } from './kinds.js';

export { checkFinite };
import { BatchNorm2d } from './layers.js';
import { createModel, type ModelName } from './models.js';
import type { Module } from './module.js';

/**
 * Serialises a model's parameters and buffers (read back from the GPU). The metadata always gets
 * `layer_widths` (JSON of {layerPath: {kind, in, out}}), so a pruned file says its own shapes.
 */
export async function modelToSafetensors(model: Module, metadata: Record<string, string> = {}): Promise<Uint8Array> {
  metadata = { layer_widths: JSON.stringify(layerWidths(model)), ...metadata };
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
  /**
   * Load tensors holding NaN or infinity (default false: refused, naming the tensor, since one NaN weight
   * silently turns every pruned or evaluated result into garbage).
   */
  allowNonFinite?: boolean;
}

/** Loads a parsed state dict into the model in place. Shapes must match exactly. */
export function loadStateDict(model: Module, file: SafeTensorsFile, source: string, { strict = true, allowNonFinite = false }: LoadOptions = {}): void {
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
  for (const name of expected.keys()) checkFinite(file.tensors.get(name)!.values, name, source, allowNonFinite);
  for (const [name, t] of expected) assign(t, file.tensors.get(name)!.values);
  for (const [prefix, bn] of bns) {
    const n = file.tensors.get(`${prefix}.num_batches_tracked`);
    if (n) bn.numBatchesTracked = n.values[0];
  }
}

/** Loads safetensors bytes into the model in place; returns the file's metadata. */
export function loadSafetensorsBytes(model: Module, bytes: ArrayBuffer | Uint8Array, source = 'checkpoint', options?: LoadOptions): Record<string, string> {
  const file = parseSafetensors(bytes, source);
  loadStateDict(model, file, source, options);
  return file.metadata;
}

/** One layer's channel counts, as saved in a checkpoint's `layer_widths` metadata. */
export interface LayerWidth {
  /** The registry's layer kind (Conv2d, Linear, BatchNorm2d). */
  kind: string;
  in: number;
  out: number;
}

/** Channel counts of every prunable layer kind by module path: what a pruned file needs to describe itself. */
export function layerWidths(model: Module): Record<string, LayerWidth> {
  const widths: Record<string, LayerWidth> = {};
  for (const [path, m] of model.namedModules()) {
    const kind = layerKind(m);
    if (kind) widths[path] = { kind: kind.name, in: kind.inChannels(m), out: kind.outChannels(m) };
  }
  return widths;
}

/**
 * Resizes a freshly built model's layers to a (possibly pruned) checkpoint, so it loads into the
 * architecture it was saved from. Files written here carry `layer_widths` metadata and are resized from
 * it; plain checkpoints (PyTorch's, older ones) are resized from their tensor shapes. Only channel
 * counts change; loadStateDict then checks every shape.
 */
export function resizeToStateDict(model: Module, file: SafeTensorsFile, source = 'checkpoint'): void {
  const modules = new Map(model.namedModules());
  let widths: Record<string, LayerWidth> = {};
  if (file.metadata.layer_widths) {
    try {
      widths = JSON.parse(file.metadata.layer_widths);
    } catch (e) {
      throw new DataError(`${source}: the layer_widths metadata is not valid JSON (${(e as Error).message}).`);
    }
    if (typeof widths !== 'object' || widths === null || Array.isArray(widths)) throw new DataError(`${source}: the layer_widths metadata is not a map of layers.`);
    for (const [path, w] of Object.entries(widths)) {
      if (typeof w !== 'object' || w === null) throw new DataError(`${source}: layer_widths of "${path}" is not a {kind, in, out} entry.`);
      const m = modules.get(path);
      const kind = m && layerKind(m);
      if (!m || !kind || kind.name !== w.kind) throw new DataError(`${source}: layer_widths names ${String(w.kind)} "${path}", which this model does not have (a checkpoint of another architecture?).`);
      if (!(Number.isInteger(w.in) && w.in > 0 && Number.isInteger(w.out) && w.out > 0)) throw new DataError(`${source}: layer_widths of "${path}" is not a pair of positive integers.`);
      // Pruning only removes channels: a width beyond the architecture's is a corrupt file, not a model.
      const [inMax, outMax] = [kind.inChannels(m), kind.outChannels(m)];
      if (w.in > inMax || w.out > outMax) throw new DataError(`${source}: layer_widths of "${path}" is ${w.in} in, ${w.out} out; the architecture has at most ${inMax} in, ${outMax} out.`);
    }
  }
  for (const [prefix, m] of modules) {
    const shapeOf = (tensor: string) => file.tensors.get(prefix ? `${prefix}.${tensor}` : tensor)?.shape;
    layerKind(m)?.resize(m, shapeOf, widths[prefix]);
  }
}

/** Builds the named architecture at the (possibly pruned) shapes of a state dict and loads it. */
export function modelFromStateDict(name: string, file: SafeTensorsFile, source: string, options?: LoadOptions): Module {
  const model = createModel(name as ModelName); // checked there: an unknown name is an ArgumentError
  resizeToStateDict(model, file, source);
  loadStateDict(model, file, source, options);
  return model;
}
