/**
 * The names of the ops autograd records (`GradNode.op`). Each has exactly one spec in src/graph/ops.ts
 * (the compiler checks it: the spec table is keyed by this union), so an op cannot be recorded without
 * saying how channels flow through it and how it leaves as ONNX.
 */
export type OpName =
  | 'conv2d' | 'linear' | 'batchNorm2d'
  | 'relu' | 'clip' | 'hardSigmoid' | 'hardSwish' | 'sigmoid' | 'silu' | 'scale' | 'add' | 'mul'
  | 'concat' | 'slice'
  | 'maxPool2d' | 'avgPool2d' | 'adaptiveAvgPool2d'
  | 'reshape'
  | 'sum' | 'mean' | 'matmul' | 'crossEntropy';
