"""Every compiled kernel stays inside its arrays, checked by Numba itself.

Compiled code does not check indices: an index past an array's end reads or writes other memory
without a word (one such write, in the multigrid's row ranges, was caught only on re-reading the
code).  Here representative calls of every kernel run in a fresh process with
``NUMBA_BOUNDSCHECK=1`` and an empty cache, so any index outside an array raises ``IndexError``:
masks with interleaved runs, holes and image-border contact through the multigrid, the box
solver and OpenCV's formulation in every gradient mode and dtype, odd image sizes, every preset,
every method, volumes and every label mode.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import numpy as np
import nsa_augment as na
from nsa_augment import methods
from nsa_augment.methods.nsa.labels import make_label

rng = np.random.default_rng(0)
H, W = 71, 93  # odd sizes: padded multigrid levels, uneven coarsening

def masks():
    yy, xx = np.mgrid[:H, :W]
    ellipse = ((yy - 35) / 30.0) ** 2 + ((xx - 46) / 40.0) ** 2 < 1
    yield ellipse
    yield ellipse & ~(((yy - 35) / 12.0) ** 2 + ((xx - 46) / 16.0) ** 2 < 1)  # a ring
    comb = np.zeros((H, W), bool)
    comb[5:66, 4:89] = ((xx[5:66, 4:89] // 3) % 3 != 0) | ((yy[5:66, 4:89] // 4) % 2 == 0)  # interleaved runs
    yield comb
    inter = np.zeros((H, W), bool)  # runs alternating with the next row's: 2x2-block rows hold twice the ranges
    for r in range(2, 60, 2):
        inter[r, 1:7] = inter[r, 60:66] = True
        inter[r + 1, 30:36] = inter[r + 1, 84:90] = True
    inter[2:61, 91] = True
    yield inter
    edge = np.zeros((H, W), bool)
    edge[:40, :] = True
    edge[39:, :30] = True  # touches three image borders
    yield edge
    dot = np.zeros((H, W), bool)
    dot[H - 1, W - 1] = dot[0, 0] = True  # single pixels in the corners
    yield dot
    rect = np.zeros((H, W), bool)
    rect[10:60, 3:90] = True  # the box solver
    yield rect

images = {
    "uint8": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
    "uint16": rng.integers(0, 65536, (H, W), dtype=np.uint16),
    "float32": rng.random((H, W, 2), dtype=np.float32),
}
for dtype, dst in images.items():
    src = dst[::-1, ::-1].copy()
    for mask in masks():
        for gradients in ("normal", "mixed", "interpolated"):
            na.poisson_blend(dst, src, mask, gradients=gradients, factor=0.4)
    if dtype == "uint16":
        continue  # OpenCV's formulation takes uint8 and float32, as cv2.seamlessClone
    for mask in list(masks())[:4]:
        core = np.zeros_like(mask)
        core[1:-1, 1:-1] = mask[1:-1, 1:-1]  # where OpenCV's formulation solves (it drops the outer ring)
        ys, xs = np.nonzero(core)
        center = (int(xs.min() + (xs.max() + 1 - xs.min()) // 2), int(ys.min() + (ys.max() + 1 - ys.min()) // 2))
        for mode in ("normal", "mixed"):
            na.seamless_clone(src, dst, mask, center, mode=mode)

tiles = rng.integers(0, 256, (2, 96, 80, 3), dtype=np.uint8)
tiles[:, 30:70, 20:60] //= 4  # a dark object for the object-mask presets
for name in na.presets.names():
    if len(na.presets.get(name).width_bounds) == 3:
        continue  # a volume preset: below
    for label in ("binary", "continuous", "intensity", "logistic"):
        cfg = na.presets.get(name).replace(label=label)
        na.synthesize(tiles[0], tiles[1], cfg, rng)
    na.synthesize(tiles[0][:13, :9], tiles[1][:11, :17], name, rng)  # tiny images
for method in methods.METHODS:
    gen = methods.generator(method, "mvtec/hazelnut")
    for _ in range(3):
        gen(tiles[0], tiles[1], rng)

volume = rng.integers(0, 4096, (20, 24, 28), dtype=np.uint16)
for label in ("binary", "logistic", "intensity"):
    cfg = na.presets.get("medical/brain-mri").replace(label=label)
    na.synthesize_volume(volume, volume[::-1].copy(), cfg, rng)
region = np.zeros(volume.shape, bool)
region[3:15, 4:20, 5:25] = True
make_label(volume, volume // 2, region, "logistic")
print("ok")
"""


@pytest.mark.slow
def test_kernels_stay_in_bounds_under_numba_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT), NO_ALBUMENTATIONS_UPDATE="1")
    res = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
