// A TypeScript user of the installed package (Node entry, NodeNext resolution): correct calls type-check,
// wrong argument types must fail (an unused @ts-expect-error is itself an error, so `any` types fail too).
import { complexity, createModel, exportOnnx, importOnnx, loadCifar10, OptimalTransport, prune, type Module, type PrunedGroup } from 'intra-fusion-webgpu';

export async function rightTypes(bytes: Uint8Array): Promise<number> {
  const model: Module = createModel('vgg11_bn', { numClasses: 10, stem: 'cifar' });
  const groups: PrunedGroup[] = await prune(model, {
    importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [1], optimalTransport: new OptimalTransport({ solver: 'emd' }),
  });
  const imported = importOnnx(bytes, 'model.onnx');
  const onnx: Uint8Array = await exportOnnx(imported, { inputShape: imported.inputShape });
  const data = await loadCifar10('./data');
  return groups[0].kept + onnx.length + data.test.count + complexity(model).parameters;
}

export async function wrongTypes(bytes: Uint8Array): Promise<void> {
  // @ts-expect-error the model comes first
  await prune({ importanceCriteria: 'l1', sparsity: 0.5 });
  // @ts-expect-error sparsity is a number or a per-group map, not a string
  await prune(createModel('vgg11_bn'), { importanceCriteria: 'l1', sparsity: '0.5' });
  // @ts-expect-error importOnnx takes the file's bytes, not its path
  importOnnx('model.onnx');
  // @ts-expect-error numClasses is a number
  createModel('resnet18', { numClasses: '10' });
  // @ts-expect-error not a built-in architecture (MODEL_NAMES)
  createModel('alexnet');
  // @ts-expect-error exportOnnx needs the input shape
  await exportOnnx(importOnnx(bytes), {});
}
