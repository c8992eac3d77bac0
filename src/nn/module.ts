/**
 * Modules: parameters and buffers with PyTorch state_dict names, train/eval mode, and forward hooks.
 *
 * Modules call their children through `call(child, x)`, which runs the registered forward hooks.
 * Hooks see every module's input and output: FLOP counting, CHIP feature maps and graph tracing use them.
 */
import { ArgumentError, IntraFusionError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';

export type ForwardHook = (module: Module, input: Tensor, output: Tensor, name: string) => void;

const hooks = new Set<ForwardHook>();

/** Registers a hook on every module's forward pass; returns a function that removes it. */
export function addForwardHook(hook: ForwardHook): () => void {
  hooks.add(hook);
  return () => hooks.delete(hook);
}

/** Whether any forward hook is registered (fused inference is off while one is: hooks see every layer). */
export function hasForwardHooks(): boolean {
  return hooks.size > 0;
}

/**
 * Evaluating only what changed (src/nn/resume.ts): `inputTaps` see the input of chosen modules (the
 * original model's activations are kept there), and a resume point makes a chosen module take a kept
 * activation instead of its input, the work before it having been skipped (Runtime.shapesOnly). Unlike
 * hooks, taps leave fused inference on.
 */
export const inputTaps = new Map<Module, (x: Tensor) => void>();
let resumePoint: { module: Module; input: Tensor; resume: () => void } | null = null;

/** Runs `fn` with `module` taking `input` on entry (and GPU work resuming there, through `resume`). */
export function withResumePoint<T>(module: Module, input: Tensor, resume: () => void, fn: () => T): T {
  const was = resumePoint;
  resumePoint = { module, input, resume };
  try {
    return fn();
  } finally {
    resumePoint = was;
  }
}

/** Whether a tap or the resume point watches `m`'s input (a fused block must not swallow it). */
export function isWatched(m: Module): boolean {
  return inputTaps.has(m) || resumePoint?.module === m;
}

/** Applies the resume point and taps on entry to a module's forward (fused blocks call it for their first layer). */
export function enterModule(m: Module, x: Tensor): Tensor {
  if (resumePoint?.module === m) {
    resumePoint.resume();
    x = resumePoint.input;
  }
  inputTaps.get(m)?.(x);
  return x;
}

/** A layer or model: named children, parameters and buffers (PyTorch state_dict names), a forward pass. */
export abstract class Module {
  training = true;
  /** Dotted name in the model, set when the module is attached to a parent (root: ''). */
  path = '';
  private readonly childMap = new Map<string, Module>();
  private readonly paramMap = new Map<string, Tensor>();
  private readonly bufferMap = new Map<string, Tensor>();

  abstract forward(x: Tensor): Tensor;

  /** Runs the module with hooks. A known error (a shape that does not fit) gets the innermost layer's name. */
  call(x: Tensor): Tensor {
    x = enterModule(this, x);
    let y: Tensor;
    try {
      y = this.forward(x);
    } catch (e) {
      if (e instanceof IntraFusionError && this.path && !(e as { layer?: string }).layer) {
        (e as { layer?: string }).layer = this.path;
        e.message = `layer "${this.path}" (${this.constructor.name}, input [${x.shape}]): ${e.message}`;
      }
      throw e;
    }
    for (const h of hooks) h(this, x, y, this.path);
    return y;
  }

  protected addChild<M extends Module>(name: string, m: M): M {
    this.childMap.set(name, m);
    m.setPath(this.path ? `${this.path}.${name}` : name);
    return m;
  }

  /** Registers a trainable tensor (kept; `requiresGrad` set). */
  protected addParam(name: string, t: Tensor): Tensor {
    t.keep().requiresGrad = true;
    this.paramMap.set(name, t);
    return t;
  }

  /** Registers state that is saved but not trained (running statistics). */
  protected addBuffer(name: string, t: Tensor): Tensor {
    t.keep();
    this.bufferMap.set(name, t);
    return t;
  }

  /** Replaces a parameter or buffer by a new tensor (pruning); the old one is disposed. */
  replaceTensor(name: string, t: Tensor): void {
    const map = this.paramMap.has(name) ? this.paramMap : this.bufferMap.has(name) ? this.bufferMap : null;
    if (!map) throw new ArgumentError(`${this.path || 'model'}: no tensor named ${name}.`);
    const old = map.get(name)!;
    t.keep().requiresGrad = map === this.paramMap;
    map.set(name, t);
    if (old !== t) old.dispose();
    (this as unknown as Record<string, Tensor>)[name] = t;
  }

  /** Unregisters and disposes a parameter or buffer (a conv's bias, when pruning hands it back to its BN). */
  protected removeTensor(name: string): void {
    const map = this.paramMap.has(name) ? this.paramMap : this.bufferMap.has(name) ? this.bufferMap : null;
    if (!map) throw new ArgumentError(`${this.path || 'model'}: no tensor named ${name}.`);
    map.get(name)!.dispose();
    map.delete(name);
  }

  private setPath(path: string): void {
    this.path = path;
    for (const [name, c] of this.childMap) c.setPath(`${path}.${name}`);
  }

  children(): [string, Module][] {
    return [...this.childMap];
  }

  /** Every module below (and including) this one, with dotted names, in definition order. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, c] of this.childMap) out.push(...c.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, t] of m.paramMap) out.push([prefix ? `${prefix}.${n}` : n, t]);
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, t] of m.bufferMap) out.push([prefix ? `${prefix}.${n}` : n, t]);
    }
    return out;
  }

  /** Parameters and buffers in PyTorch state_dict order (per module: parameters, then buffers). */
  stateTensors(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, t] of [...m.paramMap, ...m.bufferMap]) out.push([prefix ? `${prefix}.${n}` : n, t]);
    }
    return out;
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  dispose(): void {
    for (const [, t] of this.stateTensors()) t.dispose();
  }
}
