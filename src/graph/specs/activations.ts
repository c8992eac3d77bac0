/** Op specs of the elementwise activations: relu, clip (ReLU6, hardtanh), hardSigmoid, hardSwish, sigmoid, silu. */
import { UnsupportedError } from '../../errors.js';
import * as ag from '../../tensor/autograd.js';
import { float, type OpSpec } from '../op-spec.js';

export const relu: OpSpec = {
  name: 'relu', summary: 'ReLU', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Relu'],
    export: (t, ctx) => ctx.emit(t, 'Relu', [ctx.input(t.node!.inputs[0])]),
    importers: {
      Relu(ctx) {
        ctx.allowOnly([]);
        ctx.step(([x]) => ag.relu(x));
      },
    },
  },
};

export const clip: OpSpec = {
  name: 'clip', summary: 'clamp to [min, max]: ReLU6, hardtanh', channels: 'preserve', zeroStaysZero: (a) => a.min <= 0 && a.max >= 0,
  onnx: {
    exportsAs: ['Clip'],
    export(t, ctx) {
      const { min, max } = t.node!.attrs!;
      // Opset 11+: the bounds are inputs; an infinite bound is left out ('').
      const bound = (v: number, which: string) => (Number.isFinite(v) ? ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.${which}`), [], async () => Float32Array.of(v)) : '');
      const inputs = [ctx.input(t.node!.inputs[0]), bound(min, 'min'), bound(max, 'max')];
      while (inputs[inputs.length - 1] === '') inputs.pop();
      ctx.emit(t, 'Clip', inputs);
    },
    importers: {
      Clip(ctx) {
        // Bounds as attributes before opset 11, as optional constant inputs after.
        ctx.allowOnly(ctx.opset < 11 ? ['min', 'max'] : []);
        const bound = (i: number, attr: string, fallback: number) => {
          if (ctx.opset < 11) return ctx.float(attr, fallback);
          const name = ctx.node.input?.[i];
          if (!name) return fallback;
          const c = ctx.constant(name);
          if (!c || c.values.length !== 1) throw new UnsupportedError(`${ctx.where}: its ${attr} "${name}" must be a constant scalar.`);
          return c.values[0];
        };
        const [lo, hi] = [bound(1, 'min', -Infinity), bound(2, 'max', Infinity)];
        ctx.step(([x]) => ag.clip(x, lo, hi));
      },
    },
  },
};

export const hardSigmoid: OpSpec = {
  name: 'hardSigmoid', summary: 'max(0, min(1, alpha x + beta))', channels: 'preserve', zeroStaysZero: false,
  onnx: {
    exportsAs: ['HardSigmoid'],
    export: (t, ctx) => ctx.emit(t, 'HardSigmoid', [ctx.input(t.node!.inputs[0])], [float('alpha', t.node!.attrs!.alpha), float('beta', t.node!.attrs!.beta)]),
    importers: {
      HardSigmoid(ctx) {
        ctx.allowOnly(['alpha', 'beta']);
        const [alpha, beta] = [ctx.float('alpha', 0.2), ctx.float('beta', 0.5)];
        ctx.step(([x]) => ag.hardSigmoid(x, alpha, beta));
      },
    },
  },
};

export const hardSwish: OpSpec = {
  name: 'hardSwish', summary: 'x relu6(x + 3) / 6 (also x * HardSigmoid(x) as PyTorch writes it before opset 14)', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    // ONNX HardSwish is opset 14; at 13 it is x * HardSigmoid(x, 1/6, 1/2), what PyTorch's exporter writes.
    exportsAs: ['HardSwish', 'HardSigmoid + Mul'],
    export(t, ctx) {
      const x = ctx.input(t.node!.inputs[0]);
      if (ctx.opset >= 14) return ctx.emit(t, 'HardSwish', [x]);
      ctx.emit(t, 'Mul', [x, ctx.intermediate(t, 'HardSigmoid', [x], [float('alpha', 1 / 6), float('beta', 0.5)])]);
    },
    importers: {
      HardSwish(ctx) {
        ctx.allowOnly([]);
        ctx.step(([x]) => ag.hardSwish(x));
      },
    },
  },
};

export const sigmoid: OpSpec = {
  name: 'sigmoid', summary: 'logistic sigmoid (squeeze-excitation gates)', channels: 'preserve', zeroStaysZero: false,
  onnx: {
    exportsAs: ['Sigmoid'],
    export: (t, ctx) => ctx.emit(t, 'Sigmoid', [ctx.input(t.node!.inputs[0])]),
    importers: {
      Sigmoid(ctx) {
        ctx.allowOnly([]);
        ctx.step(([x]) => ag.sigmoid(x));
      },
    },
  },
};

export const silu: OpSpec = {
  // Imported from x * Sigmoid(x), as PyTorch writes it (the Mul importer, arithmetic.ts).
  name: 'silu', summary: 'x sigmoid(x) (swish; imported from x * Sigmoid(x))', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Sigmoid + Mul'],
    export(t, ctx) {
      const x = ctx.input(t.node!.inputs[0]);
      ctx.emit(t, 'Mul', [x, ctx.intermediate(t, 'Sigmoid', [x])]);
    },
  },
};
