/**
 * The engine alone, no pruning: a two-layer MLP trained with autograd and SGD to tell apart two
 * interleaved spirals (a task a linear model cannot do), all on WebGPU.
 * Run: node scripts/run-example.mjs examples/train-engine.ts [steps]
 */
import { autograd as ag, destroyRuntime, fromArray, initRuntime, Linear, Module, SGD, tidy, type Tensor } from 'intra-fusion-webgpu';

class Mlp extends Module {
  hidden = this.addChild('hidden', new Linear(2, 64));
  out = this.addChild('out', new Linear(64, 2));
  forward(x: Tensor): Tensor {
    return this.out.call(ag.relu(this.hidden.call(x)));
  }
}

// 256 points on two spirals, label = which spiral.
const n = 256;
const points: number[] = [];
const labels: number[] = [];
for (let i = 0; i < n; i++) {
  const label = i % 2, t = (i / n) * 3 * Math.PI, r = t / (3 * Math.PI) + 0.1;
  points.push(r * Math.cos(t + label * Math.PI), r * Math.sin(t + label * Math.PI));
  labels.push(label);
}

const rt = await initRuntime(0);
console.log(`adapter: ${rt.adapterDescription}`);
const x = fromArray(points, [n, 2]).keep();
const y = fromArray(labels, [n]).keep();
const model = new Mlp();
const opt = new SGD(model.parameters(), { lr: 0.5, momentum: 0.9 });
const steps = Number(process.argv[2] ?? 300);
for (let step = 1; step <= steps; step++) {
  // tidy frees every intermediate tensor of the step; the loss is read back every 50 steps only.
  const loss = tidy(() => {
    const l = ag.crossEntropy(model.call(x), y);
    ag.backward(l);
    return step % 50 === 0 ? l : null;
  });
  opt.step();
  opt.zeroGrad();
  if (loss) console.log(`step ${step}: loss ${(await loss.dataAndDispose())[0].toFixed(4)}`);
}
const logits = await ag.noGrad(() => model.eval().call(x)).dataAndDispose();
const correct = labels.filter((label, i) => (logits[2 * i + 1] > logits[2 * i] ? 1 : 0) === label).length;
console.log(`training accuracy: ${((100 * correct) / n).toFixed(1)}%`);
destroyRuntime();
