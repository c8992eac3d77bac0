/**
 * Dependency groups derived from the model's graph, as Torch-Pruning's DependencyGraph builds them
 * (spec section 1), not hand-listed per model.
 *
 * One forward pass on a single image is recorded by autograd. Every activation tensor gets a channel
 * space; batch-norm, ReLU, pooling and flatten keep their input's space, a residual add merges the spaces
 * of its operands, and Conv2d / Linear consume one space and produce a new one. A group is one merged
 * space: the layers producing it (out-channels pruned), its batch-norms, and the layers consuming it
 * (in-channels pruned; a Linear after a flatten of H x W maps channel c to H*W columns).
 *
 * Group order follows `get_all_groups_in_order` with backward pruning: modules in reverse definition
 * order, each root (Conv2d or Linear, not ignored) whose out-channels were not seen yet opens a group,
 * so index 0 is the group nearest the output.
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { isRecording } from '../tensor/autograd.js';
import { fromArray, tidy, type Tensor } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d, Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';

export type Prunable = Conv2d | Linear;

export interface Consumer {
  layer: Prunable;
  /** Input columns per channel: 1, or H*W when a Linear reads a flattened feature map. */
  factor: number;
}

export interface Group {
  index: number;
  /** Number of channels in the group. */
  channels: number;
  /** Layers whose out-channels are pruned (the root first). */
  producers: Prunable[];
  batchNorms: BatchNorm2d[];
  consumers: Consumer[];
  /** Dotted module names, for reports. */
  describe(): string;
}

export interface GraphOptions {
  /** Layers never out-pruned. Default: every Linear with `numClasses` outputs (the classifier). */
  ignored?: Module[];
  numClasses?: number;
  imageShape?: [number, number, number];
}

class UnionFind {
  private readonly parent = new Map<number, number>();
  find(x: number): number {
    let p = this.parent.get(x) ?? x;
    if (p !== x) {
      p = this.find(p);
      this.parent.set(x, p);
    }
    return p;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent.set(ra, rb);
  }
}

/** Module of each Conv2d, Linear and BatchNorm2d weight tensor (how a traced op finds its layer). */
export function weightOwners(model: Module): Map<Tensor, Module> {
  const owners = new Map<Tensor, Module>();
  for (const [, m] of model.namedModules()) {
    if (m instanceof Conv2d || m instanceof Linear || m instanceof BatchNorm2d) owners.set(m.weight, m);
  }
  return owners;
}

/**
 * Records one eval-mode forward pass (running statistics untouched) on a zero image and calls `visit`
 * once per recorded op, from the output back, while the graph is alive. `onInput` sees the input first.
 */
export function traceOps(model: Module, imageShape: [number, number, number], visit: (t: Tensor) => void, onInput?: (x: Tensor) => void): void {
  if (!isRecording()) throw new ArgumentError('Tracing the model needs autograd recording (called inside noGrad?).');
  const wasTraining = model.training;
  model.eval();
  try {
    tidy(() => {
      const x = fromArray(new Float32Array(imageShape.reduce((a, b) => a * b)), [1, ...imageShape]);
      onInput?.(x);
      const seen = new Set<Tensor>();
      const stack: Tensor[] = [model.call(x)];
      while (stack.length) {
        const t = stack.pop()!;
        if (seen.has(t) || !t.node) continue;
        seen.add(t);
        visit(t);
        for (const i of t.node.inputs) if (i.node) stack.push(i);
      }
    });
  } finally {
    model.train(wasTraining);
  }
}

/** Traces the model and returns its dependency groups in the reference's order. */
export function dependencyGroups(model: Module, o: GraphOptions = {}): Group[] {
  const imageShape = o.imageShape ?? [3, 32, 32];
  const numClasses = o.numClasses ?? 10;
  const modules = model.namedModules();
  const nameOf = new Map(modules.map(([n, m]) => [m, n]));
  const ownerOf = weightOwners(model);
  const ignored = new Set<Module>(o.ignored ?? modules.map(([, m]) => m).filter((m) => m instanceof Linear && m.outFeatures === numClasses));

  const spaces = new UnionFind();
  const spaceOf = new Map<Tensor, number>();
  // Input columns per channel of a flattened map, found by walking back from the consumer's input:
  // the trace visits ops from the output backwards, so a consumer is seen before its flatten.
  const factorOf = (t: Tensor): number => {
    const node = t.node;
    if (!node) return 1;
    const input = node.inputs[0];
    if (node.op === 'reshape') return input.rank === 4 ? input.shape[2] * input.shape[3] * factorOf(input) : factorOf(input);
    if (node.op === 'relu' || node.op === 'maxPool2d' || node.op === 'avgPool2d' || node.op === 'scale') return factorOf(input);
    return 1;
  };
  const producedBy = new Map<Prunable, number>();
  const consumedBy = new Map<Prunable, { space: number; factor: number }>();
  const bnSpace = new Map<BatchNorm2d, number>();
  let nextSpace = 0;
  const space = (t: Tensor): number => {
    let s = spaceOf.get(t);
    if (s === undefined) spaceOf.set(t, (s = nextSpace++));
    return s;
  };
  let inputSpace = -1;
  traceOps(model, imageShape, (t) => {
    const { op, inputs } = t.node!;
    const input = inputs[0];
    if (op === 'conv2d' || op === 'linear') {
      const layer = ownerOf.get(inputs[1]) as Prunable | undefined;
      if (!layer) throw new UnsupportedError(`dependencyGroups: a ${op} whose weight belongs to no module.`);
      producedBy.set(layer, space(t));
      consumedBy.set(layer, { space: space(input), factor: factorOf(input) });
    } else if (op === 'batchNorm2d') {
      const bn = ownerOf.get(inputs[1]) as BatchNorm2d | undefined;
      if (!bn) throw new UnsupportedError('dependencyGroups: a batch-norm whose weight belongs to no module.');
      bnSpace.set(bn, space(input));
      spaces.union(space(t), space(input));
    } else if (op === 'add') {
      spaces.union(space(t), space(inputs[0]));
      spaces.union(space(t), space(inputs[1]));
    } else if (op === 'reshape') {
      // Flatten [N, C, H, W] -> [N, C*H*W]: channel c becomes columns c*H*W .. (c+1)*H*W - 1.
      spaces.union(space(t), space(input));
    } else if (op === 'relu' || op === 'maxPool2d' || op === 'avgPool2d' || op === 'scale') {
      spaces.union(space(t), space(input));
    } else {
      throw new UnsupportedError(`dependencyGroups: the op "${op}" is not supported in a prunable model.`);
    }
  }, (x) => (inputSpace = space(x)));

  // Groups in reverse module order, index 0 nearest the output.
  const groups: Group[] = [];
  const visited = new Set<number>();
  const inputRoot = spaces.find(inputSpace);
  for (const [, m] of [...modules].reverse()) {
    if (!(m instanceof Conv2d || m instanceof Linear) || ignored.has(m)) continue;
    const produced = producedBy.get(m);
    if (produced === undefined) continue; // not on the traced path
    const root = spaces.find(produced);
    if (visited.has(root) || root === inputRoot) continue;
    visited.add(root);
    const producers = [...producedBy].filter(([, s]) => spaces.find(s) === root).map(([l]) => l);
    if (producers.some((p) => ignored.has(p))) continue; // a group containing an ignored layer's outputs
    producers.sort((a, b) => (a === m ? -1 : b === m ? 1 : 0));
    const batchNorms = [...bnSpace].filter(([, s]) => spaces.find(s) === root).map(([bn]) => bn);
    const consumers = [...consumedBy].filter(([, c]) => spaces.find(c.space) === root).map(([layer, c]) => ({ layer, factor: c.factor }));
    const channels = m instanceof Conv2d ? m.outChannels : m.outFeatures;
    const index = groups.length;
    groups.push({
      index, channels, producers, batchNorms, consumers,
      describe: () => `group ${index} (${channels} channels): out ${producers.map((p) => nameOf.get(p)).join(', ')}` +
        `${batchNorms.length ? `; bn ${batchNorms.map((b) => nameOf.get(b)).join(', ')}` : ''}` +
        `; in ${consumers.map((c) => nameOf.get(c.layer)).join(', ')}`,
    });
  }
  return groups;
}
