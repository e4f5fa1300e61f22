"""First-call latency of nsa_augment in fresh processes, with a cold and then a warm Numba cache.

Run:  python benchmarks/first_call.py

Beside it, Numba's own floor: the first call of a one-line cached Numba function in a fresh
process (Numba initialises its typing and lowering registries on the first compile or cache load of
any process, whichever library triggers it), and the peer: the reference generator's work (``reference_nsa.py``: OpenCV and
scikit-image, nothing to compile) in a fresh process, import included. Last, the first batch of a
DataLoader with 4 workers (more than this machine's cores), each compiling the kernels for itself
and, after one item drawn in the main process (as ``nsa-augment train`` does), inheriting them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
import sys
import tempfile

_TEMPLATE = """
import time
t0 = time.perf_counter()
import numpy as np
import nsa_augment
{setup}
t1 = time.perf_counter()
{body}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""

BLEND = """
d = np.zeros((32, 32, 3), np.uint8); m = np.zeros((32, 32), bool); m[4:20, 6:30] = True
nsa_augment.poisson_blend(d, d, m); nsa_augment.poisson_blend(d, d, m, gradients="mixed")
"""

MASKED_BLEND = """
yy, xx = np.mgrid[:64, :64]
d = np.zeros((64, 64, 3), np.uint8); m = (yy - 30) ** 2 + ((xx - 33) / 1.3) ** 2 < 500  # the multigrid solve
nsa_augment.poisson_blend(d, d, m); nsa_augment.poisson_blend(d, d, m, gradients="mixed")
"""

SYNTHESIS = """
rng = np.random.default_rng(0)
d = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
for name in ("mvtec/hazelnut", "mvtec/carpet"):   # object masks, mixed + normal gradients, logistic labels
    nsa_augment.synthesize(d, d[::-1].copy(), name, rng)
"""

#: The least any cached Numba kernel costs on first call: a one-line function in a module file next
#: to the cache (``cache=True`` needs a file), compiled in the cold run and loaded in the warm one.
NUMBA_FLOOR = """
import os, sys
folder = os.environ["NUMBA_CACHE_DIR"]
path = os.path.join(folder, "floor_kernel.py")
if not os.path.exists(path):
    with open(path, "w") as fh:
        fh.write("import numba\\n\\n@numba.njit(cache=True)\\ndef add_one(x):\\n    return x + 1\\n")
sys.path.insert(0, folder)
import floor_kernel
floor_kernel.add_one(np.zeros(3))
"""


REFERENCE = """
import sys
sys.path.insert(0, {benchmarks!r})
from reference_nsa import reference_nsa
rng = np.random.default_rng(0)
d = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
for name in ("mvtec/hazelnut", "mvtec/carpet"):
    reference_nsa(d, d[::-1].copy(), nsa_augment.presets.get(name), rng)
""".format(benchmarks=str(Path(__file__).resolve().parent))


#: A DataLoader of 4 workers over real images (carpet, 256 px), on a 2-core machine more workers than
#: cores: the imports and the dataset are set-up, the first batch is the call.
LOADER_SETUP = """
import sys
sys.path.insert(0, {benchmarks!r})
import albumentations as A
import torch
from images import load_images
from nsa_augment import NaturalSyntheticAnomaly
from nsa_augment.torch import SyntheticAnomalyDataset
dataset = SyntheticAnomalyDataset(load_images(256, 64), A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)]))
""".format(benchmarks=str(Path(__file__).resolve().parent))

#: The first batch as each worker compiles (or loads) the kernels itself.
LOADER = """
next(iter(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=4)))
"""

#: The same after one item drawn in the main process, as ``nsa-augment train`` does (``compile_in_main``):
#: the kernels compile once, and the forked workers inherit them.
LOADER_MAIN_FIRST = "\ndataset[0]" + LOADER


def first_call_latency(body: str, label: str, setup: str = "") -> dict:
    """Run ``body`` after ``import nsa_augment`` and ``setup`` in two fresh processes sharing a new cache directory."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for key in ("cold_cache", "warm_cache"):
            res = subprocess.run([sys.executable, "-c", _TEMPLATE.format(setup=setup, body=body)], env=env,
                                 capture_output=True, text=True, check=True)
            imp, first = map(float, res.stdout.split())
            out[key] = {"import_s": imp, "first_call_s": first}
            print(f"first {label}, {key.replace('_', ' ')}: import{' and set-up' if setup else ''} {imp:.2f} s, "
                  f"first call (JIT or cache load) {first:.2f} s")
    return out


if __name__ == "__main__":
    first_call_latency(BLEND, "blend")
    first_call_latency(MASKED_BLEND, "masked blend")
    first_call_latency(SYNTHESIS, "synthesis")
    first_call_latency(NUMBA_FLOOR, "one-line Numba kernel (Numba's floor)")
    # The peer's first call: its imports (OpenCV, scikit-image) in the call, no cache to warm.
    first_call_latency(REFERENCE, "reference generator")
    # DataLoader workers: each compiling for itself, or inheriting what the main process compiled.
    first_call_latency(LOADER, "batch of 4 workers", LOADER_SETUP)
    first_call_latency(LOADER_MAIN_FIRST, "batch of 4 workers, one item drawn in the main process first", LOADER_SETUP)
