/**
 * Prune a built-in model: the shipped CIFAR-10 VGG11-BN, one group at 70% sparsity, with default pruning
 * and with Intra-Fusion, each evaluated on the first test images (no fine-tuning).
 * Run: node scripts/run-example.mjs examples/prune-builtin.ts [checkpoint] [cifar10-dir] [images]
 * (CIFAR-10 is downloaded into the folder when it is missing.)
 */
import {
  cifar10, complexity, createModel, destroyRuntime, evaluate, initRuntime, loadCheckpoint, loadCifar10, OptimalTransport, prune,
} from 'intra-fusion-webgpu';

const [checkpoint = 'models/vgg11_bn_cifar10.fp16.safetensors', dataDir = 'data/cifar10', images = '500'] = process.argv.slice(2);
await initRuntime(0);
const test = cifar10.subset((await loadCifar10(dataDir)).test, Number(images));

/** A fresh VGG11-BN with the checkpoint's weights, and the input normalisation the checkpoint names. */
function loadModel() {
  const model = createModel('vgg11_bn');
  const metadata = loadCheckpoint(model, checkpoint);
  return { model, normalization: cifar10.parseNormalization(metadata.normalize_mean, metadata.normalize_std) ?? cifar10.IMAGENET_STATS };
}

for (const method of ['original', 'default pruning', 'Intra-Fusion'] as const) {
  const { model, normalization } = loadModel();
  if (method !== 'original') {
    await prune(model, {
      importanceCriteria: 'l1', sparsity: 0.7, groupIdxs: [2],
      optimalTransport: method === 'Intra-Fusion' ? new OptimalTransport({ solver: 'emd' }) : null,
    });
  }
  const { accuracy } = await evaluate(model, test, { normalization, batchSize: 100 });
  console.log(`${method}: ${accuracy.toFixed(1)}% on ${test.count} test images, ${complexity(model).parameters} parameters`);
  model.dispose();
}
destroyRuntime();
