/**
 * Dependency groups derived from the model's graph, as Torch-Pruning's DependencyGraph builds them
 * (spec section 1), not hand-listed per model.
 *
 * One forward pass on an example input is recorded by autograd. Every activation tensor gets a channel
 * space; the op table (src/graph/ops.ts) says how each op's output space relates to its inputs' (preserve,
 * merge, flatten, or the layer kind's rule: Conv2d / Linear consume one space and produce a new one,
 * batch-norm and depthwise convs keep it). A group is one merged space: the layers producing it
 * (out-channels pruned), its batch-norms, and the layers consuming it (in-channels pruned; a Linear after
 * a flatten of H x W maps channel c to H*W columns).
 *
 * Group order follows `get_all_groups_in_order` with backward pruning: modules in reverse definition
 * order, each producer (not ignored) whose out-channels were not seen yet opens a group, so index 0 is
 * the group nearest the output. The model's input space and, by default, its output space (the
 * classifier's outputs) are never groups.
 */
import { UnsupportedError } from '../errors.js';
import { layerKind, type Prunable } from '../nn/kinds.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { opSpecs, opSpec } from '../graph/ops.js';
import { exampleShape, layerOfOp, traceOps, weightOwners, type ExampleInput } from '../graph/trace.js';

export { exampleShape, type ExampleInput, type Prunable };

export interface Consumer {
  layer: Prunable;
  /** Input columns per channel: 1, or H*W when a Linear reads a flattened feature map. */
  factor: number;
}

export interface Group {
  index: number;
  /** Number of channels in the group. */
  channels: number;
  /** 'weight' layers whose out-channels are pruned (the root first; a depthwise conv is one of them). */
  producers: Prunable[];
  /** 'norm' layers (BatchNorm2d) that follow the kept channels. */
  batchNorms: Prunable[];
  /** Layers whose in-channels are pruned. */
  consumers: Consumer[];
  /** Dotted module names, for reports. */
  describe(): string;
}

export interface GraphOptions {
  /**
   * Layers never out-pruned (a group holding one of their outputs is not a group). Default: the layers
   * whose outputs are the model output (the classifier, found structurally, whatever its width).
   */
  ignored?: Module[];
  /** One sample's shape [channels, height, width] (default [3, 32, 32]). */
  exampleInput?: ExampleInput;
  /** @deprecated alias of exampleInput. */
  imageShape?: ExampleInput;
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

/** Traces the model and returns its dependency groups in the reference's order. */
export function dependencyGroups(model: Module, o: GraphOptions = {}): Group[] {
  const shape = exampleShape(o);
  const modules = model.namedModules();
  const nameOf = new Map(modules.map(([n, m]) => [m, n]));
  const ownerOf = weightOwners(model);

  const spaces = new UnionFind();
  const spaceOf = new Map<Tensor, number>();
  const factorOf = new Map<Tensor, number>();
  const producedBy = new Map<Prunable, number>();
  const consumedBy = new Map<Prunable, { space: number; factor: number }>();
  const normSpace = new Map<Prunable, number>();
  let nextSpace = 0;
  const space = (t: Tensor): number => {
    let s = spaceOf.get(t);
    if (s === undefined) spaceOf.set(t, (s = nextSpace++));
    return s;
  };
  const keepFactor = (from: Tensor, to: Tensor) => {
    if (factorOf.has(from)) factorOf.set(to, factorOf.get(from)!);
  };
  let inputSpace = -1;
  let outputSpace = -1;
  const rankOf = new Map<Prunable, number>();
  const byRank = (a: Prunable, b: Prunable) => rankOf.get(a)! - rankOf.get(b)!;
  traceOps(model, shape, (t, where, rank) => {
    const { op, inputs } = t.node!;
    const input = inputs[0];
    const at = where ? ` in ${where}` : '';
    switch (opSpec(op)?.channels) {
      case 'layer': {
        const { layer, kind } = layerOfOp(t, ownerOf, where);
        if (rankOf.has(layer)) throw new UnsupportedError(`Pruning graph: ${layer.path || 'the model'} is called more than once per forward pass (shared weights cannot be pruned per call).`);
        rankOf.set(layer, rank);
        if (kind.flow(layer) === 'same') {
          spaces.union(space(t), space(input));
          keepFactor(input, t);
          if (kind.role === 'norm') normSpace.set(layer, space(input));
          else producedBy.set(layer, space(t));
        } else {
          producedBy.set(layer, space(t));
          consumedBy.set(layer, { space: space(input), factor: factorOf.get(input) ?? 1 });
        }
        break;
      }
      case 'preserve':
        spaces.union(space(t), space(input));
        keepFactor(input, t);
        break;
      case 'merge':
        for (const i of inputs) spaces.union(space(t), space(i));
        keepFactor(input, t);
        break;
      case 'flatten':
        spaces.union(space(t), space(input));
        // The batch dimension must stay where it is: [1, C, H, W] -> [C, H*W] is no flatten.
        if (input.rank === 4 && t.rank === 2 && t.shape[0] === input.shape[0]) {
          // Channel c of [N, C, H, W] becomes columns c*H*W .. (c+1)*H*W - 1.
          factorOf.set(t, input.shape[2] * input.shape[3] * (factorOf.get(input) ?? 1));
        } else if (input.shape.join() === t.shape.join()) {
          keepFactor(input, t);
        } else {
          throw new UnsupportedError(`Pruning graph: reshape [${input.shape}] -> [${t.shape}]${at} has no channel rule (only flatten of [N, C, H, W]).`);
        }
        break;
      default:
        throw new UnsupportedError(`Pruning graph: the op "${op}"${at} has no channel rule; ops with one: ${opSpecs().filter((s) => s.channels !== 'none').map((s) => s.name).join(', ')} (add one with registerOp).`);
    }
  }, (x) => (inputSpace = space(x)), (y) => (outputSpace = space(y)));

  // By default the layers producing the model output (the classifier) keep their outputs.
  const outputRoot = o.ignored ? -1 : spaces.find(outputSpace);
  const ignored = new Set<Module>(o.ignored ?? []);
  const groups: Group[] = [];
  const visited = new Set<number>();
  const inputRoot = spaces.find(inputSpace);
  // Groups in reverse module order, index 0 nearest the output.
  for (const [, m] of [...modules].reverse()) {
    const produced = producedBy.get(m as Prunable);
    if (produced === undefined || ignored.has(m)) continue; // not a traced weight layer, or protected
    const root = spaces.find(produced);
    if (visited.has(root) || root === inputRoot || root === outputRoot) continue;
    visited.add(root);
    const producers = [...producedBy].filter(([, s]) => spaces.find(s) === root).map(([l]) => l).sort(byRank);
    if (producers.some((p) => ignored.has(p))) continue; // a group containing an ignored layer's outputs
    producers.sort((a, b) => (a === m ? -1 : b === m ? 1 : 0));
    const batchNorms = [...normSpace].filter(([, s]) => spaces.find(s) === root).map(([bn]) => bn).sort(byRank);
    const consumers = [...consumedBy].filter(([, c]) => spaces.find(c.space) === root).map(([layer, c]) => ({ layer, factor: c.factor }))
      .sort((a, b) => byRank(a.layer, b.layer));
    const channels = layerKind(m)!.outChannels(m);
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
