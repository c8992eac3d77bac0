/** Op specs of the arithmetic ops: add, mul (channel-broadcast gates), scale. */
import { UnsupportedError } from '../../errors.js';
import type { Node } from '../../onnx/proto.js';
import * as ag from '../../tensor/autograd.js';
import type { OpSpec } from '../op-spec.js';

export const add: OpSpec = {
  name: 'add', summary: 'elementwise add of two tensors (residual connections)', channels: 'merge', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Add'],
    export: (t, ctx) => ctx.emit(t, 'Add', t.node!.inputs.map((i) => ctx.input(i))),
    importers: {
      Add(ctx) {
        ctx.allowOnly([]);
        if (ctx.inputs.some((i) => ctx.constant(i))) throw new UnsupportedError(`${ctx.where}: adding a constant tensor is supported only as the bias after a MatMul.`);
        ctx.step(([a, b]) => ag.add(a, b), ctx.inputs);
      },
    },
  },
};

export const scale: OpSpec = {
  // Imported from a Mul by a constant scalar (the Mul importer below).
  name: 'scale', summary: 'multiplication by a constant scalar (imported from Mul)', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Mul'],
    export(t, ctx) {
      const alpha = t.node!.attrs?.alpha;
      if (alpha === undefined) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: the scale op recorded no factor.`);
      const factor = Float32Array.of(alpha);
      ctx.emit(t, 'Mul', [ctx.input(t.node!.inputs[0]), ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.factor`), [], async () => factor)]);
    },
  },
};

export const mul: OpSpec = {
  name: 'mul', summary: 'elementwise product, broadcasting (squeeze-excitation x * gate[N, C, 1, 1])', channels: 'merge', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Mul'],
    export: (t, ctx) => ctx.emit(t, 'Mul', t.node!.inputs.map((i) => ctx.input(i))),
    importers: {
      Mul(ctx) {
        ctx.allowOnly([]);
        const [a, b] = ctx.inputs;
        const factor = [a, b].map((i) => ctx.constant(i)).find((c) => c !== undefined);
        if (factor) {
          const x = ctx.constant(a) ? b : a;
          if (factor.values.length !== 1 || ctx.constant(x)) throw new UnsupportedError(`${ctx.where}: multiplying by a constant tensor of shape [${factor.dims}]; a scalar or another activation is supported.`);
          ctx.step(([t]) => ag.scale(t, factor.values[0]), [x]);
          return;
        }
        // x * sigmoid(x) is SiLU and x * hardsigmoid(x) is HardSwish as PyTorch writes them (SiLU at every
        // opset, HardSwish before opset 14): one op each, when the gate has no other reader.
        const gate = [b, a].map((g) => ctx.producer(g)).find((g) => g && ctx.readers(g.output![0]) === 1 && g.input?.[0] === (g.output![0] === b ? a : b));
        const floatOf = (g: Node, name: string, fallback: number) => g.attribute?.find((at) => at.name === name)?.f ?? fallback;
        const isPyTorchHardSigmoid = (g: Node) => Math.abs(floatOf(g, 'alpha', 0.2) - 1 / 6) < 1e-7 && floatOf(g, 'beta', 0.5) === 0.5;
        if (gate?.op_type === 'Sigmoid' || (gate?.op_type === 'HardSigmoid' && isPyTorchHardSigmoid(gate))) {
          ctx.dropStep(gate.output![0]);
          ctx.step(([t]) => (gate.op_type === 'Sigmoid' ? ag.silu(t) : ag.hardSwish(t)), [gate.input![0]]);
          return;
        }
        // Two activations: a squeeze-excitation gate [N, C, 1, 1] over [N, C, H, W], or the same shapes.
        ctx.step(([p, q]) => ag.mul(p, q), [a, b]);
      },
    },
  },
};
