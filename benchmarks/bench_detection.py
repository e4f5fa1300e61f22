"""Detection quality per synthetic-anomaly method under one fixed training budget.

    python benchmarks/bench_detection.py --root ../shared/data --category magnetic_tile \\
        --methods nsa cutpaste-nsa fpi pii cutpaste draem --seeds 0 1 --out bench_runs/detection
    python benchmarks/bench_detection.py --collect bench_runs/detection     # tables and plots only

Every run is ``examples/train_mvtec.py`` with the same image size, steps, batch
size, seeds, preset geometry and augmentation; only ``--method`` differs.  Runs
that finished (their ``metrics.json`` exists) are skipped, and an interrupted
run resumes from its checkpoint, so the command can be re-run until done.
Writes ``results.json``, ``results.md`` and, with matplotlib, ``auroc.png``
(mean image/pixel AUROC with the seed range) and ``roc_<category>.png``
(image-level ROC per method) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "examples" / "train_mvtec.py"
METRICS = ("image_auroc", "pixel_auroc", "au_pro")


def run_dir(out: Path, category: str, method: str, seed: int) -> Path:
    return out / category / method / f"seed{seed}"


def train(args, category: str, method: str, seed: int) -> None:
    d = run_dir(args.out, category, method, seed)
    if (d / category / "metrics.json").exists():
        print(f"done already: {category} / {method} / seed {seed}")
        return
    cmd = [sys.executable, str(TRAIN), "--root", str(args.root), "--category", category, "--method", method,
           "--seed", str(seed), "--out", str(d), "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
           "--steps", str(args.steps), "--workers", str(args.workers), "--device", args.device, "--profile-data", "0"]
    if args.preset:
        cmd += ["--preset", args.preset]
    print(f"training {category} / {method} / seed {seed}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)


def collect(out: Path) -> dict:
    """Gather every metrics.json below ``out``; mean, standard deviation and range over seeds."""
    runs = []
    for path in sorted(out.rglob("metrics.json")):
        m = json.loads(path.read_text())
        runs.append({k: m.get(k) for k in ("category", "method", "seed", "steps", "image_size", "batch_size", *METRICS)}
                    | {"roc": m.get("roc"), "path": str(path.relative_to(out))})
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["category"], r["method"]), []).append(r)
    summary = []
    for (category, method), rs in sorted(groups.items()):
        row = {"category": category, "method": method, "seeds": sorted(r["seed"] for r in rs)}
        for k in METRICS:
            v = np.array([r[k] for r in rs], dtype=float)
            row[k] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                      "min": float(v.min()), "max": float(v.max())}
        summary.append(row)
    return {"runs": runs, "summary": summary}


def markdown(summary: list[dict]) -> str:
    lines = ["| category | method | seeds | image AUROC | pixel AUROC | AU-PRO |", "|---|---|---|---|---|---|"]
    for r in summary:
        cells = [f"{100 * r[k]['mean']:.1f} ± {100 * r[k]['std']:.1f}" for k in METRICS]
        lines.append(f"| {r['category']} | {r['method']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(out: Path, result: dict) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install 'nsa-augment[bench]')")
        return []
    written = []
    categories = sorted({r["category"] for r in result["summary"]})
    for category in categories:
        rows = [r for r in result["summary"] if r["category"] == category]
        fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.6))
        x = np.arange(len(rows))
        for i, (k, label) in enumerate((("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))):
            means = np.array([r[k]["mean"] for r in rows])
            lo = means - np.array([r[k]["min"] for r in rows])
            hi = np.array([r[k]["max"] for r in rows]) - means
            ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=[lo, hi], capsize=3, label=label)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, [r["method"] for r in rows], rotation=20)
        ax.set_ylim(0.3, 1.0)
        ax.set_title(f"{category}: mean over seeds, bars span min..max")
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = out / f"auroc_{category}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        fig, ax = plt.subplots(figsize=(4.2, 4))
        for r in rows:
            run = next((q for q in result["runs"] if q["category"] == category and q["method"] == r["method"] and q["roc"]), None)
            if run:
                ax.plot(run["roc"]["fpr"], run["roc"]["tpr"], label=f"{r['method']} (seed {run['seed']})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{category}: image-level ROC")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out / f"roc_{category}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(out: Path, meta: dict | None = None) -> dict:
    result = collect(out)
    if meta:
        result["config"] = meta
    (out / "results.json").write_text(json.dumps(result, indent=2))
    table = markdown(result["summary"])
    (out / "results.md").write_text(table)
    print(table)
    for p in plots(out, result):
        print("wrote", p)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="dataset root (MVTec layout)")
    ap.add_argument("--category", action="append", help="category (repeat for several)")
    ap.add_argument("--methods", nargs="+", default=["nsa", "cutpaste-nsa", "fpi", "pii", "cutpaste", "draem"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--preset", help="preset for the patch geometry (default: the script's per-category choice)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--out", type=Path, default=Path("bench_runs/detection"))
    ap.add_argument("--collect", type=Path, metavar="DIR", help="only gather finished runs under DIR into tables/plots")
    args = ap.parse_args(argv)
    if args.collect:
        report(args.collect)
        return 0
    if not args.root or not args.category:
        ap.error("--root and --category are required (or --collect DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "collect"}
    for category in args.category:
        for seed in args.seeds:
            for method in args.methods:
                train(args, category, method, seed)
    report(args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
