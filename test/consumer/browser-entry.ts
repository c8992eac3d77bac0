// The browser entry's types: the engine, models, pruner and ONNX, but no file or download helpers.
import { createModel, importOnnx, prune } from 'intra-fusion-webgpu/browser';
// @ts-expect-error the browser entry has no Node file helpers
import { loadCifar10 } from 'intra-fusion-webgpu/browser';

export async function inTheBrowser(bytes: Uint8Array): Promise<number> {
  const model = importOnnx(bytes);
  await prune(model, { importanceCriteria: 'l2', sparsity: { 1: 0.3 } });
  // @ts-expect-error groupIdxs is a list
  await prune(createModel('vgg11'), { importanceCriteria: 'l2', sparsity: 0.3, groupIdxs: 1 });
  return loadCifar10 === undefined ? 0 : 1;
}
