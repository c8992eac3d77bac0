#!/usr/bin/python3
"""
The acceptance steps on the full-size torchvision models (1000 classes, 224x224), through the built
library (dist/index.js): the README's full-size table.

    npm run build
    TORCH_PRUNING=/path/to/Torch-Pruning /usr/bin/python3 scripts/models/full-size-check.py [--out DIR] [--steps import,groups,prune] [families...]

For each family: the model as scripts/models/families.py builds it at full size (random seeded weights and
batch-norm statistics, eval mode), exported by torch.onnx.export as generate.py does (opset 14; BN folded,
vgg16_bn with BN kept; batch 1), PyTorch's output on the reference input, and Torch-Pruning's groups
(when TORCH_PRUNING is set). Then full-size-check.mjs imports each file, compares the engine with PyTorch
and onnxruntime-node, the groups with Torch-Pruning's, and prunes (default, Intra-Fusion, folding at 0.5,
whole network) and exports each, run by onnxruntime. It prints a Markdown table (and writes it to
DIR/full-size.md). Files are large (vgg16_bn 528 MB): DIR defaults to /tmp/intra-fusion-full-size.
"""
import argparse
import json
import os
import subprocess
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import families as F  # noqa: E402
import generate as G  # noqa: E402

SIZE, CLASSES, BATCH = 224, 1000, 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='/tmp/intra-fusion-full-size')
    p.add_argument('--steps', default='import,groups,prune', help='comma-separated subset of import,groups,prune')
    p.add_argument('--skip-export', action='store_true', help='reuse the files in --out')
    p.add_argument('families', nargs='*', default=F.FAMILIES)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tp = None
    if os.environ.get('TORCH_PRUNING'):
        sys.path.insert(0, os.environ['TORCH_PRUNING'])
        import torch_pruning as tp
        import torch_pruning_groups as TPG
    for family in a.families if not a.skip_export else []:
        seed = F.FAMILIES.index(family)
        model = F.make(family, small=False, seed=seed, num_classes=CLASSES, image_size=SIZE)
        x = F.reference_input(G.INPUT_SEED, (BATCH, 3, SIZE, SIZE))
        with torch.no_grad():
            y = model(x)
        torch.onnx.export(
            model, x, os.path.join(a.out, f'{family}.onnx'), input_names=['input'], output_names=['logits'],
            training=torch.onnx.TrainingMode.PRESERVE if family in G.BN_KEPT else torch.onnx.TrainingMode.EVAL,
            dynamic_axes=None if family in G.STATIC_BATCH else {'input': {0: 'N'}, 'logits': {0: 'N'}})
        record = {'family': family, 'input': {'seed': G.INPUT_SEED, 'shape': [BATCH, 3, SIZE, SIZE]},
                  'output': [float(v) for v in y.flatten()], 'parameters': sum(q.numel() for q in model.parameters())}
        if tp is not None:
            G.SIZE = SIZE  # Torch-Pruning traces a 1x3x224x224 input
            record['groups'], _ = TPG.groups_of(model, tp)
        with open(os.path.join(a.out, f'{family}.json'), 'w') as f:
            json.dump(record, f)
        print(f'{family}: exported ({record["parameters"]:,} parameters)', flush=True)
    node = subprocess.run(['node', os.path.join(here, 'full-size-check.mjs'), a.out, a.steps, *a.families], cwd=os.path.join(here, '..', '..'))
    sys.exit(node.returncode)


if __name__ == '__main__':
    main()
