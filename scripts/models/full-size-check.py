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
whole network) and exports each, run by onnxruntime. Each family runs in its own Node process, stopped
after --limit seconds (default 480): its row keeps the cells it finished and says where it stopped. It
prints a Markdown table (and writes it to DIR/full-size.md). Files are large (vgg16_bn 528 MB): DIR
defaults to /tmp/intra-fusion-full-size.
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

CLASSES, BATCH = 1000, 1
HEADER = ['| model | parameters | import: vs PyTorch / vs onnxruntime | groups (ours / Torch-Pruning) | default 0.5 | Intra-Fusion 0.5 | folding 0.5 |',
          '|---|---:|---|---|---|---|---|']


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='/tmp/intra-fusion-full-size')
    p.add_argument('--size', type=int, default=64, help='input height and width (64 or 224)')
    p.add_argument('--limit', type=int, default=480, help='seconds per family before it is stopped')
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
    SIZE = a.size
    failed = {}
    for family in a.families if not a.skip_export else []:
        try:
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
                G.SIZE = SIZE  # Torch-Pruning traces a 1x3xSIZExSIZE input
                record['groups'], _ = TPG.groups_of(model, tp)
            with open(os.path.join(a.out, f'{family}.json'), 'w') as f:
                json.dump(record, f)
            print(f'{family}: exported ({record["parameters"]:,} parameters)', flush=True)
        except Exception as e:  # e.g. an op PyTorch's exporter refuses at this input size
            failed[family] = f'not exported: {str(e).splitlines()[0][:160]}'
            print(f'{family}: {failed[family]}', flush=True)
    rows = list(HEADER)
    for family in a.families:
        if family in failed:
            rows.append(f'| {family} | {failed[family]} |' + ' |' * 5)
            print(rows[-1], flush=True)
            continue
        cells_file = os.path.join(a.out, f'{family}.cells.json')
        if os.path.exists(cells_file):
            os.remove(cells_file)
        cmd = ['node', os.path.join(here, 'full-size-check.mjs'), a.out, a.steps, family]
        try:
            subprocess.run(cmd, cwd=os.path.join(here, '..', '..'), timeout=a.limit, stdout=subprocess.DEVNULL)
            cells = json.load(open(cells_file)) if os.path.exists(cells_file) else [family, 'error: no result']
        except subprocess.TimeoutExpired:
            cells = json.load(open(cells_file)) if os.path.exists(cells_file) else [family]
            cells.append(f'stopped after {a.limit / 60:.0f} min (time)')
        cells += ['not run'] * (7 - len(cells))
        rows.append('| ' + ' | '.join(cells) + ' |')
        print(rows[-1], flush=True)
    with open(os.path.join(a.out, 'full-size.md'), 'w') as f:
        f.write('\n'.join(rows) + '\n')
    print('\n'.join(rows))

if __name__ == '__main__':
    main()
