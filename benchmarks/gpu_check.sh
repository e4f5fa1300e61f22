#!/usr/bin/env bash
# One-command GPU check: the batched renderer's agreement with the NumPy renderer on the GPU (mixed,
# object-mask, binary and float32 interpolated configs: the device-built eigenbases and masks), its
# examples/s beside the NumPy renderer and the training step's images/s (256 and 512 px, batches
# 16/64/256) with one profiled batch each (device busy time, operators, sync points), and end to
# end: `nsa-augment train` on the GPU with anomalies rendered in the DataLoader workers
# (--synthesis cpu) and on the GPU (--synthesis gpu), samples/s and the measured wait for data.
# About 4-5 minutes on an H200 with 16 CPUs.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR [DATA_ROOT]]   (defaults: gpu_check, ../shared/data)
#
# Needs a CUDA build of torch (README: "PyTorch: CPU or CUDA") and the package installed
# (pip install -e ".[all]").  DATA_ROOT must hold magnetic_tile/ in MVTec layout for the training
# part (skipped, with a message, when it does not).  Writes into OUT_DIR: bench_batch.json/.txt,
# train_cpu/ and train_gpu/ (metrics.json, train_log.csv), train_cpu.txt, train_gpu.txt, summary.txt.
# No thread variables are set: the default environment, as users run it.  The interpreter is
# $PYTHON, else python3 (many CUDA images have no `python`).
set -euo pipefail
py="${PYTHON:-python3}"
out="${1:-gpu_check}"
root="${2:-../shared/data}"
mkdir -p "$out"
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
"$py" - <<'PY'
import dataclasses
import numpy as np, torch
from nsa_augment import plan_anomaly, presets, render_anomaly
from nsa_augment.torch import render_batch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:128, :128]
blob = ((yy - 64) ** 2 + (xx - 60) ** 2 < 40 ** 2)[..., None]  # an object on a bright background
scene = lambda n: np.where(blob, rng.integers(20, 120, (n, 128, 128, 3)), 235).astype(np.uint8)
carpet = presets.get("mvtec/carpet")
cases = {"carpet (mixed, logistic)": (carpet, "noise"),
         "hazelnut (object masks)": (presets.get("mvtec/hazelnut"), "scene"),
         "cable (binary)": (presets.get("mvtec/cable"), "noise"),
         "interpolated, float32": (dataclasses.replace(carpet, gradients="interpolated"), "float")}
t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous().cuda()
for name, (cfg, kind) in cases.items():
    dst = scene(8) if kind == "scene" else rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    src = scene(8) if kind == "scene" else rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    if kind == "float":
        dst, src = (dst / 255).astype(np.float32), (src / 255).astype(np.float32)
    plans = [plan_anomaly(d, s, cfg, rng) for d, s in zip(dst, src)]
    assert sum(p.is_anomalous for p in plans) >= 4, name
    out, lab = render_batch(t(dst), t(src), plans, cfg)
    for i in range(8):
        ri, rl = render_anomaly(dst[i], src[i], cfg, plans[i])
        o = out[i].permute(1, 2, 0).cpu().numpy().astype(np.float64)
        scale = 255.0 if kind == "float" else 1.0
        assert np.abs(o - ri.reshape(o.shape)).max() * scale <= 1, name
        # labels: one median step may move next to a pixel rounded the other way (tests/test_torch_render.py)
        assert (np.abs(lab[i].cpu().numpy() - rl) <= 0.02).mean() >= 0.99, name
    print(f"GPU batch agrees with the NumPy renderer: {name}")
print("on", torch.cuda.get_device_name())
PY
"$py" benchmarks/bench_batch.py --device cuda --train-step --profile --json "$out/bench_batch.json" | tee "$out/bench_batch.txt"

if [ ! -d "$root/magnetic_tile/train/good" ]; then
    echo "no $root/magnetic_tile/train/good: end-to-end training part skipped (pass DATA_ROOT)" | tee "$out/summary.txt"
    exit 0
fi
# All CPUs but one as DataLoader workers, 256 px, batch 64: a GPU user's run of the default preset.
workers=$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))
for synthesis in cpu gpu; do
    "$py" -m nsa_augment train --root "$root" --category magnetic_tile --device cuda --image-size 256 \
        --batch-size 64 --steps 400 --workers "$workers" --synthesis "$synthesis" --max-test 10 \
        --profile-data 256 --no-resume --out "$out/train_$synthesis" 2>&1 | tee "$out/train_$synthesis.txt"
done
"$py" - "$out" "$workers" <<'PY' | tee "$out/summary.txt"
import csv, json, sys
from pathlib import Path
out, workers = Path(sys.argv[1]), sys.argv[2]
print(f"nsa-augment train, magnetic_tile, 256 px, batch 64, 400 steps, {workers} workers, default threads")
for synthesis in ("cpu", "gpu"):
    run = out / f"train_{synthesis}" / "magnetic_tile"
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    rates = sorted(float(r["samples_per_s"]) for r in rows[1:])  # the first epoch starts the workers
    m = json.loads((run / "metrics.json").read_text())
    pipe = m["throughput"]["pipeline_samples_per_s_per_process"]
    wait = m["throughput"].get("data_wait_fraction")
    print(f"--synthesis {synthesis}: median {rates[len(rates) // 2]:.0f} samples/s over epochs 2-{len(rows)} "
          f"(range {rates[0]:.0f}-{rates[-1]:.0f}); whole run {m['train_time']['wall_s']:.1f} s for "
          f"{m['steps']} steps; one worker's pipeline alone {pipe:.0f} samples/s; waiting for data "
          f"{'-' if wait is None else f'{wait:.0%}'} of the time")
PY
