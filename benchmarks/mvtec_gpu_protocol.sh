#!/usr/bin/env bash
# The paper's full MVTec AD protocol on GPU(s): all 15 classes, 5 seeds, paper settings
# (256 px, global batch 64, Adam 1e-3 with cosine decay, 320/560 epochs per class, NSA logistic labels).
#
#   benchmarks/mvtec_gpu_protocol.sh /data/mvtec_anomaly_detection [OUT] [GPUS] [METHOD]
#
# Resumable: re-running skips finished (class, seed) runs and continues interrupted ones from their
# checkpoints. Ends with results.md / results.json (mean ± std over seeds per class) in OUT.
# Cost: see docs/benchmarks.md ("GPU protocol").
set -euo pipefail
ROOT=${1:?usage: $0 MVTEC_ROOT [OUT] [GPUS] [METHOD]}
OUT=${2:-runs/mvtec_full}
GPUS=${3:-1}
METHOD=${4:-nsa}
HERE=$(cd "$(dirname "$0")" && pwd)
export NO_ALBUMENTATIONS_UPDATE=1
for seed in 0 1 2 3 4; do
  for category in bottle cable capsule hazelnut metal_nut pill screw toothbrush transistor zipper carpet grid leather tile wood; do
    dir="$OUT/$category/$METHOD/seed$seed"
    [ -f "$dir/$category/metrics.json" ] && continue
    torchrun --standalone --nproc_per_node="$GPUS" "$HERE/../examples/train_mvtec.py" \
      --root "$ROOT" --category "$category" --method "$METHOD" --seed "$seed" --out "$dir" \
      --device cuda --image-size 256 --batch-size 64 --workers 8
  done
done
python "$HERE/bench_detection.py" --collect "$OUT"
