"""Which NSA settings close the gap to the paste methods on low-contrast industrial surfaces?

    python benchmarks/nsa_settings_study.py --data ../shared/data:magnetic_tile --out bench_runs/study select
    python benchmarks/nsa_settings_study.py --data ../shared/data:magnetic_tile --out bench_runs/study confirm

``select`` trains every variant below (and CutPaste-NSA, the method NSA trails) on the selection
seeds; ``confirm`` takes the best ``--keep`` variants *by the selection seeds alone* and trains them,
the default and CutPaste-NSA again on fresh seeds, so that the choice is not judged on the data it
was made on.  Each variant is an :class:`~nsa_augment.NSAConfig` written as a JSON file into
``OUT/presets`` (``nsa-augment train --preset that.json``): the recommendation is data a user can
apply, not tuning hidden in the benchmark.  Budget: the earlier benchmark's (96 px, batch 16, 600
steps, every example anomalous).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bench_detection  # noqa: E402

from nsa_augment import presets  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)

BASE = "mvtec/tile"
#: name -> NSAConfig overrides on the base preset (mixed gradients, logistic (1/3, 7), up to 4 patches).
VARIANTS = {
    "nsa": {},
    "normal-gradients": {"gradients": "normal"},
    "binary-label": {"label": "binary"},
    "steep-logistic": {"logistic": (1.0, 3.0)},
    "normal+binary": {"gradients": "normal", "label": "binary"},
    "one-patch": {"num_patches": 1},
    "small-patches": {"width_bounds": ((0.03, 0.2), (0.03, 0.2))},
    "reference-blend": {"poisson": "opencv", "rescale_clip": "reference"},
}


def write_presets(out: Path) -> dict[str, Path]:
    folder = out / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, overrides in VARIANTS.items():
        cfg = presets.get(BASE).replace(name=name, **overrides)
        paths[name] = folder / f"{name}.json"
        write_text(paths[name], json.dumps(cfg.to_dict(), indent=2))
    return paths


def ranking(out: Path, seeds: list[int], category: str) -> list[tuple[str, float]]:
    runs = [r for r in bench_detection.collect(out)["runs"] if r["seed"] in seeds and r["category"] == category]
    means = {}
    for name in VARIANTS:
        v = [r["image_auroc"] for r in runs if r["arm"] == name]
        if len(v) == len(seeds):
            means[name] = float(np.mean(v))
    return sorted(means.items(), key=lambda kv: -kv[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=("select", "confirm", "report"))
    ap.add_argument("--data", type=bench_detection.parse_data, required=True, help="ROOT:CATEGORY")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/study"))
    ap.add_argument("--select-seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--confirm-seeds", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--keep", type=int, default=2, help="variants carried from selection to confirmation")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    root, category = args.data
    paths = write_presets(args.out)
    if args.phase in ("select", "confirm"):
        if args.phase == "select":
            names, seeds = list(VARIANTS), args.select_seeds
        else:
            ranked = ranking(args.out, args.select_seeds, category)
            if not ranked:
                raise SystemExit("nsa_settings_study: run the select phase first")
            chosen = [n for n, _ in ranked if n != "nsa"][: args.keep]
            print("selected on seeds", args.select_seeds, ":", ", ".join(f"{n} {100 * m:.1f}" for n, m in ranked))
            print("confirming", chosen, "against nsa and cutpaste-nsa on seeds", args.confirm_seeds)
            write_text(args.out / "selection.json", json.dumps({"ranking": ranked, "chosen": chosen}, indent=2))
            names, seeds = ["nsa", *chosen], args.confirm_seeds
        arms = [f"{n}:nsa:{paths[n]}" for n in names] + ["cutpaste-nsa:cutpaste-nsa"]
        bench_detection.main(["--data", f"{root}:{category}", "--methods", *[], "--seeds", *map(str, seeds),
                              "--preset", BASE, "--image-size", str(args.image_size), "--steps", str(args.steps),
                              "--batch-size", str(args.batch_size),
                              "--workers", str(args.workers), "--quiet", "--out", str(args.out),
                              *[x for a in arms for x in ("--arm", a)]])
    else:
        bench_detection.report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
