"""Detection quality per synthetic-anomaly method under one fixed training budget.

    python benchmarks/prepare_elpv.py --out bench_data      # ELPV in MVTec layout (pip install elpv-dataset)
    python benchmarks/bench_detection.py --data ../shared/data:magnetic_tile --data bench_data:elpv \\
        --preset mvtec/tile --seeds 0 1 2 --out bench_runs/detection
    python benchmarks/bench_detection.py --collect bench_runs/detection     # tables and plots only

Every run is ``nsa-augment train`` with the same image size, steps, batch size, anomaly probability,
seeds, preset geometry and augmentation; only the method (an *arm*) differs.  ``--methods`` gives
one arm per method; ``--arm LABEL:METHOD:PRESET`` adds others (e.g. NSA with a settings file, see
``nsa_settings_study.py``).  Runs are interleaved seed by seed so that partial results stay
balanced.  Finished runs (``metrics.json`` exists) are skipped and an interrupted run resumes from
its checkpoint, so the command can be re-run until done.

Writes ``results.json`` and ``results.md`` (mean ± std over seeds, wall and CPU time per run, and
each arm against the reference arm paired over seeds, per metric: mean difference, its 95% interval
and a paired t-test; where runs stored per-image scores, each arm against the reference on the
same seed and test images, DeLong's paired test; and every run with its image AUROC's standard
error over the test images) and, with matplotlib, ``auroc_<category>.png`` (image/pixel AUROC with
the seed range) and ``roc_<category>.png`` (image-level ROC per arm, pooled over seeds).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nsa_augment.detection.metrics import auroc_standard_error, paired_auroc_test
from nsa_augment.io import write_text

HERE = Path(__file__).resolve().parent
#: The metrics reported, and their names in tables and plots.
METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "au_pro": "AU-PRO"}
METRICS = tuple(METRIC_NAMES)
DEFAULT_METHODS = ["nsa", "nsa-reference", "cutpaste-nsa", "fpi", "pii", "cutpaste", "cutpaste-scar", "draem"]


def run_dir(out: Path, category: str, label: str, seed: int) -> Path:
    return out / category / label / f"seed{seed}"


def _run(cmd: list[str], quiet: bool) -> tuple[int, str, float]:
    """Run one training command: its exit code, its stderr (``quiet``: captured, else shown) and the CPU
    seconds of it and its descendants (DataLoader workers), its own even while other runs go on
    (``--jobs``): ``wait4``'s usage of that child, not the whole process's ``RUSAGE_CHILDREN``."""
    proc = subprocess.Popen(cmd, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"), text=True,
                            stderr=subprocess.PIPE if quiet else None)
    err = proc.stderr.read() if proc.stderr else ""  # until the child closes it, i.e. exits
    if proc.stderr:
        proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return proc.returncode, err, usage.ru_utime + usage.ru_stime


def train(args, root: Path, category: str, arm: tuple[str, str, str | None], seed: int) -> None:
    label, method, preset = arm
    d = run_dir(args.out, category, label, seed)
    if (d / category / "metrics.json").exists():
        print(f"done already: {category} / {label} / seed {seed}", flush=True)
        return
    cmd = [sys.executable, "-m", "nsa_augment", "train", "--root", str(root), "--category", category, "--method",
           method, "--seed", str(seed), "--out", str(d), "--image-size", str(args.image_size), "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--workers", str(args.workers), "--device", args.device,
           "--profile-data", "0", "--anomaly-p", str(args.anomaly_p)]
    if preset or args.preset:
        cmd += ["--preset", preset or args.preset]
    print(f"training {category} / {label} / seed {seed}: {' '.join(cmd[3:])}", flush=True)
    t0 = time.perf_counter()
    code, err, cpu = _run(cmd, args.quiet or args.jobs > 1)
    if code != 0:
        # --quiet hides the progress bars, never the reason a run failed
        lines = [ln for ln in (err or "").replace("\r", "\n").splitlines() if "it/s" not in ln and ln.strip()]
        raise SystemExit(f"bench_detection: training {category} / {label} / seed {seed} failed (exit "
                         f"{code}): {' | '.join(lines[-3:])}")
    wall = time.perf_counter() - t0
    write_text(d / "timing.json", json.dumps({"wall_s": wall, "cpu_s": cpu, "jobs": args.jobs}))
    print(f"  {category} / {label} / seed {seed}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)


def train_all(args, runs: list[tuple]) -> None:
    """Every run in order, ``args.jobs`` at a time (each its own ``train`` process); the first failure
    stops the runs not yet started and is raised once the running ones have finished."""
    if args.jobs == 1:
        for run in runs:
            train(args, *run)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        for future in [pool.submit(train, args, *run) for run in runs]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def collect(out: Path) -> dict:
    """Gather every run below ``out``: mean, standard deviation and range over seeds per (category, arm)."""
    runs = []
    for path in sorted(out.rglob("metrics.json")):
        m = json.loads(path.read_text())
        label = path.relative_to(out).parts[1]
        timing = _timing(path.parents[1] / "timing.json", path.parent / "train_log.csv")
        runs.append({"category": m["category"], "arm": label, "method": m.get("method"), "seed": m.get("seed"),
                     "steps": m.get("steps"), "image_size": m.get("image_size"), "batch_size": m.get("batch_size"),
                     "anomaly_p": m.get("anomaly_p"), "preset": m.get("preset"),
                     "test_good": m.get("test_good"), "test_defective": m.get("test_defective"),
                     **{k: m.get(k) for k in METRICS}, **timing, "roc": m.get("roc"), "path": str(path.relative_to(out)),
                     "scores": next((str(q.relative_to(out)) for q in (path.parent / "scores.csv",
                                                                        path.parent / "evaluation_scores.csv") if q.exists()),
                                    None)})
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["category"], r["arm"]), []).append(r)
    summary = []
    for (category, arm), rs in sorted(groups.items()):
        row = {"category": category, "arm": arm, "method": rs[0]["method"], "seeds": sorted(r["seed"] for r in rs)}
        for k in METRICS:
            v = np.array([np.nan if r[k] is None else r[k] for r in rs], dtype=float)
            row[k] = None if np.isnan(v).all() else {
                "mean": float(np.nanmean(v)), "std": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
                "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
        for k in ("wall_s", "cpu_s"):
            t = [r[k] for r in rs if r.get(k) is not None]
            row[k] = float(np.mean(t)) if t else None
        row["timed_runs"] = sum(r.get("wall_s") is not None for r in rs)
        row["resumed_runs"] = sum(bool(r.get("resumed")) for r in rs)
        summary.append(row)
    return {"runs": runs, "summary": summary}


def _timing(timing_path: Path, log_path: Path) -> dict:
    """The ``train`` command's wall and CPU seconds (``timing.json``), or nothing where they would undercount.

    ``timing.json`` times one invocation; a run that was interrupted and resumed trained partly in
    earlier ones, which its per-epoch log shows (more training seconds than the invocation's wall
    time).  Such a run's time is unknown here and is left out rather than reported short.  (A resume
    after only a few epochs can pass this test, short by those epochs; runs of this version also
    record ``train_time`` in ``metrics.json``, summed over every segment.)
    """
    if not timing_path.exists():
        return {}
    timing = json.loads(timing_path.read_text())
    if log_path.exists():
        with log_path.open() as f:
            trained = sum(float(row["seconds"]) for row in csv.DictReader(f))
        if trained > timing["wall_s"]:
            return {"resumed": True}
    return timing


def paired(runs: list[dict], category: str, arm: str, reference: str, metric: str = "image_auroc") -> dict | None:
    """``arm - reference`` paired over the seeds both have: mean, 95% t-interval, paired t-test p-value."""
    from scipy import stats

    a = {r["seed"]: r[metric] for r in runs if r["category"] == category and r["arm"] == arm and r[metric] is not None}
    b = {r["seed"]: r[metric] for r in runs if r["category"] == category and r["arm"] == reference and r[metric] is not None}
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds])
    sem = d.std(ddof=1) / math.sqrt(len(d))
    half = stats.t.ppf(0.975, len(d) - 1) * sem
    p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue) if sem > 0 else float("nan")
    return {"n": len(seeds), "mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)], "p": p,
            "wins": int((d > 0).sum())}


def read_scores(path: Path) -> dict[str, tuple[int, float]]:
    """A run's ``scores.csv`` (``nsa-augment train``) or ``evaluation_scores.csv`` (``evaluate``): path -> (label, score)."""
    with path.open(newline="") as f:
        return {row["path"]: (int(row["label"]), float(row["score"])) for row in csv.DictReader(f)}


def paired_over_images(out: Path, runs: list[dict], reference: str) -> list[dict]:
    """Each arm minus ``reference`` on the same seed and the same test images (DeLong's test), where
    both runs stored per-image scores: the test images' share of the uncertainty, seed by seed."""
    ref = {(r["category"], r["seed"]): (r, read_scores(out / r["scores"]))
           for r in runs if r["arm"] == reference and r.get("scores")}
    rows = []
    for r in sorted(runs, key=lambda r: (r["category"], r["arm"], r["seed"])):
        if r["arm"] == reference or (r["category"], r["seed"]) not in ref or not r.get("scores"):
            continue
        base, b = ref[(r["category"], r["seed"])]
        a = read_scores(out / r["scores"])
        common = sorted(set(a) & set(b))
        if not common:
            raise ValueError(f"{r['scores']} and {base['scores']} share no test image: not the same test set")
        if any(a[k][0] != b[k][0] for k in common):
            raise ValueError(f"{r['scores']} and {base['scores']} label the same test image differently")
        t = paired_auroc_test([a[k][0] for k in common], [a[k][1] for k in common], [b[k][1] for k in common])
        rows.append({"category": r["category"], "arm": r["arm"], "seed": r["seed"], "images": len(common), **t})
    return rows


def markdown(result: dict, reference: str) -> str:
    pct = lambda m: "undefined" if m is None else f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}"  # noqa: E731
    lines = ["| category | arm | seeds | " + " | ".join(METRIC_NAMES.values())
             + " | min..max image AUROC | wall / CPU per run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(result["summary"], key=lambda r: (r["category"], -(r["image_auroc"] or {"mean": 0})["mean"])):
        rng = r["image_auroc"]
        span = f"{100 * rng['min']:.1f}..{100 * rng['max']:.1f}" if rng else "-"
        t = f"{r['wall_s'] / 60:.1f} / {r['cpu_s'] / 60:.1f} min" if r.get("wall_s") else "-"
        if r["resumed_runs"]:  # their time is unknown: say so rather than average a part of it
            t += f" ({r['timed_runs']} of {len(r['seeds'])} runs timed, {r['resumed_runs']} resumed)"
        lines.append(f"| {r['category']} | {r['arm']} | {len(r['seeds'])} | " + " | ".join(pct(r[k]) for k in METRICS)
                     + f" | {span} | {t} |")
    lines += ["", f"Each arm minus `{reference}`, paired over seeds (percentage points; 95% t-interval; paired t-test):",
              "", "| category | arm | metric | seeds | difference | 95% interval | p | seeds won |",
              "|---|---|---|---|---|---|---|---|"]
    for metric in METRICS:
        for r in result["summary"]:
            if r["arm"] == reference:
                continue
            s = paired(result["runs"], r["category"], r["arm"], reference, metric)
            if s:
                lines.append(f"| {r['category']} | {r['arm']} | {METRIC_NAMES[metric]} | {s['n']} | {100 * s['mean']:+.1f} | "
                             f"{100 * s['ci95'][0]:+.1f}..{100 * s['ci95'][1]:+.1f} | {s['p']:.3f} | "
                             f"{s['wins']}/{s['n']} |")
    if result.get("paired_over_images"):
        lines += ["", f"Each arm minus `{reference}` on the same seed and the same test images (image AUROC, "
                  "percentage points ± the difference's standard error over the images; DeLong's paired test):", "",
                  "| category | arm | seed | images | difference | p |", "|---|---|---|---|---|---|"]
        for t in result["paired_over_images"]:
            lines.append(f"| {t['category']} | {t['arm']} | {t['seed']} | {t['images']} | "
                         f"{100 * t['difference']:+.1f} ± {100 * t['se']:.1f} | {t['p']:.3g} |")
    lines += ["", "Every run: image AUROC ± its standard error over the test images alone (Hanley & McNeil 1982; "
              "the spread over seeds comes on top), pixel AUROC and AU-PRO (%):", "",
              "| category | arm | seed | image AUROC | pixel AUROC | AU-PRO |", "|---|---|---|---|---|---|"]
    for r in sorted(result["runs"], key=lambda r: (r["category"], r["arm"], r["seed"])):
        image = "undefined" if r["image_auroc"] is None else f"{100 * r['image_auroc']:.1f}"
        if r["image_auroc"] is not None and r.get("test_good") and r.get("test_defective"):
            image += f" ± {100 * auroc_standard_error(r['image_auroc'], r['test_defective'], r['test_good']):.1f}"
        other = " | ".join("-" if r[k] is None else f"{100 * r[k]:.1f}" for k in ("pixel_auroc", "au_pro"))
        lines.append(f"| {r['category']} | {r['arm']} | {r['seed']} | {image} | {other} |")
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
    for category in sorted({r["category"] for r in result["summary"]}):
        rows = sorted((r for r in result["summary"] if r["category"] == category),
                      key=lambda r: -(r["image_auroc"] or {"mean": 0})["mean"])
        fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.8))
        x = np.arange(len(rows))
        for i, k in enumerate(("image_auroc", "pixel_auroc")):
            if all(r[k] is None for r in rows):
                continue
            means = np.array([r[k]["mean"] if r[k] else np.nan for r in rows])
            lo = means - np.array([r[k]["min"] if r[k] else np.nan for r in rows])
            hi = np.array([r[k]["max"] if r[k] else np.nan for r in rows]) - means
            ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=[lo, hi], capsize=3, label=METRIC_NAMES[k])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, [r["arm"] for r in rows], rotation=25, ha="right")
        ax.set_ylim(0.3, 1.0)
        ax.set_title(f"{category}: mean over seeds, bars span min..max")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        path = out / f"auroc_{category}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        for r in rows:
            curves = [q["roc"] for q in result["runs"] if q["category"] == category and q["arm"] == r["arm"] and q["roc"]]
            if curves:
                fpr_grid = np.linspace(0, 1, 101)
                tpr = np.mean([np.interp(fpr_grid, c["fpr"], c["tpr"]) for c in curves], axis=0)
                ax.plot(fpr_grid, tpr, label=f"{r['arm']} ({len(curves)} seeds)")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{category}: image-level ROC, mean over seeds")
        if ax.get_legend_handles_labels()[0]:  # runs of older versions stored no ROC points
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out / f"roc_{category}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(out: Path, reference: str = "nsa", meta: dict | None = None) -> dict:
    result = collect(out)
    previous = out / "results.json"
    if meta is None and previous.exists():
        meta = json.loads(previous.read_text()).get("config")
    if meta:
        result["config"] = meta
    result["reference_arm"] = reference
    result["paired_over_images"] = paired_over_images(out, result["runs"], reference)
    write_text(out / "results.json", json.dumps(result, indent=2))
    table = markdown(result, reference)
    write_text(out / "results.md", table)
    print(table)
    for p in plots(out, result):
        print("wrote", p)
    return result


def parse_arm(text: str) -> tuple[str, str, str | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise argparse.ArgumentTypeError(f"--arm takes LABEL:METHOD[:PRESET], got {text!r}")
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


def parse_data(text: str) -> tuple[Path, str]:
    root, _, category = text.rpartition(":")
    if not root or not category:
        raise argparse.ArgumentTypeError(f"--data takes ROOT:CATEGORY, got {text!r}")
    return Path(root), category


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=parse_data, action="append", help="ROOT:CATEGORY of an MVTec-layout dataset (repeat)")
    ap.add_argument("--root", type=Path, help="dataset root (with --category; older form of --data)")
    ap.add_argument("--category", action="append", help="category under --root (repeat)")
    ap.add_argument("--methods", nargs="*", default=DEFAULT_METHODS, help="one arm per method (default: all)")
    ap.add_argument("--arm", type=parse_arm, action="append", default=[], help="extra arm LABEL:METHOD[:PRESET]")
    ap.add_argument("--reference", default="nsa", help="arm the others are compared with (default: nsa)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--preset", help="preset for every arm without its own (default: the train command's per-category choice)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--anomaly-p", type=float, default=1.0, help="anomalous fraction of training examples, every arm")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers per run")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs trained at once, each its own process (e.g. several on one GPU; default 1)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--quiet", action="store_true", help="hide the training progress bars")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/detection"))
    ap.add_argument("--collect", type=Path, metavar="DIR", help="only gather finished runs under DIR into tables/plots")
    args = ap.parse_args(argv)
    if args.collect:
        report(args.collect, args.reference)
        return 0
    data = list(args.data or []) + [(args.root, c) for c in (args.category or []) if args.root]
    if not data:
        ap.error("give --data ROOT:CATEGORY (or --root and --category), or --collect DIR")
    arms = [(m, m, None) for m in args.methods] + args.arm
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("collect", "data", "arm")}
    meta["data"] = [f"{root}:{cat}" for root, cat in data]
    meta["arms"] = [list(a) for a in arms]
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: give at least 1 run at a time")
    train_all(args, [(root, category, arm, seed) for seed in args.seeds for root, category in data for arm in arms])
    report(args.out, args.reference, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
