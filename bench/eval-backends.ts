/**
 * Evaluation speed of VGG11-BN (the shipped checkpoint) on CIFAR-10 test images with each --eval-backend:
 * this engine on the WebGPU adapter, and onnxruntime-node on the CPU (export included). The ratio is what
 * run.js's hint on a software adapter quotes.
 * Run: node scripts/run-example.mjs bench/eval-backends.ts [cifar10-dir] [images] [batch]
 */
import { cpus, loadavg } from 'node:os';
import { cifar10, createModel, destroyRuntime, evaluate, evaluateOnnxRuntime, initRuntime, loadCheckpoint, loadCifar10 } from '../src/index.js';

const [dataDir = 'data/cifar10', images = '1000', batch = '128'] = process.argv.slice(2);
const rt = await initRuntime(0);
const test = cifar10.subset((await loadCifar10(dataDir)).test, Number(images));
const model = createModel('vgg11_bn');
const meta = loadCheckpoint(model, 'models/vgg11_bn_cifar10.fp16.safetensors');
const normalization = cifar10.parseNormalization(meta.normalize_mean, meta.normalize_std) ?? cifar10.IMAGENET_STATS;
const o = { normalization, batchSize: Number(batch) };
console.log(`adapter: ${rt.adapterDescription} (fallback: ${rt.isFallback}); ${cpus().length} cores, load ${loadavg()[0].toFixed(1)}`);
const gpu = await evaluate(model, test, o);
console.log(`webgpu:      ${gpu.accuracy.toFixed(2)}% in ${gpu.seconds.toFixed(1)} s, ${(gpu.count / gpu.seconds).toFixed(1)} images/s`);
const t0 = performance.now();
const ort = await evaluateOnnxRuntime(model, test, { ...o, inputShape: [3, 32, 32] });
const ortSeconds = (performance.now() - t0) / 1e3; // export and session creation included
console.log(`onnxruntime: ${ort.accuracy.toFixed(2)}% in ${ortSeconds.toFixed(1)} s, ${(ort.count / ortSeconds).toFixed(1)} images/s`);
console.log(`ratio: ${(gpu.seconds / ortSeconds).toFixed(1)}x; load ${loadavg()[0].toFixed(1)}`);
destroyRuntime();
