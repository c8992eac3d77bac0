"""Times the authors' Intra-Fusion code (github.com/alexandertheus/Intra-Fusion) on the same job as
bench/prune.ts: whole-network Intra-Fusion of VGG11-BN at sparsity 0.5 (L1, EMD, uniform marginals,
every group one after another, as their MetaPruner.step does), and default pruning of the same groups.

  python3 bench/reference_prune.py REFERENCE_DIR CHECKPOINT.safetensors [REPS]

Prints one JSON line: {"if_seconds": [...], "if_cpu_seconds": [...] (process CPU time), "default_seconds": [...],
"default_cpu_seconds": [...], "groups": N, "widths": [...], "torch": ..., "pot": ..., "threads": N}.
Each time is one prune() call of theirs on a fresh copy (graph, folding, importance, OT and apply), the
same span our bench times, after one untimed warm-up call. sklearn is only used by their unused cluster_centroid target, so it is
stubbed when missing. Single-threaded torch would be unfair to them, and Debian's torch defaults to one
OpenMP thread here: torch gets one thread per core, as bench/torch_cpu.py does.
"""
import copy
import json
import struct
import sys
import time
import types

ref_dir, ckpt = sys.argv[1], sys.argv[2]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
sys.path.insert(0, ref_dir)
try:
    import sklearn  # noqa: F401
except ImportError:  # only their cluster_centroid target uses it
    for name in ['sklearn', 'sklearn.decomposition', 'sklearn.mixture', 'sklearn.cluster']:
        mod = types.ModuleType(name)
        mod.PCA = mod.GaussianMixture = mod.KMeans = None
        sys.modules[name] = mod

import os  # noqa: E402

import numpy as np  # noqa: E402
import ot  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
from model_architectures.vgg import VGG  # noqa: E402
from prune import prune  # noqa: E402
from torch_pruning.optimal_transport import OptimalTransport  # noqa: E402


def load_safetensors(path):
    dtypes = {'F32': np.float32, 'F16': np.float16, 'F64': np.float64, 'I64': np.int64}
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, t in header.items():
        if name == '__metadata__':
            continue
        a, b = t['data_offsets']
        arr = np.frombuffer(body[a:b], dtype=dtypes[t['dtype']]).reshape(t['shape'])
        out[name] = torch.from_numpy(arr.astype(np.float32) if arr.dtype != np.int64 else arr.copy())
    return out


model = VGG('VGG11', 10, batch_norm=True)
state = load_safetensors(ckpt)
model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=False)
model.eval()
example = torch.randn(1, 3, 32, 32)
groups = 8  # VGG11-BN: 8 prunable groups (the classifier's output is ignored)


def timed(ot_obj):
    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    c0 = time.process_time()
    prune(m, None, example, 10, 'l1', -1, sparsity=0.5, optimal_transport=ot_obj,
          backward_pruning=True, group_idxs=list(range(groups)), dimensionality_preserving=False)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    widths = [mod.out_channels for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    return dt, cpu, widths


# One untimed default pruning first: the process's first prune pays torch's one-time set-up, which a
# repetition run alone (bench/prune.ts interleaves one-repetition runs with ours) would otherwise count.
timed(None)
if_s, def_s, if_cpu, def_cpu = [], [], [], []
for _ in range(reps):
    dt, cpu, widths = timed(OptimalTransport(p=1, target_probability='uniform', source_probability='uniform',
                                        target='most_important', gpu_id=-1))
    if_s.append(dt)
    if_cpu.append(cpu)
    dt2, cpu2, _ = timed(None)
    def_s.append(dt2)
    def_cpu.append(cpu2)
print(json.dumps({'if_seconds': if_s, 'if_cpu_seconds': if_cpu, 'default_seconds': def_s, 'default_cpu_seconds': def_cpu, 'groups': groups, 'widths': widths,
                  'torch': torch.__version__, 'pot': ot.__version__, 'threads': torch.get_num_threads()}))
