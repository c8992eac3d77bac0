/**
 * Tracing a model's graph: one eval-mode forward pass recorded by autograd, the post-order walk of its ops,
 * and the module owning each weight. The pruner's dependency groups, batch-norm pairing and the ONNX
 * exporter all read the graph through these.
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { layerKind, layerKindNames, type LayerKind, type Prunable } from '../nn/kinds.js';
import { addForwardHook, type Module } from '../nn/module.js';
import { isRecording } from '../tensor/autograd.js';
import { fromArray, getRuntime, tidy, type Tensor } from '../tensor/tensor.js';

/** One sample's shape [channels, height, width]. */
export type ExampleInput = [number, number, number];

/** The input shape an options object names (`inputShape`, or a deprecated alias), checked; default [3, 32, 32]. */
export function exampleShape(o: { inputShape?: ExampleInput; exampleInput?: ExampleInput; imageShape?: ExampleInput }): ExampleInput {
  const shape = o.inputShape ?? o.exampleInput ?? o.imageShape ?? [3, 32, 32];
  if (shape.length !== 3 || !shape.every((v) => Number.isInteger(v) && v > 0)) {
    throw new ArgumentError(`inputShape must be [channels, height, width] of positive integers, got [${shape}].`);
  }
  return shape;
}

/** The innermost module owning each parameter tensor (how a traced op finds its layer). */
export function weightOwners(model: Module): Map<Tensor, Module> {
  const owners = new Map<Tensor, Module>();
  // namedModules() lists parents before children and a module's parameters include its children's:
  // later (deeper) modules overwrite.
  for (const [, m] of model.namedModules()) for (const [, t] of m.namedParameters()) owners.set(t, m);
  return owners;
}

/**
 * Every recorded op between the input and `out` in post-order: inputs before the ops that read them.
 * Iterative: deep networks would overflow recursion.
 */
export function topologicalOps(out: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([out]);
  const stack: [Tensor, number][] = [[out, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const inputs = top[0].node?.inputs ?? [];
    if (top[1] < inputs.length) {
      const next = inputs[top[1]++];
      if (next.node && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(top[0]);
    }
  }
  return order;
}

/** The ops reading each tensor, over a post-order list of ops. */
export function readersOf(ops: Tensor[]): Map<Tensor, Tensor[]> {
  const readers = new Map<Tensor, Tensor[]>();
  for (const t of ops) for (const i of t.node?.inputs ?? []) readers.set(i, [...(readers.get(i) ?? []), t]);
  return readers;
}

/** What `traceOps` hands its callback: the ops in post-order, while the graph is alive. */
export interface TracedGraph {
  input: Tensor;
  output: Tensor;
  /** Every recorded op, inputs before readers. */
  ops: Tensor[];
  /** Path of the innermost module whose output a tensor is (for names and error messages). */
  modulePath(t: Tensor): string | undefined;
  /** The order a walk back from the output meets each op (reports list layers in this order). */
  rank(t: Tensor): number;
}

/**
 * Records one eval-mode forward pass (running statistics untouched) on a zero input of `batch` samples
 * and hands the graph to `use` while it is alive; everything the pass created is freed afterwards.
 * `shapesOnly`: no kernel runs (Runtime.shapesOnly), for callers that read the graph and shapes but no
 * value the pass computes (the pruner's groups and BN pairs: a whole forward pass per trace otherwise).
 */
export function traceGraph<T>(model: Module, exampleInput: ExampleInput, use: (g: TracedGraph) => T, batch = 1, shapesOnly = false): T {
  if (!isRecording()) throw new ArgumentError('Tracing the model needs autograd recording (called inside noGrad?).');
  const wasTraining = model.training;
  model.eval();
  const outputOf = new Map<Tensor, string>();
  // Hooks run innermost first (a child's call returns before its parent's), so the first path sticks.
  const remove = addForwardHook((_m, _x, y, path) => {
    if (!outputOf.has(y)) outputOf.set(y, path || '(model)');
  });
  try {
    const pass = (fn: () => T) => (shapesOnly ? getRuntime().shapesOnly(fn) : fn());
    return pass(() => tidy(() => {
      const input = fromArray(new Float32Array(batch * exampleInput.reduce((a, b) => a * b)), [batch, ...exampleInput]);
      const output = model.call(input);
      const rank = new Map<Tensor, number>();
      const back: Tensor[] = [output];
      while (back.length) {
        const t = back.pop()!;
        if (rank.has(t) || !t.node) continue;
        rank.set(t, rank.size);
        for (const i of t.node.inputs) if (i.node) back.push(i);
      }
      const ops = topologicalOps(output).filter((t) => t.node);
      const result = use({ input, output, ops, modulePath: (t) => outputOf.get(t), rank: (t) => rank.get(t)! });
      // tidy keeps a returned tensor alive; a plain result never is one.
      return result;
    }));
  } finally {
    remove();
    model.train(wasTraining);
  }
}

/**
 * `traceGraph` as a visitor: `visit` sees every recorded op in forward order (post-order), `onInput` the
 * input first and `onOutput` the output.
 */
export function traceOps(
  model: Module, exampleInput: ExampleInput, visit: (t: Tensor, modulePath: string | undefined, rank: number) => void,
  onInput?: (x: Tensor) => void, onOutput?: (y: Tensor) => void,
): void {
  traceGraph(model, exampleInput, (g) => {
    onInput?.(g.input);
    onOutput?.(g.output);
    for (const t of g.ops) visit(t, g.modulePath(t), g.rank(t));
  }, 1, true);
}

/** The registered layer running a traced layer op (its weight is inputs[1]), with its kind. */
export function layerOfOp(t: Tensor, owners: Map<Tensor, Module>, where: string | undefined): { layer: Prunable; kind: LayerKind } {
  const { op, inputs } = t.node!;
  const owner = inputs[1] ? owners.get(inputs[1]) : undefined;
  const kind = owner && layerKind(owner);
  if (!owner || !kind) {
    const who = owner ? `module ${owner.path || '(model)'} (${owner.constructor.name})` : `a ${op} whose weight belongs to no module${where ? ` (inside ${where})` : ''}`;
    throw new UnsupportedError(`Pruning graph: ${who} runs ${op} but is not a registered layer kind (${layerKindNames().join(', ')}; add one with registerLayerKind).`);
  }
  return { layer: owner as Prunable, kind };
}
