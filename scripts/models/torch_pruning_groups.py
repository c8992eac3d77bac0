#!/usr/bin/python3
"""
Torch-Pruning's dependency groups of each small acceptance model, for the comparison in
test/acceptance.test.ts and the README: test/models/<family>.groups.json.

    TORCH_PRUNING=/path/to/Torch-Pruning /usr/bin/python3 scripts/models/torch_pruning_groups.py [families...]

Torch-Pruning (https://github.com/VainF/Torch-Pruning) is not vendored: point TORCH_PRUNING at a checkout.
Used: v1.6.0 (commit 2924e261b53c1df5f42f7c788d64a859a867002b), the last release whose requirements
accept torch 1.13 (Debian bookworm's python3-torch); it runs unchanged on it.

For each model (the same seeded model generate.py exports), `DependencyGraph().build_dependency` on a
1x3x64x64 input, then `get_all_groups(root_module_types=(Conv2d, Linear))` with the classifier (the last
layer the forward pass runs, whose outputs are the model's outputs) ignored, as our pruner does by default.
Each group is written as the state_dict module names of
  out: Conv2d / Linear whose out-channels are pruned (a depthwise conv: its channels are its input's too),
  in:  Conv2d / Linear whose in-channels are pruned,
  bn:  BatchNorm2d layers that follow the kept channels,
its channel count, and `at`: for each layer that sees the group's channels somewhere else than at
0..channels-1, the channel indices it sees as [start, length] runs (a concatenation's offset; a Linear
after a flatten reads H*W columns per channel). Non-parametric ops (add, concat, split, activations) are not listed.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import families as F  # noqa: E402
import generate as G  # noqa: E402

TP_COMMIT = '2924e261b53c1df5f42f7c788d64a859a867002b'


def runs(idxs):
    """Sorted indices as [start, length] runs: [[12, 4]] is channels 12..15 of a concatenation."""
    out = []
    for i in idxs:
        if out and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return out


def groups_of(model, tp):
    x = torch.zeros(1, 3, G.SIZE, G.SIZE)
    last = G.layer_order(model, x)[-1]
    DG = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    names = {m: n for n, m in model.named_modules()}
    groups = []
    for group in DG.get_all_groups(ignored_layers=[model.get_submodule(last)], root_module_types=(torch.nn.Conv2d, torch.nn.Linear)):
        out, inp, bn, at = set(), set(), set(), {}
        channels = len(group[0].idxs)
        for dep, idxs in group:
            m = dep.target.module
            if m not in names or not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
                continue
            name = names[m]
            if sorted(idxs) != list(range(channels)):
                at[name] = runs(sorted(idxs))
            if isinstance(m, torch.nn.BatchNorm2d):
                bn.add(name)
            elif isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.groups > 1:
                out.add(name)  # depthwise: in- and out-channels are one space
            elif DG.is_out_channel_pruning_fn(dep.handler):
                out.add(name)
            else:
                inp.add(name)
        root = group[0].dep.target.module
        groups.append({'root': names[root], 'channels': channels, 'out': sorted(out), 'in': sorted(inp), 'bn': sorted(bn), 'at': at})
    return groups, last


def main():
    checkout = os.environ.get('TORCH_PRUNING')
    if not checkout:
        sys.exit('Set TORCH_PRUNING to a checkout of https://github.com/VainF/Torch-Pruning (v1.6.0 runs on torch 1.13).')
    sys.path.insert(0, checkout)
    import torch_pruning as tp

    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'models')
    for family in sys.argv[1:] or F.FAMILIES:
        model = F.make(family, small=True, seed=F.FAMILIES.index(family), num_classes=G.CLASSES, image_size=G.SIZE)
        groups, last = groups_of(model, tp)
        record = {
            'family': family, 'torch_pruning': 'v1.6.0', 'torch_pruning_commit': TP_COMMIT, 'torch': torch.__version__,
            'ignored': [last], 'groups': groups,
        }
        with open(os.path.join(out_dir, f'{family}.groups.json'), 'w') as f:
            json.dump(record, f, indent=1)
            f.write('\n')
        print(f'{family}: {len(groups)} groups, {sum(g["channels"] for g in groups)} channels', flush=True)


if __name__ == '__main__':
    main()
