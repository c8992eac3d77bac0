/**
 * Evaluating only what changed: a pruned group changes the layers from its producers on, so every pruned
 * model of one group computes, up to the first producer's input, exactly what the (BN-folded) original
 * model does. `keepInputs` (metrics.ts) keeps the original's activations at such an input, and
 * `evaluate(..., { resumeFrom })` evaluates the pruned models from there. This file says where that is
 * valid:
 * - the module's input must be a cut: the input tensor carries everything later ops read. In a chain
 *   (VGG) every layer input is one; inside a residual block the shortcut also reads an earlier
 *   activation, and after a concat the other branch does, so those are not;
 * - the model being resumed must hold, in every module the forward pass enters before the cut, the same
 *   parameters and buffers bit for bit as the model whose activations were kept (`PrefixState`): any
 *   difference (a batch-norm folded differently, a layer changed before the group) means whole evaluation.
 */
import { empty, getRuntime, tidy, type Tensor } from '../tensor/tensor.js';
import { isRecording, noGrad } from '../tensor/autograd.js';
import { topologicalOps, traceGraph, type ExampleInput } from '../graph/trace.js';
import { inputTaps, type Module } from './module.js';

/**
 * Runs one shapes-only forward pass of `model` with taps on `modules`, noting each one's first input in
 * the order they are entered, and how often each was entered.
 */
function tapInputs<T>(model: Module, modules: Module[], sample: ExampleInput, use: (inputOf: Map<Module, Tensor>, order: Module[], input: Tensor, output: Tensor, entries: Map<Module, number>) => T): T {
  const inputOf = new Map<Module, Tensor>();
  const entries = new Map<Module, number>();
  const order: Module[] = [];
  for (const m of modules) {
    inputTaps.set(m, (x) => {
      entries.set(m, (entries.get(m) ?? 0) + 1);
      if (!inputOf.has(m)) { inputOf.set(m, x); order.push(m); }
    });
  }
  try {
    return getRuntime().shapesOnly(() => traceGraph(model, sample, (g) => use(inputOf, order, g.input, g.output, entries)));
  } finally {
    for (const m of modules) inputTaps.delete(m);
  }
}

/**
 * The modules (of `candidates`) whose input is a cut of `model` for inputs of one sample's shape `sample`,
 * entered once per forward pass, in the order the forward pass reaches them. Traced without GPU work; [] inside noGrad (no graph).
 */
export function resumableModules(model: Module, candidates: Module[], sample: ExampleInput): Module[] {
  if (!isRecording()) return [];
  return tapInputs(model, candidates, sample, (inputOf, order, x, y, entries) => {
    const ops = topologicalOps(y);
    const reached = new Set<Tensor>(ops);
    const isActivation = (t: Tensor) => t === x || t.node !== null;
    return order.filter((m) => {
      // A module entered twice (a shared layer) has no single input to keep or resume from.
      if (entries.get(m) !== 1) return false;
      const cut = inputOf.get(m)!;
      if (cut !== x && !reached.has(cut)) return false;
      // Everything computed before the cut (the model input included).
      const before = new Set<Tensor>();
      const stack = cut === x ? [] : [...cut.node!.inputs];
      while (stack.length) {
        const t = stack.pop()!;
        if (before.has(t) || !isActivation(t)) continue;
        before.add(t);
        if (t.node) stack.push(...t.node.inputs);
      }
      // No op after the cut may read any of it.
      for (const t of ops) {
        if (t === cut || before.has(t) || !t.node) continue;
        if (t.node.inputs.some((i) => i !== cut && before.has(i))) return false;
      }
      return true;
    });
  });
}

/**
 * Where every pruned model of a group can be evaluated from: the input of the group's first member in
 * forward order (its producers come before its consumers), when that input is a cut; else null.
 */
export function groupResumeModule(model: Module, members: Module[], sample: ExampleInput): Module | null {
  if (!isRecording()) return null;
  const first = tapInputs(model, members, sample, (_inputOf, order) => order[0] ?? null);
  return first && resumableModules(model, [first], sample).length ? first : null;
}

/** Paths of the modules the forward pass enters before the cut (its ancestors included: they may use tensors of their own); null when it never enters the cut. */
export function modulesBefore(model: Module, cutPath: string, sample: ExampleInput): string[] | null {
  const all = model.namedModules().map(([, m]) => m);
  const order: Module[] = [];
  for (const m of all) inputTaps.set(m, () => void order.push(m));
  const wasTraining = model.training;
  model.eval();
  try {
    getRuntime().shapesOnly(() => noGrad(() => tidy(() => void model.call(empty([1, ...sample])))));
  } finally {
    for (const m of all) inputTaps.delete(m);
    model.train(wasTraining);
  }
  const at = order.findIndex((m) => m.path === cutPath);
  return at < 0 ? null : [...new Set(order.slice(0, at).map((m) => m.path))];
}

/** The parameters and buffers (by state name) of the modules before a cut, read back to the host. */
export type PrefixState = Map<string, Float32Array>;

/** `model`'s own tensors of the modules at `paths` (not their children's: those are listed themselves). */
export async function prefixState(model: Module, paths: string[]): Promise<PrefixState> {
  const wanted = new Set(paths);
  const owner = (name: string) => (name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : '');
  const state: PrefixState = new Map();
  for (const [name, t] of model.stateTensors()) if (wanted.has(owner(name))) state.set(name, await t.data());
  return state;
}

/** Whether two prefix states are equal bit for bit (same names, shapes and values; NaN equals NaN by bits). */
export function samePrefixState(a: PrefixState, b: PrefixState): boolean {
  if (a.size !== b.size) return false;
  for (const [name, x] of a) {
    const y = b.get(name);
    if (!y || y.length !== x.length) return false;
    const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const yb = new Uint32Array(y.buffer, y.byteOffset, y.length);
    for (let i = 0; i < xb.length; i++) if (xb[i] !== yb[i]) return false;
  }
  return true;
}
