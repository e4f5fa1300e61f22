#!/usr/bin/env bash
# One-command GPU check of the batched renderer: examples/s of nsa_augment.torch.render_batch on CUDA
# beside the NumPy renderer and the training step's images/s, at 256 and 512 px, batches 16/64/256.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: gpu_check)
#
# Needs a CUDA build of torch (README: "PyTorch: CPU or CUDA") and the package installed
# (pip install -e ".[test]").  Writes OUT_DIR/bench_batch.json and OUT_DIR/bench_batch.txt, and
# checks on the GPU that a batch renders as the NumPy renderer does (within 1 grey level; 99% of label
# pixels within 0.02).
# The goal (docs/performance.md): at least 20,000 examples/s at 256 px with logistic labels, well
# above the training step's rate.
set -euo pipefail
out="${1:-gpu_check}"
mkdir -p "$out"
export NO_ALBUMENTATIONS_UPDATE=1
python - <<'PY'
import numpy as np, torch
from nsa_augment import plan_anomaly, render_anomaly
from nsa_augment.torch import render_batch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
rng = np.random.default_rng(0)
dst = rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
src = rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
plans = [plan_anomaly(d, s, "mvtec/carpet", rng) for d, s in zip(dst, src)]
t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().cuda()
out, lab = render_batch(t(dst), t(src), plans, "mvtec/carpet")
for i in range(8):
    ri, rl = render_anomaly(dst[i], src[i], "mvtec/carpet", plans[i])
    assert np.abs(out[i].permute(1, 2, 0).cpu().numpy().astype(int) - ri).max() <= 1
    # labels: one median step may move next to a pixel rounded the other way (tests/test_torch_render.py)
    assert (np.abs(lab[i].cpu().numpy() - rl) <= 0.02).mean() >= 0.99
print("GPU batch agrees with the NumPy renderer:", torch.cuda.get_device_name())
PY
python benchmarks/bench_batch.py --device cuda --train-step --json "$out/bench_batch.json" | tee "$out/bench_batch.txt"
