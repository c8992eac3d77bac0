/**
 * Prune an ONNX file and export the result: import a CNN from ONNX, prune every group by 30% with
 * Intra-Fusion, write the pruned model as ONNX, and read it back to check it computes what the engine does.
 * Without an input file it first writes one (a CIFAR-style VGG11-BN with its initial weights).
 * Run: node scripts/run-example.mjs examples/prune-onnx.ts [in.onnx] [out.onnx]
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { complexity, createModel, destroyRuntime, fromArray, initRuntime, loadOnnx, OptimalTransport, prune, saveOnnx } from 'intra-fusion-webgpu';

await initRuntime(0);
let [input, output] = process.argv.slice(2);
if (!input) {
  input = join(tmpdir(), 'vgg11_bn-example.onnx');
  await saveOnnx(createModel('vgg11_bn'), input, { inputShape: [3, 32, 32] });
  console.log(`wrote ${input}`);
}
output ??= input.replace(/(\.onnx)?$/i, '_pruned.onnx');

const model = loadOnnx(input); // an OnnxModel: engine layers the pruner handles like a built-in model
const before = complexity(model, model.inputShape);
await prune(model, { importanceCriteria: 'l1', sparsity: 0.3, inputShape: model.inputShape, optimalTransport: new OptimalTransport() });
const after = complexity(model, model.inputShape);
console.log(`parameters ${before.parameters} -> ${after.parameters}, MFLOPs ${(before.flops / 1e6).toFixed(1)} -> ${(after.flops / 1e6).toFixed(1)}`);
await saveOnnx(model, output, { inputShape: model.inputShape, metadata: { pruned: 'intra-fusion l1 0.3' } });
console.log(`wrote ${output}`);

// The written file, imported again, gives the same logits as the pruned model in memory.
const x = fromArray(Float32Array.from({ length: 4 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37)), [4, ...model.inputShape]);
const expected = await model.eval().call(x).dataAndDispose();
const reread = loadOnnx(output).eval();
const got = await reread.call(x).dataAndDispose();
const maxDiff = Math.max(...expected.map((v, i) => Math.abs(v - got[i])));
console.log(`round trip: largest logit difference ${maxDiff.toExponential(2)} (of ${Math.max(...expected.map(Math.abs)).toFixed(2)})`);
destroyRuntime();
