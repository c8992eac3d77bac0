/** SGD with momentum, Nesterov momentum, dampening and weight decay (torch.optim.SGD semantics). */
import { ArgumentError } from '../errors.js';
import { noGrad } from '../tensor/autograd.js';
import { fill } from '../kernels/elementwise.js';
import { sgdStep } from '../kernels/norm_pool_loss.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';

export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** Stochastic gradient descent with momentum, Nesterov, dampening and weight decay (torch.optim.SGD semantics). */
export class SGD {
  lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** Momentum buffers, created on a parameter's first step. */
  private readonly buffers = new Map<Tensor, Tensor>();

  constructor(readonly params: Tensor[], o: SgdOptions) {
    if (!(o.lr > 0)) throw new ArgumentError(`SGD: lr must be positive, got ${o.lr}.`);
    this.lr = o.lr;
    this.momentum = o.momentum ?? 0;
    this.dampening = o.dampening ?? 0;
    this.weightDecay = o.weightDecay ?? 0;
    this.nesterov = o.nesterov ?? false;
    if (this.momentum < 0 || this.weightDecay < 0) throw new ArgumentError('SGD: momentum and weight decay must be non-negative.');
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new ArgumentError('SGD: Nesterov momentum requires a momentum and zero dampening.');
    }
  }

  /** Updates every parameter that has a gradient. */
  step(): void {
    noGrad(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        let buf = this.buffers.get(p);
        const first = !buf;
        if (!buf && this.momentum !== 0) this.buffers.set(p, (buf = fill(p.shape, 0).keep()));
        sgdStep(p, p.grad, buf ?? p.grad, {
          lr: this.lr, momentum: this.momentum, dampening: this.dampening,
          weightDecay: this.weightDecay, nesterov: this.nesterov, first,
        });
      }
    });
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** The momentum buffer of a parameter, if it has taken a step. */
  momentumOf(param: Tensor): Tensor | undefined {
    return this.buffers.get(param);
  }

  /** Restores a parameter's momentum buffer (resuming from a checkpoint). */
  setMomentum(param: Tensor, values: Float32Array): void {
    if (!this.params.includes(param)) throw new ArgumentError('SGD.setMomentum: not one of this optimiser\'s parameters.');
    if (values.length !== param.size) throw new ArgumentError(`SGD.setMomentum: ${values.length} values for a parameter of ${param.size}.`);
    this.buffers.get(param)?.dispose();
    this.buffers.set(param, fromArray(values, param.shape).keep());
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
