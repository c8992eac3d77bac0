/**
 * Define your own CNN as a Module and prune it: nothing is hard-coded per model, the pruner traces one
 * forward pass and finds the dependency groups itself (here a bias-free stem, a depthwise conv with
 * batch-norms, adaptive pooling and a classifier it keeps). Whole network, Intra-Fusion, 50%.
 * Run: node scripts/run-example.mjs examples/custom-module.ts
 */
import {
  AdaptiveAvgPool2d, autograd as ag, BatchNorm2d, complexity, Conv2d, dependencyGroups, destroyRuntime, fromArray, initRuntime,
  layerWidths, Linear, Module, OptimalTransport, prune, type Tensor,
} from 'intra-fusion-webgpu';

class MyNet extends Module {
  conv1 = this.addChild('conv1', new Conv2d(3, 32, 5, 2, 2, false)); // 5x5, stride 2, padding 2, no bias
  bn1 = this.addChild('bn1', new BatchNorm2d(32));
  dw = this.addChild('dw', new Conv2d(32, 32, 3, 1, 1, false, 32)); // depthwise
  bn2 = this.addChild('bn2', new BatchNorm2d(32));
  conv3 = this.addChild('conv3', new Conv2d(32, 48, 1, 1, 0)); // pointwise
  pool = this.addChild('pool', new AdaptiveAvgPool2d(2));
  fc = this.addChild('fc', new Linear(48 * 4, 100));
  forward(x: Tensor): Tensor {
    const h = ag.relu(this.bn2.call(this.dw.call(ag.relu(this.bn1.call(this.conv1.call(x))))));
    return this.fc.call(ag.flatten(this.pool.call(ag.relu(this.conv3.call(h)))));
  }
}

await initRuntime(0);
const inputShape: [number, number, number] = [3, 64, 64];
const model = new MyNet().eval();
const groups = dependencyGroups(model, { inputShape });
console.log(`${groups.length} prunable groups (index 0 nearest the output):`);
for (const [i, g] of groups.entries()) console.log(`  ${g.describe()}`);
const before = complexity(model, inputShape);

const pruned = await prune(model, {
  importanceCriteria: 'l1', sparsity: 0.5, inputShape, // every group, one after another
  optimalTransport: new OptimalTransport(), // Intra-Fusion; leave it out for default pruning
});
const after = complexity(model, inputShape);
for (const g of pruned) console.log(`pruned ${g.description}: ${g.channels} -> ${g.kept} channels`);
console.log(`layer widths: ${JSON.stringify(Object.fromEntries(Object.entries(layerWidths(model)).map(([k, w]) => [k, `${w.in}->${w.out}`])))}`);
console.log(`parameters ${before.parameters} -> ${after.parameters}, MFLOPs ${(before.flops / 1e6).toFixed(2)} -> ${(after.flops / 1e6).toFixed(2)}`);

const logits = model.call(fromArray(new Float32Array(2 * 3 * 64 * 64).fill(0.5), [2, ...inputShape]));
console.log(`output shape: ${logits.shape.join('x')}`);
logits.dispose();
destroyRuntime();
