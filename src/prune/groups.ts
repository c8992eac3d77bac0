/**
 * Dependency groups derived from the model's graph, as Torch-Pruning's DependencyGraph builds them
 * (spec section 1), not hand-listed per model.
 *
 * One forward pass on an example input is recorded by autograd. Every channel of every activation gets an
 * id; the op table (src/graph/ops.ts) says how each op's output channels relate to its inputs' (preserve,
 * merge, flatten, concat / slice at channel offsets, or the layer kind's rule: Conv2d / Linear consume
 * channels and produce new ones, batch-norm and depthwise convs keep them). Channels that must be pruned
 * together fall into one class (union-find). Each class lists its layer slots: the producer rows, norm
 * channels and consumer columns it is (a layer may hold several classes, at different offsets, e.g. the
 * consumer of a concatenation). A group is a run of classes with the same slots at consecutive indices:
 * n channels sitting at [offset, offset + n) in each of its layers. Pruning channel c of a concat input
 * thus removes channel offset + c in every reader of the concat.
 *
 * Group order follows `get_all_groups_in_order` with backward pruning: modules in reverse definition
 * order, each producer (not ignored) whose out-channels were not seen yet opens its groups (by offset), so
 * index 0 is the group nearest the output. The model's input channels and, by default, its output channels
 * (the classifier's outputs) are never groups.
 */
import { UnsupportedError } from '../errors.js';
import { layerKind, type Prunable } from '../nn/kinds.js';
import { channelSliceOf, type ChannelSlice } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { opSpec, opSpecs } from '../graph/ops.js';
import { exampleShape, layerOfOp, traceOps, weightOwners, type ExampleInput } from '../graph/trace.js';

export { exampleShape, type ExampleInput, type Prunable };

/** A layer's channels [offset, offset + group.channels) along one of its axes. */
export interface Slot {
  layer: Prunable;
  offset: number;
}

export interface Consumer extends Slot {
  /** Input columns per channel: 1, or H*W when a Linear reads a flattened feature map. */
  factor: number;
}

export interface Group {
  index: number;
  /** Number of channels in the group. */
  channels: number;
  /**
   * Equal blocks the channels are pruned in (a grouped conv with 1 < groups < channels reads or writes
   * them): the same channels of every block go, so each conv group keeps its width. Default 1.
   */
  blocks: number;
  /** 'weight' layers whose out-channels are pruned (the root first; a depthwise conv is one of them). */
  producers: Prunable[];
  /** 'norm' layers (BatchNorm2d) that follow the kept channels. */
  batchNorms: Prunable[];
  /** Layers whose in-channels are pruned, at their offsets (a layer may read the group at several). */
  consumers: Consumer[];
  /** Where the group sits in each producer's out-channels and each norm's channels (offset 0 unless concatenated or sliced). */
  outSlots: Slot[];
  normSlots: Slot[];
  /** Slices whose bounds index into these channels (an imported Slice or Split): moved when they are pruned. */
  viewSlots: { slice: ChannelSlice; offset: number }[];
  /** Dotted module names (with [from:to] where the group is a part of the layer's channels), for reports. */
  describe(): string;
}

export interface GraphOptions {
  /**
   * Layers never out-pruned (a group holding one of their outputs is not a group). Default: the layers
   * whose outputs are the model output (the classifier, found structurally, whatever its width).
   */
  ignored?: Module[];
  /** One sample's shape [channels, height, width] (default [3, 32, 32]). */
  inputShape?: ExampleInput;
  /** @deprecated Use `inputShape` (the one name across prune, complexity, inferenceSpeed and exportOnnx). */
  exampleInput?: ExampleInput;
  /** @deprecated Use `inputShape`. */
  imageShape?: ExampleInput;
}

class UnionFind {
  private readonly parent: number[] = [];
  find(x: number): number {
    let root = x;
    while ((this.parent[root] ?? root) !== root) root = this.parent[root];
    while (x !== root) {
      const next = this.parent[x];
      this.parent[x] = root;
      x = next;
    }
    return root;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[ra] = rb;
  }
}

/** A traced tensor's channels: ids base .. base + count - 1, `factor` columns each (after a flatten). */
interface Channels {
  base: number;
  count: number;
  factor: number;
}

type Role = 'out' | 'norm' | 'in' | 'view';
const ROLE_ORDER: Record<Role, number> = { out: 0, norm: 1, in: 2, view: 3 };

/** One layer position a channel id stands for. */
interface Entry {
  layer: Prunable;
  role: Role;
  index: number;
  factor: number;
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/** Traces the model and returns its dependency groups in the reference's order. */
export function dependencyGroups(model: Module, o: GraphOptions = {}): Group[] {
  const shape = exampleShape(o);
  const modules = model.namedModules();
  const nameOf = new Map(modules.map(([n, m]) => [m, n]));
  const ownerOf = weightOwners(model);

  const uf = new UnionFind();
  let nextId = 0;
  const channelsOf = new Map<Tensor, Channels>();
  const entries: Entry[][] = [];
  const blocksAt = new Map<number, number>(); // channel id -> equal blocks required by a grouped layer
  const fresh = (count: number, factor = 1): Channels => {
    const c = { base: nextId, count, factor };
    nextId += count;
    return c;
  };
  /** A tensor's channels (axis 1; a rank-1 or rank-0 tensor has one). */
  const channels = (t: Tensor): Channels => {
    let c = channelsOf.get(t);
    if (!c) channelsOf.set(t, (c = fresh(t.rank >= 2 ? t.shape[1] : 1)));
    return c;
  };
  const addEntries = (c: Channels, layer: Prunable, role: Role, blocks: number) => {
    for (let i = 0; i < c.count; i++) {
      (entries[c.base + i] ??= []).push({ layer, role, index: i, factor: c.factor });
      if (blocks > 1) blocksAt.set(c.base + i, lcm(blocksAt.get(c.base + i) ?? 1, blocks));
    }
  };
  const unite = (a: Channels, b: Channels, offsetInB = 0) => {
    for (let i = 0; i < a.count; i++) uf.union(a.base + i, b.base + offsetInB + i);
  };
  let input: Channels | undefined;
  let outputTensor: Tensor | undefined;
  const rankOf = new Map<Prunable, number>();
  const byRank = (a: Prunable, b: Prunable) => rankOf.get(a)! - rankOf.get(b)!;

  traceOps(model, shape, (t, where, rank) => {
    const { op, inputs, attrs } = t.node!;
    const at = where ? ` in ${where}` : '';
    const refuse = (why: string): never => {
      throw new UnsupportedError(`Pruning graph: ${op} [${inputs.map((i) => `[${i.shape}]`).join(', ')}] -> [${t.shape}]${at}: ${why}`);
    };
    const x = inputs[0] ? channels(inputs[0]) : undefined;
    switch (opSpec(op)?.channels) {
      case 'layer': {
        const { layer, kind } = layerOfOp(t, ownerOf, where);
        if (rankOf.has(layer)) throw new UnsupportedError(`Pruning graph: ${layer.path || 'the model'} is called more than once per forward pass (shared weights cannot be pruned per call).`);
        rankOf.set(layer, rank);
        const blocks = kind.channelBlocks?.(layer) ?? 1;
        if (kind.flow(layer) === 'same') {
          channelsOf.set(t, x!);
          addEntries(x!, layer, kind.role === 'norm' ? 'norm' : 'out', blocks);
        } else {
          if (kind.inChannels(layer) !== x!.count * x!.factor) refuse(`the layer reads ${kind.inChannels(layer)} inputs, but its input has ${x!.count} channels x ${x!.factor}.`);
          const y = fresh(kind.outChannels(layer));
          channelsOf.set(t, y);
          addEntries(y, layer, 'out', blocks);
          addEntries(x!, layer, 'in', blocks);
        }
        break;
      }
      case 'preserve':
        channelsOf.set(t, x!);
        break;
      case 'merge': {
        // Operands with the output's channels are one channel space; a broadcast operand without them
        // (a scalar, a [N, 1, H, W] map) carries none.
        const count = t.rank >= 2 ? t.shape[1] : 1;
        const shared = inputs.map(channels).filter((c) => c.count === count);
        for (const c of inputs.map(channels)) if (c.count !== count && c.count !== 1) refuse(`operand channels ${c.count} do not match the output's ${count}.`);
        if (shared.some((c) => c.factor !== shared[0].factor)) refuse('its operands are flattened differently.');
        for (const c of shared.slice(1)) unite(c, shared[0]);
        channelsOf.set(t, shared[0] ?? fresh(count));
        break;
      }
      case 'flatten': {
        const a = inputs[0];
        if (a.rank === 4 && t.rank === 2 && t.shape[0] === a.shape[0]) {
          // Channel c of [N, C, H, W] becomes columns c*H*W .. (c+1)*H*W - 1.
          channelsOf.set(t, { ...x!, factor: a.shape[2] * a.shape[3] * x!.factor });
        } else if (a.shape.join() === t.shape.join()) {
          channelsOf.set(t, x!);
        } else {
          throw new UnsupportedError(`Pruning graph: reshape [${a.shape}] -> [${t.shape}]${at} has no channel rule (only flatten of [N, C, H, W]; the batch dimension must stay first).`);
        }
        break;
      }
      case 'concat': {
        if (attrs?.axis !== 1) {
          // Along the batch or a spatial axis every input has the output's channels: one space.
          const all = inputs.map(channels);
          for (const c of all.slice(1)) {
            if (c.count !== all[0].count || c.factor !== all[0].factor) refuse('inputs with different channels.');
            unite(c, all[0]);
          }
          channelsOf.set(t, all[0]);
          break;
        }
        const parts = inputs.map(channels);
        if (parts.some((c) => c.factor !== parts[0].factor)) refuse('its inputs are flattened differently.');
        const y = fresh(parts.reduce((s, c) => s + c.count, 0), parts[0].factor);
        let offset = 0;
        for (const c of parts) {
          unite(c, y, offset);
          offset += c.count;
        }
        channelsOf.set(t, y);
        break;
      }
      case 'slice': {
        if (attrs?.axis !== 1) {
          channelsOf.set(t, x!);
          break;
        }
        if (x!.factor !== 1) refuse('slicing flattened features is not supported.');
        // A slice whose bounds must follow pruning (ChannelSlice) is listed at every channel it indexes.
        const view = channelSliceOf(t);
        if (view) addEntries(x!, view as unknown as Prunable, 'view', 1);
        // A view of channels start .. end - 1 of the input: the same ids.
        channelsOf.set(t, { base: x!.base + attrs.start, count: attrs.end - attrs.start, factor: 1 });
        break;
      }
      default:
        throw new UnsupportedError(`Pruning graph: the op "${op}"${at} has no channel rule; ops with one: ${opSpecs().filter((s) => s.channels !== 'none').map((s) => s.name).join(', ')} (add one with registerOp).`);
    }
  }, (x) => (input = channels(x)), (y) => (outputTensor = y));
  const output = outputTensor && channelsOf.get(outputTensor);

  // Classes of channels pruned together, with every layer position they stand for.
  const classEntries = new Map<number, Entry[]>();
  const classBlocks = new Map<number, number>();
  for (let id = 0; id < nextId; id++) {
    const root = uf.find(id);
    if (entries[id]) {
      const list = classEntries.get(root);
      if (list) list.push(...entries[id]);
      else classEntries.set(root, [...entries[id]]);
    }
    const b = blocksAt.get(id);
    if (b) classBlocks.set(root, lcm(classBlocks.get(root) ?? 1, b));
  }
  const excluded = new Set<number>();
  const exclude = (c: Channels | undefined) => {
    for (let i = 0; c && i < c.count; i++) excluded.add(uf.find(c.base + i));
  };
  exclude(input);
  // By default the layers producing the model output (the classifier) keep their outputs.
  if (!o.ignored) exclude(output);
  const ignored = new Set<Module>(o.ignored ?? []);
  const layerId = new Map<Module, number>(modules.map(([, m], i) => [m, i]));
  const classes: { root: number; entries: Entry[]; key: string }[] = [];
  for (const [root, list] of classEntries) {
    if (excluded.has(root) || !list.some((e) => e.role === 'out') || list.some((e) => e.role === 'out' && ignored.has(e.layer))) continue;
    list.sort((a, b) => layerId.get(a.layer)! - layerId.get(b.layer)! || ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || a.index - b.index);
    classes.push({ root, entries: list, key: list.map((e) => `${layerId.get(e.layer)}:${e.role}:${e.factor}`).join(' ') });
  }
  // Runs: classes with the same slots at consecutive indices in every one of them.
  const byKey = new Map<string, typeof classes>();
  for (const c of classes) {
    const list = byKey.get(c.key);
    if (list) list.push(c);
    else byKey.set(c.key, [c]);
  }
  const runs: { entries: Entry[]; length: number; blocks: number }[] = [];
  for (const list of byKey.values()) {
    list.sort((a, b) => {
      for (let p = 0; p < a.entries.length; p++) if (a.entries[p].index !== b.entries[p].index) return a.entries[p].index - b.entries[p].index;
      return 0;
    });
    let run: (typeof runs)[number] | null = null;
    let prev: (typeof classes)[number] | null = null;
    for (const c of list) {
      const continues = prev !== null && c.entries.every((e, p) => e.index === prev!.entries[p].index + 1);
      if (!continues) runs.push((run = { entries: c.entries, length: 0, blocks: 1 }));
      run!.length++;
      run!.blocks = lcm(run!.blocks, classBlocks.get(c.root) ?? 1);
      prev = c;
    }
  }

  const groups: Group[] = [];
  const taken = new Set<(typeof runs)[number]>();
  const width = (e: Entry) => {
    if (e.role === 'view') return (e.layer as unknown as ChannelSlice).width;
    const kind = layerKind(e.layer)!;
    return e.role === 'in' ? kind.inChannels(e.layer) / e.factor : kind.outChannels(e.layer);
  };
  // Groups in reverse module order, index 0 nearest the output; a producer's groups by offset.
  for (const [, m] of [...modules].reverse()) {
    const mine = runs.filter((r) => !taken.has(r) && r.entries.some((e) => e.role === 'out' && e.layer === m))
      .sort((a, b) => a.entries.find((e) => e.layer === m)!.index - b.entries.find((e) => e.layer === m)!.index);
    for (const run of mine) {
      taken.add(run);
      const n = run.length;
      const slot = (e: Entry) => ({ layer: e.layer, offset: e.index });
      const bySlotRank = (a: Slot, b: Slot) => byRank(a.layer, b.layer) || a.offset - b.offset;
      const outSlots = run.entries.filter((e) => e.role === 'out').map(slot).sort(bySlotRank)
        .sort((a, b) => (a.layer === m ? -1 : b.layer === m ? 1 : 0));
      const normSlots = run.entries.filter((e) => e.role === 'norm').map(slot).sort(bySlotRank);
      const consumers = run.entries.filter((e) => e.role === 'in').map((e) => ({ ...slot(e), factor: e.factor })).sort(bySlotRank);
      const viewSlots = run.entries.filter((e) => e.role === 'view').map((e) => ({ slice: e.layer as unknown as ChannelSlice, offset: e.index }));
      if (run.blocks > 1) {
        // Equal blocks need the whole width of the grouped layer (its groups cannot be cut by a concat).
        for (const e of run.entries) {
          if (e.role !== 'view' && (layerKind(e.layer)!.channelBlocks?.(e.layer) ?? 1) > 1 && width(e) !== n) {
            throw new UnsupportedError(`Pruning graph: ${e.layer.path || 'a layer'} is a grouped convolution whose ${e.role === 'in' ? 'input' : 'output'} channels are only partly one group (${n} of ${width(e)}); its groups cannot be pruned equally.`);
          }
        }
        if (n % run.blocks !== 0) throw new UnsupportedError(`Pruning graph: ${n} channels of ${m.path || 'a layer'} do not split into ${run.blocks} equal groups.`);
      }
      const unique = (slots: Slot[]) => [...new Set(slots.map((s) => s.layer))];
      const index = groups.length;
      const part = (e: Slot & { factor?: number }, role: Role) => {
        const w = width({ layer: e.layer, role, index: e.offset, factor: e.factor ?? 1 });
        return `${nameOf.get(e.layer)}${n === w ? '' : `[${e.offset}:${e.offset + n}]`}`;
      };
      groups.push({
        index, channels: n, blocks: run.blocks, producers: unique(outSlots), batchNorms: unique(normSlots), consumers, outSlots, normSlots, viewSlots,
        describe: () => `group ${index} (${n} channels${run.blocks > 1 ? ` in ${run.blocks} blocks` : ''}): out ${outSlots.map((s) => part(s, 'out')).join(', ')}` +
          `${normSlots.length ? `; bn ${normSlots.map((s) => part(s, 'norm')).join(', ')}` : ''}` +
          `; in ${consumers.map((c) => part(c, 'in')).join(', ')}`,
      });
    }
  }
  return groups;
}
